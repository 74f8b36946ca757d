"""What every Jaeger transport does with the bytes of a batch once it has them: read them into
an api_v2 Batch (by the transport's reader), translate that to OTLP, and hand it to the shared
receiver intake (``relay.intake``), which checks the ids, counts what was accepted or refused
and logs a refusal. The transports only take bytes and answer in their protocol's terms
(``grpc``, ``http``, ``udp``).

Reading and translating run in a thread for a body past ``relay.net.body.OFF_LOOP_SIZE``, so a
large batch does not stall the other connections. Whatever fails there other than by a
RelayError (a gap in the reader) is still refused as invalid and counted, never a bare error.
"""

from __future__ import annotations

from relay import intake
from relay.errors import RelayError
from relay.net import body
from relay.receivers.jaeger import translate
from relay.signals import Signal


class Intake:
    """One transport's intake; ``transport`` is the collector's name for it (a metric label)."""

    def __init__(self, id_, consumer, telemetry, transport: str, log):
        self.transport = transport
        self._shared = intake.Intake(id_, Signal.TRACES, consumer, telemetry, transport, log, False)

    async def read(self, data: bytes, reader, what: str):
        """(the OTLP request, None) for ``data``, read by ``reader`` (bytes to an api_v2 Batch,
        InvalidDataError for what is not one) and translated; (None, the refusal) when it is
        not a batch that can be taken. ``what`` names the payload in a refusal."""
        try:
            request = await body.decode(data, _translated, reader)
        except RelayError as error:
            return None, error
        except Exception as error:  # noqa: BLE001 - the safety net: a reader's gap is a counted refusal
            return None, self._shared.unreadable(error, what)
        failure = self._shared.check(request, None)
        return (None, failure) if failure is not None else (request, None)

    async def deliver(self, request, peer: str = "") -> tuple[int, BaseException | None]:
        """(spans, the pipeline's error or None); a refused request has its spans counted as refused."""
        return await self._shared.deliver(request, None, (), peer)

    def refused(self, error: BaseException, count: int, code: str | int) -> str:
        """Logs and counts a refused request (``code``: the status in the transport's terms);
        returns the message the client gets."""
        return self._shared.refusal(error, count, code)


def _translated(data: bytes, reader):
    return translate.to_request(reader(data))
