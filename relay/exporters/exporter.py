"""The exporter component every exporter type is built into.

It owns the sender stack, counts what was sent and what failed per signal,
and logs failures (never header values: those stay inside the transport).
"""

from __future__ import annotations

from relay.errors import PermanentError
from relay.exporters.helper import senders
from relay.signals import signal_of
from relay.telemetry import component_logger


class Exporter:
    mutates_data = False

    def __init__(self, id_, transport, telemetry, *, timeout: float):
        self.id = id_
        self.transport = transport
        self.metrics = telemetry
        self.log = component_logger(id_)
        self.sender = senders.build(transport, timeout=timeout)

    async def start(self) -> None:
        await self.transport.start()

    async def shutdown(self) -> None:
        await self.transport.shutdown()

    async def consume(self, request) -> None:
        signal = signal_of(request)
        count = signal.count(request)
        try:
            await self.sender.send(request)
        except Exception as error:
            retryable = not isinstance(error, PermanentError)
            self.metrics.exporter_failed[signal].labels(str(self.id), str(retryable).lower()).inc(count)
            self.log.warning("export failed", fields={"signal": signal.value, "items": count,
                                                       "retryable": retryable, "error": str(error)})
            raise
        self.metrics.exporter_sent[signal].labels(str(self.id)).inc(count)
