"""What a receiver does with a request once a transport has decoded it into OTLP, the same for
every transport (the otlp receiver's gRPC and HTTP, the zipkin receiver's formats): check its
ids, count it, bind its wire form and the client's metadata while the pipeline consumes it,
count what was accepted or refused, and log a refusal. The transports only decode requests and
encode answers.

Errors are classified once, here at the edge: whatever the pipeline raised reaches the client
as the status ``relay.status`` maps it to, and a failure that is not a ``RelayError`` (a bug)
is logged with its traceback while the client is told only to retry.
"""

from __future__ import annotations

from relay import client, ids, received, status
from relay.errors import InvalidDataError, RelayError
from relay.signals import Signal

INTERNAL_MESSAGE = "internal error in the relay; retry later"


class Intake:
    """One signal's intake on one transport."""

    def __init__(self, id_, signal: Signal, consumer, telemetry, transport: str, log, include_metadata: bool):
        self.signal = signal
        self.consumer = consumer
        self.transport = transport
        self.log = log
        self.include_metadata = include_metadata
        self._id = str(id_)
        self._accepted = telemetry.receiver_accepted[signal].labels(self._id, transport)
        self._refused_items = telemetry.receiver_refused[signal]
        self._refused_requests = telemetry.receiver_refused_requests
        self._type_name = signal.request_type.__name__

    def check(self, request, data: bytes | None) -> InvalidDataError | None:
        """The request's ids, checked before anything is counted (``relay.ids``)."""
        wrong = ids.problem(self.signal, request, data)
        return None if wrong is None else InvalidDataError(f"invalid {self._type_name}: {wrong}")

    async def deliver(self, request, data: bytes | None, metadata, peer: str) -> tuple[int, BaseException | None]:
        """(items, the pipeline's error or None). ``data``: the protobuf the request was parsed
        from, bound for exporters to forward as is; None for other encodings. ``metadata``:
        the client's (key, value) pairs."""
        count = self.signal.count(request, data)
        if self.signal.is_empty(request, count):
            return 0, None
        token = client.bind(client.ClientInfo.from_pairs(metadata, peer)) if self.include_metadata else None
        bound = received.bind(request, data) if data is not None else None
        try:
            await self.consumer.consume(request)
        except Exception as error:  # noqa: BLE001 - classified once, here at the edge
            self._refused_items.labels(self._id, self.transport, type(error).__name__).inc(count)
            return count, error
        finally:
            if bound is not None:
                received.unbind(bound)
            if token is not None:
                client.unbind(token)
        self._accepted.inc(count)
        return count, None

    def unreadable(self, error: Exception, what: str) -> InvalidDataError:
        """The safety net under a transport's decoder: a failure other than InvalidDataError
        while reading or translating a client's bytes is a gap in the decoder, logged with its
        traceback, but the same bytes would fail the same way, so the client is told they are
        invalid (400 / INVALID_ARGUMENT) rather than to retry them for ever."""
        self.log.error("decoding a request failed unexpectedly", exc_info=error,
                       fields={"signal": self.signal.value, "transport": self.transport})
        return InvalidDataError(f"cannot read {what}: {status.describe(error)}")

    def refusal(self, error: BaseException, count: int, code: str | int) -> str:
        """Logs and counts a refused request (``code``: the status in the transport's terms);
        returns the message the client gets."""
        message = status.describe(error)
        if not isinstance(error, RelayError):
            self.log.error("pipeline failed unexpectedly", exc_info=error,
                           fields={"signal": self.signal.value, "items": count})
            message = INTERNAL_MESSAGE  # the client gets no internals, only what to do about it
        else:
            self.log.warning("refused request", fields={"signal": self.signal.value, "items": count,
                                                         "status": code, "error": message})
        self._refused_requests.labels(self._id, self.transport, self.signal.value, str(code)).inc()
        return message
