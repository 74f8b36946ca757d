"""The exporter helpers: retry with backoff, the in-memory sending queue, shutdown.

Time is never waited out: the retry sender takes an injected clock, wait and
rng, so backoff schedules are checked exactly and a "300 s" give-up runs in
microseconds. Where the real waiter is needed (shutdown cutting a backoff
short), the backoff is long and shutdown ends it. Every other wait is on a
condition, with a deadline (``until``).

The persistent queue (SQLite on disk) is tested in test_persistent_queue.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import grpc
import pytest

from relay import status
from relay.component import ComponentID, Settings
from relay.config.decode import Duration, decode
from relay.errors import PermanentError, QueueFullError, RetryableError, ShutdownError
from relay.exporters import otlp_grpc
from relay.exporters.helper.config import RetryConfig
from relay.exporters.helper.exporter import Exporter
from relay.retry import Backoff, RetrySender, Stopper
from relay.signals import Signal
from tests.support import ExporterHarness, logs_request, traces_request

EXPORTER = "otlp/helper"


# --- shared helpers (test_persistent_queue.py imports these) -----------------------------

async def until(predicate, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` on the event loop until it holds or ``timeout`` passes.

    The exporter runs on this loop, so a blocking wait (Sink.wait_for) would stall it.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.002)
    return True


def exporter_config(endpoint: str = "127.0.0.1:1", **settings) -> otlp_grpc.Config:
    raw = {"endpoint": endpoint, "tls": {"insecure": True}}
    raw.update(settings)
    config, problems = decode(otlp_grpc.Config, raw)
    assert problems == [], problems
    return config


class Harness(ExporterHarness):
    """An exporter (real OTLP/gRPC, or over a fake ``transport``) and the registry it counts into."""

    def __init__(self, endpoint: str = "127.0.0.1:1", *, transport=None, host=None,
                 retry_hooks: dict | None = None, queue_hooks: dict | None = None, **settings):
        super().__init__(EXPORTER)
        config = exporter_config(endpoint, **settings)
        id_ = ComponentID.parse(EXPORTER)
        if transport is None:
            hooks = {"retry_hooks": retry_hooks} if retry_hooks else {}
            if queue_hooks:
                hooks["queue_hooks"] = queue_hooks
            self.exporter = otlp_grpc.create(Settings(id_, self.telemetry, host=host), config, **hooks)
        else:
            self.exporter = Exporter(id_, transport, self.telemetry, timeout=config.timeout, settings=config,
                                     host=host, retry_hooks=retry_hooks, queue_hooks=queue_hooks)

    def queue_size(self) -> float:
        return self.value("otelcol_exporter_queue_size")

    def queue_capacity(self) -> float:
        return self.value("otelcol_exporter_queue_capacity")

    def skipped(self) -> float:
        return self.value("otelcol_exporter_queue_skipped_entries_total")


class GatedTransport:
    """A fake transport: every call waits for ``gate`` to open, then succeeds (or raises ``error``)."""

    def __init__(self):
        self.gate: asyncio.Event | None = None
        self.calls = 0
        self.delivered: list = []
        self.error: BaseException | None = None

    async def start(self) -> None:
        self.gate = asyncio.Event()  # made on the exporter's loop

    async def shutdown(self) -> None:
        pass

    async def send(self, request) -> None:
        self.calls += 1
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.delivered.append(request)


class Waits:
    """An injected retry wait: records each delay asked for, never sleeps, and moves a fake clock."""

    def __init__(self, on_wait=None):
        self.delays: list[float] = []
        self.now = 0.0
        self.on_wait = on_wait

    def clock(self) -> float:
        return self.now

    async def wait(self, delay: float) -> bool:
        self.delays.append(delay)
        self.now += delay
        if self.on_wait is not None:
            self.on_wait(self)
        return False  # not cut short by shutdown

    def hooks(self, rng=lambda: 0.5) -> dict:
        return {"clock": self.clock, "wait": self.wait, "rng": rng}


def records(caplog, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]





# --- backoff ----------------------------------------------------------------------------

def retry_config(**values) -> RetryConfig:
    defaults = {"initial_interval": 1.0, "max_interval": 10.0, "max_elapsed_time": 300.0,
                "multiplier": 2.0, "randomization_factor": 0.0}
    defaults.update(values)
    return RetryConfig(**{key: (Duration(v) if key.endswith(("_interval", "_time")) else v)
                          for key, v in defaults.items()})


def test_delays_grow_by_the_multiplier_up_to_max_interval():
    backoff = Backoff(retry_config(initial_interval=1, multiplier=2, max_interval=10), rng=lambda: 0.5)
    assert [backoff.next_delay(None) for _ in range(7)] == [1, 2, 4, 8, 10, 10, 10]


def test_fractional_multiplier_is_the_collectors_default_schedule():
    backoff = Backoff(retry_config(initial_interval=5, multiplier=1.5, max_interval=30), rng=lambda: 0.5)
    assert [backoff.next_delay(None) for _ in range(7)] == pytest.approx([5, 7.5, 11.25, 16.875, 25.3125, 30, 30])


@pytest.mark.parametrize("draw, factor", [(0.0, 1 - 0.5), (0.5, 1.0), (0.999999, 1 + 0.5)])
def test_jitter_spans_the_randomization_factor(draw, factor):
    # rng() = 0 gives the low end, interval * (1 - factor); rng() -> 1 the high end.
    backoff = Backoff(retry_config(initial_interval=4, multiplier=2, max_interval=16, randomization_factor=0.5),
                      rng=lambda: draw)
    delays = [backoff.next_delay(None) for _ in range(5)]
    assert delays == pytest.approx([i * factor for i in (4, 8, 16, 16, 16)], rel=1e-5)


def test_jitter_stays_within_its_bounds_and_spreads():
    seeded = random.Random(7)
    config = retry_config(initial_interval=2, multiplier=1.5, max_interval=20, randomization_factor=0.25)
    backoff, interval, delays = Backoff(config, rng=seeded.random), 2.0, []
    for _ in range(40):
        delay = backoff.next_delay(None)
        assert interval * 0.75 <= delay <= interval * 1.25, (interval, delay)
        delays.append(delay / interval)
        interval = min(interval * 1.5, 20.0)
    # Spread, not a constant: the draws cover both halves of the window.
    assert min(delays) < 0.9 and max(delays) > 1.1


def test_a_longer_retry_hint_wins_a_shorter_one_does_not():
    backoff = Backoff(retry_config(initial_interval=1, multiplier=2, max_interval=10), rng=lambda: 0.5)
    assert backoff.next_delay(5.0) == 5.0     # hint 5 > backoff 1
    assert backoff.next_delay(0.5) == 2.0     # backoff 2 > hint 0.5
    assert backoff.next_delay(None) == 4.0    # the hint did not disturb the schedule


# --- the retry sender -------------------------------------------------------------------

class Script:
    """A next sender that raises ``errors`` in turn (the last one for ever if ``forever``), then succeeds."""

    def __init__(self, *errors: BaseException, forever: bool = False):
        self.errors = list(errors)
        self.forever = forever
        self.attempts = 0

    async def send(self, request) -> None:
        self.attempts += 1
        if self.errors:
            error = self.errors[0] if self.forever and len(self.errors) == 1 else self.errors.pop(0)
            raise error


def run_retry(script: Script, config: RetryConfig, waits: Waits, stopper: Stopper | None = None):
    sender = RetrySender(script, config, stopper or Stopper(), **waits.hooks())

    async def run():
        try:
            await sender.send(traces_request(spans=1))
        except Exception as error:  # noqa: BLE001 - returned for the test
            return error
        return None

    return asyncio.run(run())


def test_retries_until_success_waiting_the_backoff_each_time():
    script = Script(RetryableError("a"), RetryableError("b"), RetryableError("c"))
    waits = Waits()
    assert run_retry(script, retry_config(), waits) is None
    assert script.attempts == 4
    assert waits.delays == [1, 2, 4]


def test_max_elapsed_time_gives_up_after_the_right_number_of_attempts():
    # Attempts at t = 0, 1, 3, 7; the next delay (8) would end at 15 > 10: give up then.
    last = RetryableError("still down")
    script = Script(last, forever=True)
    waits = Waits()
    error = run_retry(script, retry_config(max_elapsed_time=10, max_interval=100), waits)
    assert type(error) is RetryableError  # retryable (counted as such), not a shutdown
    assert "gave up after 10s" in str(error) and "still down" in str(error)
    assert error.__cause__ is last
    assert script.attempts == 4
    assert waits.delays == [1, 2, 4]
    assert waits.now == 7


def test_a_hint_past_max_elapsed_time_gives_up_at_once():
    script = Script(RetryableError("come back in a minute", retry_after=60), forever=True)
    waits = Waits()
    error = run_retry(script, retry_config(max_elapsed_time=10), waits)
    assert isinstance(error, RetryableError) and "gave up" in str(error)
    assert script.attempts == 1 and waits.delays == []


def test_zero_max_elapsed_time_retries_for_ever():
    # "For ever", bounded: 50 failures, far past the 300 s default limit, then success.
    script = Script(*[RetryableError(f"down {n}") for n in range(50)])
    waits = Waits()
    assert run_retry(script, retry_config(max_elapsed_time=0, max_interval=30), waits) is None
    assert script.attempts == 51
    assert len(waits.delays) == 50
    assert waits.delays[-1] == 30 and waits.now > 1000


def test_a_permanent_error_is_not_retried():
    refusal = PermanentError("bad data", status="INVALID_ARGUMENT")
    script = Script(RetryableError("first a blip"), refusal)
    waits = Waits()
    assert run_retry(script, retry_config(), waits) is refusal
    assert script.attempts == 2 and waits.delays == [1]


def test_retry_disabled_makes_one_attempt():
    failure = RetryableError("down")
    script = Script(failure, forever=True)
    waits = Waits()
    assert run_retry(script, retry_config(enabled=False), waits) is failure
    assert script.attempts == 1 and waits.delays == []


def test_shutdown_cuts_a_backoff_short():
    # The real waiter and a one-hour backoff: only shutdown can end this test quickly.
    stopper = Stopper()
    script = Script(RetryableError("down"), forever=True)
    sender = RetrySender(script, retry_config(initial_interval=3600, max_interval=3600, max_elapsed_time=0),
                         stopper)

    async def run():
        task = asyncio.create_task(sender.send(traces_request(spans=1)))
        assert await until(lambda: script.attempts == 1)
        stopper.stop()
        async with asyncio.timeout(5):
            with pytest.raises(ShutdownError) as caught:
                await task
        return caught.value

    error = asyncio.run(run())
    assert "not delivered before shutdown" in str(error) and "down" in str(error)
    assert script.attempts == 1


def test_after_shutdown_a_failure_is_not_retried():
    stopper = Stopper()
    stopper.stop()
    script = Script(RetryableError("down"), forever=True)
    waits = Waits()
    assert isinstance(run_retry(script, retry_config(), waits, stopper), ShutdownError)
    assert script.attempts == 1 and waits.delays == []


# --- RetryInfo end to end ---------------------------------------------------------------

def test_retry_info_delay_is_honoured_end_to_end(sink):
    # The sink asks for 2.5 s; the backoff alone would wait 10 ms. After two refusals it recovers.
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "slow down", retry_after=2.5)
    waits = Waits(on_wait=lambda w: sink.fail_with(None) if len(w.delays) == 2 else None)
    h = Harness(sink.endpoint, retry_hooks=waits.hooks(), sending_queue={"enabled": False},
                retry_on_failure={"initial_interval": "10ms", "randomization_factor": 0})

    async def run():
        async with h:
            return await h.consume(traces_request(spans=2))

    assert asyncio.run(run()) is None
    assert waits.delays == [2.5, 2.5]
    assert sink.refused == 2
    assert sink.count(Signal.TRACES) == 2
    assert h.sent(Signal.TRACES) == 2
    assert h.failed(Signal.TRACES, True) == 0


def test_backoff_longer_than_the_hint_wins_end_to_end(sink):
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "slow down", retry_after=0.2)
    waits = Waits(on_wait=lambda w: sink.fail_with(None))
    h = Harness(sink.endpoint, retry_hooks=waits.hooks(), sending_queue={"enabled": False},
                retry_on_failure={"initial_interval": "1s", "randomization_factor": 0})

    async def run():
        async with h:
            return await h.consume(logs_request())

    assert asyncio.run(run()) is None
    assert waits.delays == [1.0]
    assert sink.count(Signal.LOGS) == 4


def test_without_a_queue_giving_up_is_the_callers_error(sink, component_log):
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "down")
    waits = Waits()
    h = Harness(sink.endpoint, retry_hooks=waits.hooks(), sending_queue={"enabled": False},
                retry_on_failure={"initial_interval": "1s", "multiplier": 2, "max_interval": "100s",
                                  "max_elapsed_time": "10s", "randomization_factor": 0})

    async def run():
        async with h:
            return await h.consume(traces_request(spans=3))

    error = asyncio.run(run())
    assert isinstance(error, RetryableError) and "gave up" in str(error)
    assert sink.refused == 4
    assert h.failed(Signal.TRACES, True) == 3
    [record] = records(component_log, "export failed")
    assert record.fields["retryable"] is True


# --- shutdown with the in-memory queue --------------------------------------------------

# An hour's backoff with no give-up: only shutdown can end it within the test.
LONG_BACKOFF = {"initial_interval": "1h", "max_interval": "1h", "max_elapsed_time": 0}


def test_shutdown_gives_a_backing_off_request_one_last_attempt_then_counts_it_lost(sink, component_log):
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "down")
    h = Harness(sink.endpoint, sending_queue={"num_consumers": 1}, retry_on_failure=LONG_BACKOFF)

    async def run():
        async with h:
            assert await h.consume(traces_request(spans=3)) is None   # acknowledged on enqueue
            assert await until(lambda: sink.refused == 1)             # now in its hour-long backoff
        # shutdown returned: the backoff was cut short, not waited out

    asyncio.run(asyncio.wait_for(run(), 10))
    assert sink.refused == 2                      # exactly one more attempt, in the drain
    assert h.failed(Signal.TRACES, True) == 3
    assert h.failed(Signal.TRACES, False) == 0
    assert h.sent(Signal.TRACES) == 0
    [record] = records(component_log, "undelivered requests lost at shutdown (the queue is in memory)")
    assert record.levelno == logging.ERROR
    assert record.fields == {"requests": 1, "items": 3}


def test_shutdown_drain_delivers_once_the_downstream_is_back(sink, component_log):
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "down")
    h = Harness(sink.endpoint, sending_queue={"num_consumers": 1}, retry_on_failure=LONG_BACKOFF)

    async def run():
        async with h:
            assert await h.consume(traces_request(spans=3)) is None
            assert await until(lambda: sink.refused == 1)
            sink.fail_with(None)

    asyncio.run(asyncio.wait_for(run(), 10))
    assert sink.refused == 1
    assert sink.count(Signal.TRACES) == 3
    assert h.sent(Signal.TRACES) == 3
    assert h.failed(Signal.TRACES, True) == 0
    assert not records(component_log, "undelivered requests lost at shutdown (the queue is in memory)")


def test_shutdown_without_a_queue_ends_the_callers_backoff(sink):
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "down")
    asked: list[float] = []

    async def wait(delay: float) -> bool:
        # The production waiter, observed: shutdown must come while the caller is in it
        # (shutting down while the attempt's answer is still on the wire is another case).
        asked.append(delay)
        return await h.exporter.stack.stopper.wait(delay)

    h = Harness(sink.endpoint, retry_hooks={"wait": wait}, sending_queue={"enabled": False},
                retry_on_failure=LONG_BACKOFF)

    async def run():
        await h.exporter.start()
        task = asyncio.create_task(h.consume(traces_request(spans=2)))
        assert await until(lambda: asked)
        await h.exporter.shutdown()
        return await task

    error = asyncio.run(asyncio.wait_for(run(), 10))
    assert isinstance(error, ShutdownError)
    assert 1800 <= asked[0] <= 5400       # an hour, jittered by the default factor of 0.5
    assert sink.refused == 1
    assert h.failed(Signal.TRACES, True) == 2


def test_a_drain_cut_off_at_the_deadline_still_reports_what_it_lost(component_log):
    # The downstream never answers, so shutdown cannot finish: the caller's deadline cancels it.
    transport = GatedTransport()
    h = Harness(transport=transport, sending_queue={"num_consumers": 1}, timeout="1h")

    async def run():
        await h.exporter.start()
        for _ in range(3):
            assert await h.consume(logs_request()) is None
        assert await until(lambda: transport.calls == 1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(h.exporter.shutdown(), 0.2)

    asyncio.run(asyncio.wait_for(run(), 10))
    [record] = records(component_log, "undelivered requests lost at shutdown (the queue is in memory)")
    assert record.fields == {"requests": 3, "items": 12}   # the one in flight too
    assert h.failed(Signal.LOGS, True) == 12
    assert transport.delivered == []


def test_a_queue_that_is_closed_refuses_new_requests():
    transport = GatedTransport()
    h = Harness(transport=transport)

    async def run():
        async with h:
            pass
        return await h.consume(traces_request(spans=2))

    error = asyncio.run(run())
    assert isinstance(error, ShutdownError)
    assert h.enqueue_failed(Signal.TRACES) == 2
    assert transport.calls == 0


# --- queue semantics --------------------------------------------------------------------

def test_the_client_is_acknowledged_on_enqueue_not_on_delivery():
    transport = GatedTransport()
    h = Harness(transport=transport, sending_queue={"num_consumers": 2})

    async def run():
        async with h:
            for _ in range(3):
                assert await h.consume(traces_request(spans=1)) is None
            # All three acknowledged while the downstream holds every call.
            assert transport.delivered == []
            assert await until(lambda: transport.calls == 2)   # one per consumer, the third waits
            assert h.queue_size() == 3
            transport.gate.set()
            assert await until(lambda: h.sent(Signal.TRACES) == 3)
            assert h.queue_size() == 0

    asyncio.run(asyncio.wait_for(run(), 10))
    assert len(transport.delivered) == 3


SPANS = 3
SIZE = traces_request(spans=SPANS).ByteSize()


@pytest.mark.parametrize("sizer, capacity, used_by_two", [
    ("requests", 2, 2),
    ("items", 2 * SPANS, 2 * SPANS),
    ("bytes", 2 * SIZE, 2 * SIZE),
])
def test_a_full_queue_refuses_with_a_retryable_error(sizer, capacity, used_by_two, component_log):
    transport = GatedTransport()
    h = Harness(transport=transport, sending_queue={"sizer": sizer, "queue_size": capacity, "num_consumers": 1})

    async def run():
        async with h:
            assert h.queue_capacity() == capacity
            assert await h.consume(traces_request(spans=SPANS)) is None
            assert await h.consume(traces_request(spans=SPANS)) is None
            assert h.queue_size() == used_by_two      # a request mid-delivery still holds its room
            refused = await h.consume(traces_request(spans=SPANS))
            assert h.queue_size() == used_by_two      # the refused one took nothing
            transport.gate.set()
            assert await until(lambda: h.sent(Signal.TRACES) == 2 * SPANS)
            assert h.queue_size() == 0
            # Room again: the refusal was "later", not "never".
            assert await h.consume(traces_request(spans=SPANS)) is None
            assert await until(lambda: h.sent(Signal.TRACES) == 3 * SPANS)
            return refused

    refused = asyncio.run(asyncio.wait_for(run(), 10))
    assert isinstance(refused, QueueFullError) and isinstance(refused, RetryableError)
    assert status.to_grpc(refused) == (grpc.StatusCode.UNAVAILABLE, None)
    assert f"of {capacity} {sizer}" in str(refused)
    assert h.enqueue_failed(Signal.TRACES) == SPANS
    assert h.failed(Signal.TRACES, True) == h.failed(Signal.TRACES, False) == 0
    [record] = records(component_log, "refused: could not queue")
    assert record.levelno == logging.WARNING and record.fields["items"] == SPANS


def test_enqueue_failures_are_counted_per_signal():
    transport = GatedTransport()
    h = Harness(transport=transport, sending_queue={"queue_size": 1, "num_consumers": 1})

    async def run():
        async with h:
            assert await h.consume(traces_request(spans=2)) is None
            assert isinstance(await h.consume(logs_request()), QueueFullError)
            assert isinstance(await h.consume(traces_request(spans=5)), QueueFullError)
            transport.gate.set()

    asyncio.run(asyncio.wait_for(run(), 10))
    assert h.enqueue_failed(Signal.LOGS) == 4
    assert h.enqueue_failed(Signal.TRACES) == 5


def test_consumers_deliver_everything_through_a_real_sink(sink):
    h = Harness(sink.endpoint, sending_queue={"num_consumers": 4, "queue_size": 100})

    async def run():
        async with h:
            for _ in range(40):
                assert await h.consume(traces_request(spans=2)) is None
            for _ in range(10):
                assert await h.consume(logs_request()) is None
            assert await until(lambda: h.sent(Signal.TRACES) == 80 and h.sent(Signal.LOGS) == 40)
            assert await until(lambda: h.queue_size() == 0)

    asyncio.run(asyncio.wait_for(run(), 15))
    assert sink.count(Signal.TRACES) == 80
    assert sink.count(Signal.LOGS) == 40


def test_a_permanent_refusal_is_dropped_once_never_retried(sink, component_log):
    sink.fail_with(grpc.StatusCode.INVALID_ARGUMENT, "bad trace id")
    waits = Waits()
    h = Harness(sink.endpoint, retry_hooks=waits.hooks(), sending_queue={"num_consumers": 2})

    async def run():
        async with h:
            for _ in range(3):
                assert await h.consume(traces_request(spans=2)) is None   # acknowledged all the same
            assert await until(lambda: h.failed(Signal.TRACES, False) == 6)
            assert await until(lambda: h.queue_size() == 0)

    asyncio.run(asyncio.wait_for(run(), 10))
    # Shut down since: had anything been kept for a retry, the drain would have tried it.
    assert sink.refused == 3
    assert waits.delays == []
    assert h.failed(Signal.TRACES, True) == 0
    assert h.sent(Signal.TRACES) == 0
    dropped = records(component_log, "export failed; data dropped")
    assert len(dropped) == 3
    for record in dropped:
        assert record.levelno == logging.ERROR
        assert record.fields["retryable"] is False
        assert record.fields["items"] == 2
        assert "INVALID_ARGUMENT" in record.fields["error"] and "bad trace id" in record.fields["error"]


def test_a_queued_request_past_max_elapsed_time_is_dropped_as_retryable(sink, component_log):
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "down")
    waits = Waits()
    h = Harness(sink.endpoint, retry_hooks=waits.hooks(), sending_queue={"num_consumers": 1},
                retry_on_failure={"initial_interval": "1s", "multiplier": 2, "max_interval": "100s",
                                  "max_elapsed_time": "10s", "randomization_factor": 0})

    async def run():
        async with h:
            assert await h.consume(logs_request()) is None
            assert await until(lambda: h.failed(Signal.LOGS, True) == 4)

    asyncio.run(asyncio.wait_for(run(), 10))
    assert sink.refused == 4
    assert waits.delays == [1, 2, 4]
    [record] = records(component_log, "export failed; data dropped")
    assert record.fields["retryable"] is True and "gave up" in record.fields["error"]
    # Dropped for good: not counted a second time as lost at shutdown.
    assert not records(component_log, "undelivered requests lost at shutdown (the queue is in memory)")
