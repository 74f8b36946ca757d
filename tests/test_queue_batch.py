"""``sending_queue.batch``: the queue's consumers merge queued requests into one export.

The collector's exporterhelper documents it: a batch takes queued requests until
``min_size`` (default 8192) is reached or ``flush_timeout`` (default 200ms) has passed
since its first request, and is split so that no export exceeds ``max_size`` (0: no
limit); its ``sizer`` counts items (spans, data points, log records) or serialized bytes.

Time is driven, never waited out: the queue's clock and wait are injected (``Flush``),
so a flush_timeout passes only when a test says so. Every other wait is on a condition
with a deadline (``until``).
"""

from __future__ import annotations

import asyncio

import pytest

from relay.errors import PermanentError
from relay.signals import Signal
from tests.support import logs_request, profiles_request, traces_request
from tests.test_exporter_helper import GatedTransport, Harness, records, until
from tests.test_persistent_queue import KEPT, LOST, Storage, rows

DROPPED = "export failed; data dropped"


class Flush:
    """The queue's ``clock`` and ``wait``: a batch waits for more until ``expire()`` lets its
    flush_timeout pass (or until a request arrives, as the real wait does)."""

    def __init__(self):
        self.now = 0.0
        self.asked: list[float] = []   # the wait each time a batch waited for more
        self._expired: asyncio.Event | None = None

    def hooks(self) -> dict:
        return {"clock": lambda: self.now, "wait": self.wait}

    async def wait(self, arrived: asyncio.Event, timeout: float) -> None:
        self.asked.append(timeout)
        self._expired = expired = asyncio.Event()
        waits = [asyncio.ensure_future(arrived.wait()), asyncio.ensure_future(expired.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            self._expired = None
        if expired.is_set():
            self.now += timeout

    def waiting(self) -> bool:
        return self._expired is not None

    def expire(self) -> None:
        self._expired.set()


def batched(transport=None, flush: Flush | None = None, consumers: int = 1, **batch) -> Harness:
    return Harness(transport=transport or GatedTransport(), timeout="1h",
                   queue_hooks=flush.hooks() if flush else None,
                   sending_queue={"num_consumers": consumers, "batch": {"flush_timeout": "1h", **batch}})


def spans(request) -> int:
    return Signal.TRACES.count(request)


def names(request) -> list[str]:
    return [span.name for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def run(coroutine) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 10))


def test_requests_queued_while_the_downstream_is_held_go_out_as_one_export_once_min_size_is_reached():
    flush, transport = Flush(), GatedTransport()
    h = batched(transport, flush, min_size=15)

    async def scenario():
        async with h:
            assert await h.consume(traces_request(spans=3)) is None
            assert await until(flush.waiting)
            flush.expire()                                  # the first goes alone, and is held
            assert await until(lambda: transport.calls == 1)
            for _ in range(5):
                assert await h.consume(traces_request(spans=3)) is None
            assert h.queue_size() == 6
            transport.gate.set()
            assert await until(lambda: h.sent(Signal.TRACES) == 18)

    run(scenario())
    # The five waiting reached min_size (5 x 3 spans): sent at once, without a wait for more.
    assert [spans(r) for r in transport.delivered] == [3, 15]
    assert transport.calls == 2 and flush.asked == [3600.0]
    assert names(transport.delivered[1]) == ["span-0", "span-1", "span-2"] * 5
    assert h.queue_size() == 0


def test_a_batch_is_sent_when_min_size_is_reached_and_a_partial_one_when_flush_timeout_passes():
    flush, transport = Flush(), GatedTransport()
    h = batched(transport, flush, min_size=6, flush_timeout="200ms")

    async def scenario():
        async with h:
            transport.gate.set()
            assert await h.consume(traces_request(spans=3)) is None
            assert await until(flush.waiting)
            assert await h.consume(traces_request(spans=3)) is None   # 6 spans: min_size
            assert await until(lambda: h.sent(Signal.TRACES) == 6)
            assert flush.now == 0.0                                   # before its flush_timeout
            assert await h.consume(traces_request(spans=3)) is None
            assert await until(flush.waiting)
            assert transport.calls == 1                               # the third waits for more
            flush.expire()
            assert await until(lambda: h.sent(Signal.TRACES) == 9)

    run(scenario())
    assert [spans(r) for r in transport.delivered] == [6, 3]
    assert flush.asked[0] == pytest.approx(0.2) and flush.asked[-1] == pytest.approx(0.2)


def test_max_size_splits_a_batch_so_that_no_export_exceeds_it():
    transport = GatedTransport()
    h = batched(transport, Flush(), min_size=9, max_size=9)
    big = traces_request(spans=10)              # alone above max_size: split too

    async def scenario():
        async with h:
            for request in (traces_request(spans=3), traces_request(spans=3), big):
                assert await h.consume(request) is None
            transport.gate.set()
            assert await until(lambda: h.sent(Signal.TRACES) == 16)

    run(scenario())
    counts = [spans(r) for r in transport.delivered]
    assert max(counts) <= 9 and sum(counts) == 16 and len(counts) >= 2
    sent = [name for r in transport.delivered for name in names(r)]
    assert sent == ["span-0", "span-1", "span-2"] * 2 + [f"span-{i}" for i in range(10)]


def test_the_bytes_sizer_counts_serialized_size():
    size = traces_request(spans=3).ByteSize()
    merging, splitting = GatedTransport(), GatedTransport()
    # Two requests' bytes reach min_size; counted in items it would take hundreds of them.
    merges = batched(merging, Flush(), sizer="bytes", min_size=size + 1)
    splits = batched(splitting, Flush(), sizer="bytes", min_size=size + 1, max_size=size + 1)
    big = traces_request(spans=9)

    async def scenario():
        async with merges, splits:
            merging.gate.set()
            splitting.gate.set()
            for _ in range(2):
                assert await merges.consume(traces_request(spans=3)) is None
            assert await splits.consume(big) is None
            assert await until(lambda: merges.sent(Signal.TRACES) == 6 and splits.sent(Signal.TRACES) == 9)

    run(scenario())
    assert [spans(r) for r in merging.delivered] == [6]
    # Above max_size in bytes: parts of at most max_size bytes, the spans in order.
    assert len(splitting.delivered) >= 2
    assert all(r.ByteSize() <= size + 1 for r in splitting.delivered)
    assert [name for r in splitting.delivered for name in names(r)] == names(big)


def test_each_consumer_builds_a_batch_of_its_own():
    transport = GatedTransport()
    h = batched(transport, Flush(), consumers=2, min_size=6)

    async def scenario():
        async with h:
            for _ in range(4):
                assert await h.consume(traces_request(spans=3)) is None
            assert await until(lambda: transport.calls == 2)        # two batches in delivery at once
            transport.gate.set()
            assert await until(lambda: h.sent(Signal.TRACES) == 12)

    run(scenario())
    assert [spans(r) for r in transport.delivered] == [6, 6]


def test_a_permanent_failure_drops_and_counts_every_item_of_the_batch(component_log):
    transport = GatedTransport()
    transport.error = PermanentError("rejected")
    h = batched(transport, Flush(), min_size=12)

    async def scenario():
        async with h:
            transport.gate.set()
            for _ in range(3):
                assert await h.consume(logs_request()) is None       # 4 log records each
            assert await until(lambda: h.failed(Signal.LOGS, False) == 12)
            assert h.queue_size() == 0

    run(scenario())
    assert transport.calls == 1 and h.sent(Signal.LOGS) == 0
    [record] = records(component_log, DROPPED)
    assert record.fields["items"] == 12 and record.fields["retryable"] is False


def test_profiles_requests_are_never_merged():
    flush, transport = Flush(), GatedTransport()
    h = batched(transport, flush, min_size=1000)
    sent = [profiles_request(("checkout",)), profiles_request(("cart",)), profiles_request(("ads",))]

    async def scenario():
        async with h:
            for request in sent:
                assert await h.consume(request) is None
            transport.gate.set()
            assert await until(lambda: len(transport.delivered) == 3)

    run(scenario())
    assert transport.delivered == sent and flush.asked == []    # each sent alone, at once


def test_shutdown_sends_a_partial_batch_of_a_memory_queue(component_log):
    flush, transport = Flush(), GatedTransport()
    h = batched(transport, flush, min_size=100)

    async def scenario():
        async with h:
            transport.gate.set()
            for _ in range(2):
                assert await h.consume(traces_request(spans=3)) is None
            assert await until(lambda: flush.waiting() and not h.exporter.queue.pending)
        assert flush.now == 0.0                          # shutdown, not the flush_timeout, sent it

    run(scenario())
    assert [spans(r) for r in transport.delivered] == [6]
    assert h.sent(Signal.TRACES) == 6 and not records(component_log, LOST)


def test_a_persistent_batch_leaves_the_disk_only_once_delivered(tmp_path, sink, component_log):
    storage = Storage(tmp_path)
    transport = GatedTransport()
    first = storage.harness(transport=transport, timeout="1h", queue={"batch": {"min_size": 12}})

    async def cut_off():
        await first.exporter.start()
        for _ in range(3):
            assert await first.consume(logs_request()) is None
        assert await until(lambda: transport.calls == 1)          # one merged export, held
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first.exporter.shutdown(), 0.2)

    run(cut_off())
    [record] = records(component_log, KEPT)
    assert record.fields == {"requests": 3, "items": 12}
    assert [(signal, items) for _, signal, items in rows(storage.path)] == [("logs", 4)] * 3

    second = storage.harness(sink.endpoint, queue={"batch": {"min_size": 12}})

    async def replay():
        async with second:
            assert await until(lambda: second.sent(Signal.LOGS) == 12)

    run(replay())
    [merged] = sink.requests[Signal.LOGS]                       # over real OTLP/gRPC
    assert Signal.LOGS.count(merged) == 12
    assert rows(storage.path) == []
