"""The exporter component every exporter type is built into.

It owns the sender stack (``relay.exporters.helper.senders``), counts what was
sent, dropped and refused per signal, and logs failures (never header values:
those stay inside the transport).

With a sending queue, ``consume`` returns once the request is queued and the
outcome is reported later, from the queue's consumers; without one it waits
for the outcome and raises it to the caller.
"""

from __future__ import annotations

from relay import status
from relay.component import Host
from relay.errors import PermanentError, ShutdownError
from relay.exporters.helper import senders
from relay.exporters.helper.config import HelperSettings
from relay.exporters.helper.queue import Batching, DiskStore, MemoryStore, QueueSender, sizer
from relay.signals import signal_of
from relay.telemetry import Throttled, component_logger


class Exporter:
    mutates_data = False

    def __init__(self, id_, transport, telemetry, *, timeout: float, settings: HelperSettings | None = None,
                 host: Host | None = None, retry_hooks: dict | None = None, queue_hooks: dict | None = None):
        self.id = id_
        self.transport = transport
        self.metrics = telemetry
        self.log = component_logger(id_)
        self._refusals = Throttled(self.log, 10.0)
        self.settings = settings
        self.stack = senders.build(
            transport, timeout=timeout,
            retry=settings.retry_on_failure if settings else None,
            queue=settings.sending_queue if settings else None,
            make_queue=lambda deliver: self._make_queue(deliver, host or Host(), queue_hooks or {}),
            **(retry_hooks or {}))
        self.queue = self.stack.queue
        label = str(id_)
        self._enqueue_failed = {signal: telemetry.counter(
            f"otelcol_exporter_enqueue_failed_{signal.item}",
            f"Number of {signal.item} refused because the sending queue had no room",
            ["exporter"]) for signal in telemetry.exporter_sent}
        if self.queue is not None:
            telemetry.gauge("otelcol_exporter_queue_size", "Current size of the sending queue, in its sizer's units",
                            ["exporter"]).labels(label).set_function(lambda: self.queue.used)
            telemetry.gauge("otelcol_exporter_queue_capacity", "Capacity of the sending queue, in its sizer's units",
                            ["exporter"]).labels(label).set(self.queue.capacity)

    def _make_queue(self, deliver, host: Host, hooks: dict) -> QueueSender:
        """``hooks``: the queue's ``clock`` and ``wait``, for tests that drive a batch's flush_timeout."""
        config = self.settings.sending_queue
        store = MemoryStore()
        if config.storage:
            file = host.extension(config.storage).queue_file(self.id)
            file.log, file.on_damage = self.log, self._damaged
            self._skipped_counter()  # made here: the store's worker thread may count into it first
            store = DiskStore(file, sizer(config.sizer))
        batching = None
        if config.batch is not None:
            batch = config.batch
            # Unset: the queue's sizer, or items where that counts requests (a batch counts items or bytes).
            kind = batch.sizer or (config.sizer if config.sizer != "requests" else "items")
            batching = Batching(float(batch.flush_timeout), batch.min_size, batch.max_size, kind)
        return QueueSender(deliver.send, store, capacity=config.queue_size, sizer_kind=config.sizer,
                           consumers=config.num_consumers, report=self._report, skipped=self._skipped,
                           left=self._left, trouble=self._trouble, block_on_overflow=config.block_on_overflow,
                           batching=batching, **hooks)

    async def start(self) -> None:
        await self.transport.start()
        if self.queue is not None:
            await self.queue.start()
            if self.queue.pending:
                self.log.info("replaying the persistent queue", fields={
                    "requests": len(self.queue.pending), "items": sum(e.items for e in self.queue.pending)})

    async def shutdown(self) -> None:
        try:
            await self.stack.shutdown()
        finally:
            await self.transport.shutdown()

    async def consume(self, request) -> None:
        if self.queue is not None:
            try:
                await self.queue.send(request)
            except Exception as error:
                signal = signal_of(request)
                count = signal.count(request)
                self._enqueue_failed[signal].labels(str(self.id)).inc(count)
                self._refusals.warning("refused: could not queue", fields={
                    "signal": signal.value, "items": count, "error": status.describe(error)})
                raise
            return
        signal = signal_of(request)
        count = signal.count(request)
        try:
            await self.stack.deliver.send(request)
        except Exception as error:
            self._count_failure(signal, count, error)
            self.log.warning("export failed", fields={"signal": signal.value, "items": count,
                                                       "retryable": not isinstance(error, PermanentError),
                                                       "error": status.describe(error)})
            raise
        self.metrics.exporter_sent[signal].labels(str(self.id)).inc(count)

    def _count_failure(self, signal, count: int, error: BaseException) -> None:
        retryable = not isinstance(error, PermanentError)
        self.metrics.exporter_failed[signal].labels(str(self.id), str(retryable).lower()).inc(count)

    def _report(self, entry, error) -> None:
        if error is None:
            self.metrics.exporter_sent[entry.signal].labels(str(self.id)).inc(entry.items)
            return
        self._count_failure(entry.signal, entry.items, error)
        self.log.error("export failed; data dropped", fields={
            "signal": entry.signal.value, "items": entry.items,
            "retryable": not isinstance(error, PermanentError), "error": status.describe(error)})

    def _skipped_counter(self):
        return self.metrics.counter("otelcol_exporter_queue_skipped_entries",
                                    "Persistent-queue entries (or whole files) skipped as corrupt or unreadable",
                                    ["exporter"]).labels(str(self.id))

    def _damaged(self, damage) -> None:
        # Each entry lost counts; a file that no longer says how many it held counts once.
        self._skipped_counter().inc(damage.lost if damage.lost is not None else 1)
        self.log.error("the persistent queue was corrupt: moved aside, readable entries kept",
                       fields=damage.fields())

    def _trouble(self, error) -> None:
        self._refusals.warning("persistent queue maintenance failed; retrying",
                               fields={"error": status.describe(error)})

    def _skipped(self, entry, reason: str) -> None:
        self._skipped_counter().inc()
        self.log.error("skipped a persistent-queue entry", fields={"signal": entry.signal.value,
                                                                   "reason": reason})

    def _left(self, entries, persistent: bool) -> None:
        items = sum(entry.items for entry in entries)
        if persistent:
            self.log.info("undelivered requests kept on disk for the next start",
                          fields={"requests": len(entries), "items": items})
            return
        for entry in entries:
            self._count_failure(entry.signal, entry.items, ShutdownError(""))
        self.log.error("undelivered requests lost at shutdown (the queue is in memory)",
                       fields={"requests": len(entries), "items": items})
