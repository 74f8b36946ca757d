"""What every Jaeger transport does with a batch once it has read it: translate it to OTLP and
hand it to the shared receiver intake (``relay.intake``), which checks the ids, counts what
was accepted or refused and logs a refusal. The transports only read batches and answer in
their protocol's terms (``grpc``, ``http``, ``udp``).
"""

from __future__ import annotations

from relay import intake
from relay.errors import RelayError
from relay.receivers.jaeger import translate
from relay.signals import Signal

INTERNAL_MESSAGE = intake.INTERNAL_MESSAGE


class Intake:
    """One transport's intake; ``transport`` is the collector's name for it (a metric label)."""

    def __init__(self, id_, consumer, telemetry, transport: str, log):
        self.transport = transport
        self._shared = intake.Intake(id_, Signal.TRACES, consumer, telemetry, transport, log, False)

    async def deliver(self, batch, peer: str = "") -> tuple[int, BaseException | None]:
        """(spans, the error or None). A batch that does not translate (InvalidDataError) has
        counted no spans; one the pipeline refused has its spans counted as refused."""
        try:
            request = translate.to_request(batch)
        except RelayError as error:
            return 0, error
        failure = self._shared.check(request, None)
        if failure is not None:
            return 0, failure
        return await self._shared.deliver(request, None, (), peer)

    def refused(self, error: BaseException, count: int, code: str | int) -> str:
        """Logs and counts a refused request (``code``: the status in the transport's terms);
        returns the message the client gets."""
        return self._shared.refusal(error, count, code)
