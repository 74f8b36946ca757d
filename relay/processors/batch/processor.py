"""The batching consumer: one pending batch per signal, flushed in a task of its own."""

from __future__ import annotations

import asyncio
import contextvars

from relay import received, status
from relay.consumer import combine
from relay.errors import PermanentError, RetryableError
from relay.signals import Signal, signal_of
from relay.split import merge, split
from relay.telemetry import component_logger


class _Batch:
    __slots__ = ("signal", "requests", "raw", "items", "done", "timer")

    def __init__(self, signal: Signal, done: asyncio.Future):
        self.signal = signal
        self.requests: list = []
        # The contributors' wire bytes while every one of them had some; None after the first that had none.
        self.raw: list[bytes] | None = []
        self.items = 0
        self.done = done
        self.timer: asyncio.TimerHandle | None = None

    def add(self, request, raw: bytes | None, items: int) -> None:
        self.requests.append(request)
        self.items += items
        if self.raw is not None:
            if raw is None:
                self.raw = None
            else:
                self.raw.append(raw)


class BatchProcessor:
    changes_data = False  # it merges and splits requests, binding each chunk's wire form itself

    def __init__(self, id_, config, next_consumer, telemetry):
        self.id = id_
        self.next = next_consumer
        # Requests are never changed here, but one that arrives alone is passed on as it is.
        self.mutates_data = next_consumer.mutates_data
        self._size = config.send_batch_size
        self._max = config.send_batch_max_size
        self._timeout = float(config.timeout)
        self._pending: dict[Signal, _Batch] = {}
        self._flushes: set[asyncio.Task] = set()
        self._closed = False
        self._name = name = str(id_)
        self._log = component_logger(id_)
        self._size_sends = telemetry.counter(
            "otelcol_processor_batch_batch_size_trigger_send",
            "Number of times a batch was sent because it reached send_batch_size", ["processor"]).labels(name)
        self._timeout_sends = telemetry.counter(
            "otelcol_processor_batch_timeout_trigger_send",
            "Number of times a batch was sent because its timeout expired", ["processor"]).labels(name)
        # Items waiting in a batch: clients whose calls are held until it is flushed.
        self._waiting = telemetry.gauge(
            "otelcol_processor_batch_pending_items", "Items waiting in a batch for its flush",
            ["processor"]).labels(name)
        self._failed = telemetry.counter(
            "otelcol_processor_batch_send_failed_items",
            "Number of items the next consumer refused from a batch; the error went to every contributor",
            ["processor", "signal", "retryable"])

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        self._closed = True
        for batch in list(self._pending.values()):
            self._flush(batch)
        flushes = list(self._flushes)
        if not flushes:
            return
        try:
            await asyncio.wait(flushes)
        except asyncio.CancelledError:
            # Out of time: contributors still waiting get a retryable error rather than hanging.
            for task in flushes:
                task.cancel()
            raise

    async def consume(self, request) -> None:
        if self._closed:
            # Downstream components shut down after this one, so they still take it.
            await self.next.consume(request)
            return
        signal = signal_of(request)
        items = signal.count(request)
        if not items:
            return
        batch = self._pending.get(signal)
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._pending[signal] = _Batch(signal, loop.create_future())
            batch.done.add_done_callback(_retrieve)
            if self._timeout > 0:
                batch.timer = loop.call_later(self._timeout, self._expire, batch)
        batch.add(request, received.raw_bytes(request), items)
        self._waiting.inc(items)
        if batch.timer is None or batch.items >= self._size:
            self._size_sends.inc()
            self._flush(batch)
        # Shielded: a contributor that is cancelled must not cancel the outcome the others wait for.
        await asyncio.shield(batch.done)

    def _expire(self, batch: _Batch) -> None:
        if self._pending.get(batch.signal) is batch:
            self._timeout_sends.inc()
            self._flush(batch)

    def _flush(self, batch: _Batch) -> None:
        del self._pending[batch.signal]
        self._waiting.dec(batch.items)
        if batch.timer is not None:
            batch.timer.cancel()
        # A fresh context: the merged data belongs to no single client, and no
        # receiver's binding of wire bytes may leak into the send.
        task = asyncio.get_running_loop().create_task(self._send(batch), context=contextvars.Context())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _send(self, batch: _Batch) -> None:
        try:
            error = await self._deliver(batch)
        except asyncio.CancelledError:
            _settle(batch.done, RetryableError("batch processor stopped before the batch was passed on"))
            raise
        except Exception as unexpected:  # noqa: BLE001 - a bug here must still answer every contributor
            self._log.exception("batch flush failed", fields={"signal": batch.signal.value})
            error = unexpected
        _settle(batch.done, error)

    async def _deliver(self, batch: _Batch) -> BaseException | None:
        signal = batch.signal
        request = batch.requests[0] if len(batch.requests) == 1 else merge(batch.requests)
        if self._max and batch.items > self._max:
            chunks = split(request, self._max)
            counts = [signal.count(chunk) for chunk in chunks]
        else:
            chunks, counts = [request], [batch.items]
        errors = []
        for chunk, count in zip(chunks, counts):
            try:
                if len(chunks) == 1 and batch.raw is not None:
                    # An export request is one repeated field, so the contributors'
                    # bytes one after another are the wire form of their merge.
                    data = batch.raw[0] if len(batch.raw) == 1 else b"".join(batch.raw)
                    token = received.bind(chunk, data)
                    try:
                        await self.next.consume(chunk)
                    finally:
                        received.unbind(token)
                else:
                    await self.next.consume(chunk)
            except Exception as error:  # noqa: BLE001 - every chunk is tried; contributors get them combined
                errors.append(error)
                retryable = "false" if isinstance(error, PermanentError) else "true"
                self._failed.labels(self._name, signal.value, retryable).inc(count)
        if not errors:
            return None
        error = combine(errors)
        self._log.warning("next consumer refused a batch; every contributor gets the error",
                          fields={"signal": signal.value, "items": batch.items,
                                  "contributors": len(batch.requests), "error": status.describe(error)})
        return error


def _settle(done: asyncio.Future, error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _retrieve(done: asyncio.Future) -> None:
    # When every contributor was cancelled nobody reads the error; it was logged already.
    if not done.cancelled():
        done.exception()
