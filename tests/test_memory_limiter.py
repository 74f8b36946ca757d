"""The memory_limiter processor: settings, limits, refusing above the soft limit, forced collections."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from prometheus_client import CollectorRegistry

from relay import status
from relay.component import ComponentID, Settings
from relay.config.decode import Duration, decode
from relay.config.load import load
from relay.errors import ConfigError, RetryableError
from relay.pipeline.registry import default_registry
from relay.processors import memory_limiter
from relay.processors.memory_limiter import limiter as limiter_module
from relay.processors.memory_limiter import usage
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import Recorder, logs_request, metrics_request, traces_request

MIB = 1024 * 1024
ID = ComponentID("memory_limiter")


class FakeMemory:
    """Usage readings the test sets; ``force`` records collections and may free memory."""

    def __init__(self, used_mib: int, total_mib: int = 1000, freed_by_force_mib: int = 0):
        self.used = used_mib * MIB
        self.total = total_mib * MIB
        self.freed = freed_by_force_mib * MIB
        self.forced_at: list[int] = []
        self.checks = 0

    def usage(self) -> int:
        return self.used

    def total_memory(self) -> int:
        return self.total

    def force(self) -> None:
        self.forced_at.append(self.checks)
        self.used -= self.freed

    def set(self, used_mib: int) -> None:
        self.used = used_mib * MIB


def config(**raw) -> memory_limiter.Config:
    value, problems = decode(memory_limiter.Config, {"check_interval": "1s", **raw})
    assert problems == []
    return value


def build(memory: FakeMemory, telemetry=None, next_consumer=None, **raw):
    telemetry = telemetry or SelfMetrics(CollectorRegistry())
    processor = memory_limiter.create(Settings(ID, telemetry), config(**raw), next_consumer or Recorder(), usage_reader=memory.usage, total_reader=memory.total_memory, force=memory.force)
    return processor, telemetry



def count(telemetry, verdict: str, item: str) -> float:
    value = telemetry.registry.get_sample_value(
        f"otelcol_processor_memory_limiter_{verdict}_{item}_total", {"processor": "memory_limiter"})
    return value or 0.0


# --- settings ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, problems", [
    ({"check_interval": "1s", "limit_mib": 100}, []),
    ({"check_interval": "250ms", "limit_mib": 100, "spike_limit_mib": 99}, []),
    ({"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20}, []),
    ({"check_interval": "1s", "limit_percentage": 100}, []),
    ({"limit_mib": 100}, ["check_interval: must be greater than zero (1s is recommended)"]),
    ({"check_interval": "0s", "limit_mib": 100}, ["check_interval: must be greater than zero (1s is recommended)"]),
    ({"check_interval": "1s"}, ["limit_mib or limit_percentage must be greater than zero"]),
    ({"check_interval": "1s", "limit_mib": 100, "limit_percentage": 50},
     ["limit_percentage: cannot be combined with limit_mib: give one of the two"]),
    ({"check_interval": "1s", "limit_mib": 100, "spike_limit_mib": 100},
     ["spike_limit_mib: must be smaller than limit_mib"]),
    ({"check_interval": "1s", "limit_mib": 100, "spike_limit_percentage": 10},
     ["spike_limit_percentage: goes with limit_percentage; with limit_mib use spike_limit_mib"]),
    ({"check_interval": "1s", "limit_percentage": 50, "spike_limit_mib": 10},
     ["spike_limit_mib: goes with limit_mib; with limit_percentage use spike_limit_percentage"]),
    ({"check_interval": "1s", "limit_percentage": 101}, ["limit_percentage: must be between 1 and 100"]),
    ({"check_interval": "1s", "limit_percentage": 50, "spike_limit_percentage": 50},
     ["spike_limit_percentage: must be smaller than limit_percentage"]),
    ({"check_interval": "1s", "limit_mib": -5}, ["limit_mib: must not be negative"]),
    ({"check_interval": "1s", "limit_mib": "1GiB"}, ["limit_mib: expected an integer, got string"]),
    ({"check_interval": "1s", "limit_mib": 10, "ballast_size_mib": 5},
     ["ballast_size_mib: unknown key (valid keys: check_interval, limit_mib, limit_percentage, "
      "spike_limit_mib, spike_limit_percentage)"]),
])
def test_settings(raw, problems):
    _, got = decode(memory_limiter.Config, raw)
    assert [str(p) for p in got] == problems


def test_defaults_need_both_an_interval_and_a_limit():
    defaults = memory_limiter.Config()
    assert defaults.check_interval == Duration(0)
    assert [str(p) for p in defaults.validate()] == [
        "check_interval: must be greater than zero (1s is recommended)"]


def test_problems_carry_the_processor_path_through_the_loader():
    text = """
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:4317"}}}}
processors:
  memory_limiter: {check_interval: 1s, limit_mib: 100, spike_limit_mib: 200}
exporters: {debug: {}}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [memory_limiter], exporters: [debug]}
"""
    registry = default_registry()
    with pytest.raises(ConfigError) as raised:
        load(text, registry, env={})
    assert [str(p) for p in raised.value.problems] == [
        "processors::memory_limiter::spike_limit_mib: must be smaller than limit_mib"]


@pytest.mark.parametrize("raw, hard_mib, soft_mib", [
    ({"limit_mib": 500}, 500, 400),                                    # spike defaults to 20%
    ({"limit_mib": 500, "spike_limit_mib": 50}, 500, 450),
    ({"limit_percentage": 80}, 800, 640),                              # of the injected 1000 MiB
    ({"limit_percentage": 80, "spike_limit_percentage": 25}, 800, 550),
])
def test_limits(raw, hard_mib, soft_mib):
    processor, _ = build(FakeMemory(0, total_mib=1000), **raw)
    limits = processor.limiter.compute_limits()
    assert (limits.hard, limits.soft) == (hard_mib * MIB, soft_mib * MIB)


def test_the_mib_form_never_reads_the_total_memory():
    def unreadable():
        raise OSError("no total here")

    limiter = limiter_module.MemoryLimiter(ID, config(limit_mib=10), usage_reader=lambda: 0,
                                           total_reader=unreadable)
    assert limiter.compute_limits().hard == 10 * MIB


# --- refusing --------------------------------------------------------------------------------

def test_refuses_from_the_soft_limit_and_accepts_again_below_it():
    memory = FakeMemory(100)
    recorder = Recorder()
    processor, telemetry = build(memory, next_consumer=recorder, limit_mib=500)  # soft 400, hard 500
    requests = {Signal.TRACES: traces_request(3), Signal.METRICS: metrics_request(), Signal.LOGS: logs_request()}

    async def send_all() -> list:
        outcomes = []
        for request in requests.values():
            try:
                await processor.consume(request)
                outcomes.append("accepted")
            except RetryableError as error:
                assert str(error) == "data refused due to high memory usage" and error.retry_after is None
                outcomes.append("refused")
        return outcomes

    async def run():
        await processor.start()
        try:
            below = await send_all()
            memory.set(400)  # exactly the soft limit refuses
            processor.check()
            at_soft = await send_all()
            memory.set(399)
            processor.check()
            back = await send_all()
        finally:
            await processor.shutdown()
        return below, at_soft, back

    below, at_soft, back = asyncio.run(run())
    assert below == ["accepted"] * 3 and at_soft == ["refused"] * 3 and back == ["accepted"] * 3
    # Passed on as they were, the very same objects, only while accepting.
    assert recorder.requests == list(requests.values()) * 2
    assert memory.forced_at == []
    for item, per_request in (("spans", 3), ("metric_points", 5), ("log_records", 4)):
        assert count(telemetry, "accepted", item) == 2 * per_request
        assert count(telemetry, "refused", item) == per_request


def test_start_checks_so_the_first_request_is_already_refused():
    processor, telemetry = build(FakeMemory(450), limit_mib=500)

    async def run():
        await processor.start()
        try:
            with pytest.raises(RetryableError):
                await processor.consume(traces_request(2))
        finally:
            await processor.shutdown()

    asyncio.run(run())
    assert count(telemetry, "refused", "spans") == 2 and count(telemetry, "accepted", "spans") == 0


def test_refusal_is_unavailable_to_grpc_clients_and_503_to_http_clients():
    processor, _ = build(FakeMemory(450), limit_mib=500)

    async def run():
        await processor.start()
        try:
            await processor.consume(logs_request())
        except RetryableError as error:
            return error
        finally:
            await processor.shutdown()

    error = asyncio.run(run())
    assert status.to_grpc(error) == (grpc.StatusCode.UNAVAILABLE, None)
    assert status.to_http(error) == (503, None)


def test_state_changes_are_logged_once_each(component_log):
    memory = FakeMemory(100)
    processor, _ = build(memory, limit_mib=500)
    processor.check()
    memory.set(420)
    processor.check()
    processor.check()
    memory.set(100)
    processor.check()
    processor.check()
    changes = [(r.levelname, r.getMessage(), r.fields) for r in component_log.records
               if "soft limit" in r.getMessage()]
    assert changes == [
        ("WARNING", "memory usage is above the soft limit: refusing data",
         {"usage_mib": 420, "soft_limit_mib": 400, "hard_limit_mib": 500}),
        ("INFO", "memory usage is back under the soft limit: accepting data",
         {"usage_mib": 100, "soft_limit_mib": 400, "hard_limit_mib": 500}),
    ]


def test_next_consumer_decides_mutates_data_and_nothing_runs_inline():
    class Mutating(Recorder):
        mutates_data = True

    assert build(FakeMemory(0), next_consumer=Mutating(), limit_mib=10)[0].mutates_data is True
    processor = build(FakeMemory(0), next_consumer=Recorder(), limit_mib=10)[0]
    assert processor.mutates_data is False
    assert not getattr(processor, "runs_inline", False)


# --- forced collections ----------------------------------------------------------------------

def run_checks(processor, memory: FakeMemory, checks: int) -> None:
    for _ in range(checks):
        memory.checks += 1
        processor.check()


def test_hard_limit_forces_a_collection_and_judges_the_usage_after_it():
    memory = FakeMemory(520, freed_by_force_mib=200)
    processor, _ = build(memory, limit_mib=500)
    run_checks(processor, memory, 1)
    assert memory.forced_at == [1]
    assert processor.limiter.refusing is False  # 320 MiB after the collection: under the soft limit
    memory.set(420)
    run_checks(processor, memory, 1)
    assert memory.forced_at == [1] and processor.limiter.refusing is True  # soft only: no collection


def test_useless_collections_back_off_up_to_thirty_seconds():
    memory = FakeMemory(600)  # nothing to free: every collection leaves usage above the hard limit
    processor, _ = build(memory, limit_mib=500, check_interval="10s")  # the cap is 3 checks
    run_checks(processor, memory, 13)
    assert memory.forced_at == [1, 2, 4, 7, 10, 13]
    assert processor.limiter.refusing is True


def test_backoff_doubles_in_checks_with_a_one_second_interval():
    memory = FakeMemory(600)
    processor, _ = build(memory, limit_mib=500)
    run_checks(processor, memory, 100)
    gaps = [b - a for a, b in zip(memory.forced_at, memory.forced_at[1:])]
    assert gaps == [1, 2, 4, 8, 16, 30, 30]


def test_backoff_resets_once_usage_falls_under_the_hard_limit():
    memory = FakeMemory(600)
    processor, _ = build(memory, limit_mib=500)
    run_checks(processor, memory, 5)
    assert memory.forced_at == [1, 2, 4]
    memory.set(450)
    run_checks(processor, memory, 1)
    memory.set(600)
    run_checks(processor, memory, 2)
    assert memory.forced_at == [1, 2, 4, 7, 8]  # straight away again, then the gaps start over


def test_percentage_limits_use_the_injected_total():
    memory = FakeMemory(700, total_mib=2000)
    processor, _ = build(memory, limit_percentage=50)  # hard 1000, soft 800
    processor.check()
    assert processor.limiter.refusing is False and memory.forced_at == []
    memory.set(800)
    processor.check()
    assert processor.limiter.refusing is True and memory.forced_at == []


# --- lifecycle -------------------------------------------------------------------------------

def test_start_and_shutdown_leave_no_task_behind():
    processor, _ = build(FakeMemory(0), limit_mib=10)

    async def run():
        await processor.start()
        running = processor.limiter._task
        assert running is not None and not running.done()
        await processor.shutdown()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        return running, others

    running, others = asyncio.run(run())
    assert running.cancelled() and others == set()
    assert processor.limiter._task is None


def test_the_checker_checks_on_every_tick():
    memory = FakeMemory(100)
    ticks: asyncio.Queue
    checked: asyncio.Queue
    readings = []

    async def tick(interval: float) -> None:
        assert interval == 1.0
        await ticks.get()

    def usage_reader() -> int:
        readings.append(memory.used)
        checked.put_nowait(memory.used)
        return memory.used

    async def run():
        nonlocal ticks, checked
        ticks, checked = asyncio.Queue(), asyncio.Queue()
        processor = memory_limiter.create(Settings(ID, SelfMetrics(CollectorRegistry())), config(limit_mib=500), Recorder(), usage_reader=usage_reader, tick=tick)
        await processor.start()
        try:
            await asyncio.wait_for(checked.get(), 5)  # the check start() makes
            assert not processor.limiter.refusing
            memory.set(450)
            ticks.put_nowait(None)
            await asyncio.wait_for(checked.get(), 5)
            refusing_after_tick = processor.limiter.refusing
        finally:
            await processor.shutdown()  # ends the checker while it waits for the next tick
        return refusing_after_tick

    assert asyncio.run(run()) is True
    assert readings == [100 * MIB, 450 * MIB]


def test_a_failed_check_keeps_the_checker_running(component_log):
    memory = FakeMemory(100)
    ticks: asyncio.Queue
    third_reading: asyncio.Event
    readings = []

    async def tick(interval: float) -> None:
        await ticks.get()

    def usage_reader() -> int:
        readings.append(memory.used)
        if len(readings) == 2:
            raise OSError("statm vanished")
        if len(readings) == 3:
            third_reading.set()
        return memory.used

    async def run():
        nonlocal ticks, third_reading
        ticks, third_reading = asyncio.Queue(), asyncio.Event()
        processor = memory_limiter.create(Settings(ID, SelfMetrics(CollectorRegistry())), config(limit_mib=500), Recorder(), usage_reader=usage_reader, tick=tick)
        await processor.start()
        try:
            memory.set(450)
            ticks.put_nowait(None)  # this check fails
            ticks.put_nowait(None)  # and this one still runs
            await asyncio.wait_for(third_reading.wait(), 5)
            return processor.limiter.refusing, processor.limiter._task.done()
        finally:
            await processor.shutdown()

    assert asyncio.run(run()) == (True, False)
    assert [r.getMessage() for r in component_log.records if r.levelname == "ERROR"] == ["memory check failed"]


def test_pipelines_share_one_limiter_per_id():
    telemetry = SelfMetrics(CollectorRegistry())
    memory = FakeMemory(0)
    first, _ = build(memory, telemetry=telemetry, limit_mib=10)
    second, _ = build(memory, telemetry=telemetry, limit_mib=10)
    other_relay, _ = build(memory, limit_mib=10)
    changed, _ = build(memory, telemetry=telemetry, limit_mib=20)
    assert first.limiter is second.limiter
    assert other_relay.limiter is not first.limiter and changed.limiter is not first.limiter

    async def run():
        await first.start()
        await second.start()
        task = first.limiter._task
        await first.shutdown()
        still_running = not task.done()
        await second.shutdown()
        return still_running, task

    still_running, task = asyncio.run(run())
    assert still_running and task.cancelled()


def test_unreadable_memory_fails_start_with_the_reason(tmp_path):
    missing = str(tmp_path / "statm")
    limiter = limiter_module.MemoryLimiter(ID, config(limit_mib=10),
                                           usage_reader=lambda: usage.resident_bytes(missing))

    async def run():
        await limiter.start()

    with pytest.raises(OSError, match="cannot read this process's memory usage.*needs Linux"):
        asyncio.run(run())
    assert limiter._task is None


# --- measuring on this machine ----------------------------------------------------------------

def test_resident_size_of_this_process_is_plausible():
    used = usage.resident_bytes()
    assert 5 * MIB < used < usage.total_memory()


def test_resident_size_follows_an_allocation():
    before = usage.resident_bytes()
    # Above glibc's largest mmap threshold (32 MiB), so fresh pages, which the zero-fill touches.
    block = bytearray(64 * MIB)
    during = usage.resident_bytes()
    del block
    assert during - before > 48 * MIB


def test_release_memory_runs_on_this_platform():
    usage.release_memory()  # gc.collect, then malloc_trim where glibc has it
    assert usage.resident_bytes() > 0


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("files, expected_mib", [
    # cgroup v2, limited on the process's own cgroup; the mount's root has no memory.max.
    ({"proc/self/cgroup": "0::/app\n", "cg/app/memory.max": f"{512 * MIB}\n"}, 512),
    # cgroup v2, limit on an ancestor binds the child.
    ({"proc/self/cgroup": "0::/app/worker\n", "cg/app/memory.max": f"{300 * MIB}\n",
      "cg/app/worker/memory.max": "max\n"}, 300),
    # cgroup v2 in its own namespace: the mount root is the container's cgroup.
    ({"proc/self/cgroup": "0::/\n", "cg/memory.max": f"{256 * MIB}\n"}, 256),
    # cgroup v2 unlimited: the machine's RAM.
    ({"proc/self/cgroup": "0::/\n", "cg/memory.max": "max\n"}, 4096),
    # cgroup v1: "unlimited" is a huge number, so the RAM counts.
    ({"proc/self/cgroup": "4:memory:/job\n0::/\n", "cg/memory/memory.limit_in_bytes": "9223372036854771712\n",
      "cg/memory/job/memory.limit_in_bytes": "9223372036854771712\n"}, 4096),
    ({"proc/self/cgroup": "4:memory:/job\n", "cg/memory/job/memory.limit_in_bytes": f"{128 * MIB}\n"}, 128),
    # A limit above the RAM does not raise the total.
    ({"cg/memory.max": f"{8192 * MIB}\n"}, 4096),
])
def test_total_memory(tmp_path, files, expected_mib):
    write(tmp_path / "proc/meminfo", f"MemTotal:       {4096 * 1024} kB\nMemFree:        1 kB\n")
    for name, text in files.items():
        write(tmp_path / name, text)
    assert usage.total_memory(str(tmp_path / "proc"), str(tmp_path / "cg")) == expected_mib * MIB


def test_total_memory_from_a_cgroup_alone(tmp_path):
    write(tmp_path / "cg/memory/memory.limit_in_bytes", f"{64 * MIB}\n")
    assert usage.total_memory(str(tmp_path / "proc"), str(tmp_path / "cg")) == 64 * MIB


def test_total_memory_unknown_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match="cannot determine the total memory.*use limit_mib"):
        usage.total_memory(str(tmp_path / "proc"), str(tmp_path / "cg"))


def test_total_memory_on_this_machine_is_positive():
    assert usage.total_memory() > 64 * MIB
