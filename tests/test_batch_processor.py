"""The batch processor: merging and splitting OTLP requests, flush triggers, and errors reaching every client."""

from __future__ import annotations

import asyncio
import logging

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from relay import attrs, received
from relay.component import ComponentID, Settings
from relay.config.decode import Duration, decode
from relay.config.load import load
from relay.errors import ConfigError, InvalidDataError, PermanentError, RetryableError
from relay.pipeline.registry import default_registry
from relay.processors import batch
from relay.signals import Signal
from relay.split import merge, split
from relay.telemetry import SelfMetrics
from tests.support import Recorder, traces_request

ID = ComponentID("batch", "test")
FAILED = "otelcol_processor_batch_send_failed_items_total"
SIZE_SENDS = "otelcol_processor_batch_batch_size_trigger_send_total"
TIMEOUT_SENDS = "otelcol_processor_batch_timeout_trigger_send_total"


# --- requests -----------------------------------------------------------------------------

def _resource(entry, name: str) -> None:
    attrs.put(entry.resource.attributes, "service.name", name)
    entry.resource.dropped_attributes_count = 1
    entry.schema_url = f"https://schema/{name}"


def _scope(entry, name: str) -> None:
    entry.scope.name, entry.scope.version = name, "1.0"
    attrs.put(entry.scope.attributes, "scope.attr", name)
    entry.schema_url = f"https://scope/{name}"


def traces(layout, tag: str = "t") -> ExportTraceServiceRequest:
    """``layout``: items per scope per resource, e.g. [[3, 2], [1]]."""
    request = ExportTraceServiceRequest()
    for r, scopes in enumerate(layout):
        rs = request.resource_spans.add()
        _resource(rs, f"{tag}-r{r}")
        for s, count in enumerate(scopes):
            ss = rs.scope_spans.add()
            _scope(ss, f"{tag}-s{s}")
            for i in range(count):
                ss.spans.add(name=f"{tag}-{r}.{s}.{i}", span_id=bytes([r, s, i]) + b"\0" * 5)
    return request


def logs(layout, tag: str = "l") -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for r, scopes in enumerate(layout):
        rl = request.resource_logs.add()
        _resource(rl, f"{tag}-r{r}")
        for s, count in enumerate(scopes):
            sl = rl.scope_logs.add()
            _scope(sl, f"{tag}-s{s}")
            for i in range(count):
                sl.log_records.add(time_unix_nano=i).body.string_value = f"{tag}-{r}.{s}.{i}"
    return request


_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def metrics(layout, tag: str = "m") -> ExportMetricsServiceRequest:
    """``layout``: per resource, per scope, data points per metric; metric kinds cycle through all five."""
    request = ExportMetricsServiceRequest()
    n = 0
    for r, scopes in enumerate(layout):
        rm = request.resource_metrics.add()
        _resource(rm, f"{tag}-r{r}")
        for s, per_metric in enumerate(scopes):
            sm = rm.scope_metrics.add()
            _scope(sm, f"{tag}-s{s}")
            for m, count in enumerate(per_metric):
                kind = _KINDS[n % len(_KINDS)]
                n += 1
                metric = sm.metrics.add(name=f"{tag}.{kind}.{r}.{s}.{m}", description=f"about {kind}", unit="1")
                attrs.put(metric.metadata, "origin", tag)
                data = getattr(metric, kind)
                data.SetInParent()
                if kind == "sum":
                    data.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
                    data.is_monotonic = True
                elif kind in ("histogram", "exponential_histogram"):
                    data.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
                for i in range(count):
                    point = data.data_points.add(time_unix_nano=i + 1)
                    attrs.put(point.attributes, "i", i)
    return request


BUILD = {Signal.TRACES: traces, Signal.METRICS: metrics, Signal.LOGS: logs}
LAYOUTS = {  # the same number of items (9) in each signal
    Signal.TRACES: [[3, 2], [1], [0, 3]],
    Signal.LOGS: [[3, 2], [1], [0, 3]],
    Signal.METRICS: [[[2, 1], [2]], [[1, 0]], [[], [3]]],
}


def flat(request) -> list[tuple]:
    """Every item with what encloses it, as wire bytes: (resource, scope[, metric descriptor], item)."""
    out = []
    if isinstance(request, ExportMetricsServiceRequest):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    descriptor = type(metric)()
                    descriptor.CopyFrom(metric)
                    getattr(descriptor, kind).ClearField("data_points")
                    for point in getattr(metric, kind).data_points:
                        out.append((_shell(rm, "scope_metrics"), _shell(sm, "metrics"),
                                    kind, descriptor.SerializeToString(), point.SerializeToString()))
        return out
    resources, scopes, items = (("resource_spans", "scope_spans", "spans")
                                if isinstance(request, ExportTraceServiceRequest)
                                else ("resource_logs", "scope_logs", "log_records"))
    for r in getattr(request, resources):
        for s in getattr(r, scopes):
            for item in getattr(s, items):
                out.append((_shell(r, scopes), _shell(s, items), item.SerializeToString()))
    return out


def _shell(entry, children: str) -> bytes:
    copy = type(entry)()
    copy.CopyFrom(entry)
    copy.ClearField(children)
    return copy.SerializeToString()


# --- split and merge ------------------------------------------------------------------------

@pytest.mark.parametrize("signal", list(BUILD), ids=lambda s: s.value)
@pytest.mark.parametrize("limit, sizes", [(1, [1] * 9), (2, [2, 2, 2, 2, 1]), (4, [4, 4, 1]),
                                          (8, [8, 1]), (9, [9]), (100, [9])])
def test_split_keeps_items_in_order_with_what_encloses_them(signal, limit, sizes):
    request = BUILD[signal](LAYOUTS[signal])
    before = request.SerializeToString()
    chunks = split(request, limit)
    assert [signal.count(c) for c in chunks] == sizes
    assert all(type(c) is type(request) and c is not request for c in chunks)
    assert [entry for c in chunks for entry in flat(c)] == flat(request)
    assert request.SerializeToString() == before  # the input is not changed


def test_split_shares_one_copy_of_a_resource_and_scope_per_chunk():
    request = traces([[3, 2], [1]])
    chunks = split(request, 2)

    def shape(chunk):
        return [(rs.resource.attributes[0].value.string_value, rs.schema_url,
                 [(ss.scope.name, ss.schema_url, [span.name for span in ss.spans]) for ss in rs.scope_spans])
                for rs in chunk.resource_spans]

    assert [shape(c) for c in chunks] == [
        [("t-r0", "https://schema/t-r0", [("t-s0", "https://scope/t-s0", ["t-0.0.0", "t-0.0.1"])])],
        [("t-r0", "https://schema/t-r0", [("t-s0", "https://scope/t-s0", ["t-0.0.2"]),
                                          ("t-s1", "https://scope/t-s1", ["t-0.1.0"])])],
        [("t-r0", "https://schema/t-r0", [("t-s1", "https://scope/t-s1", ["t-0.1.1"])]),
         ("t-r1", "https://schema/t-r1", [("t-s0", "https://scope/t-s0", ["t-1.0.0"])])],
    ]


def test_split_copies_every_metric_descriptor():
    request = metrics([[[1, 3, 2, 2, 2]]])  # gauge, sum, histogram, exponential histogram, summary
    chunks = split(request, 2)
    assert [Signal.METRICS.count(c) for c in chunks] == [2, 2, 2, 2, 2]
    first_of = {}
    for chunk in chunks:
        for metric in chunk.resource_metrics[0].scope_metrics[0].metrics:
            first_of.setdefault(metric.name, metric)
    by_kind = {m.WhichOneof("data"): m for m in first_of.values()}
    assert set(by_kind) == set(_KINDS)
    assert by_kind["sum"].sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    assert by_kind["sum"].sum.is_monotonic
    assert by_kind["histogram"].histogram.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    assert (by_kind["exponential_histogram"].exponential_histogram.aggregation_temporality
            == metrics_pb2.AGGREGATION_TEMPORALITY_DELTA)
    for kind, metric in by_kind.items():
        assert (metric.description, metric.unit) == (f"about {kind}", "1")
        assert attrs.get(metric.metadata, "origin") == "m"
    # The sum's points went to two chunks: each carries the whole descriptor.
    sums = [m for c in chunks for m in c.resource_metrics[0].scope_metrics[0].metrics if m.HasField("sum")]
    assert [len(m.sum.data_points) for m in sums] == [1, 2]
    descriptors = {(m.name, m.description, m.unit, m.sum.aggregation_temporality, m.sum.is_monotonic,
                    attrs.get(m.metadata, "origin")) for m in sums}
    assert descriptors == {("m.sum.0.0.1", "about sum", "1", metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
                            True, "m")}


def test_split_leaves_out_containers_without_items():
    request = traces([[0], [2, 0]])
    request.resource_spans.add()  # a resource without scopes
    (chunk,) = split(request, 10)
    assert len(chunk.resource_spans) == 1 and len(chunk.resource_spans[0].scope_spans) == 1
    assert [s.name for s in chunk.resource_spans[0].scope_spans[0].spans] == ["t-1.0.0", "t-1.0.1"]


def test_split_refuses_a_limit_below_one():
    with pytest.raises(ValueError):
        split(traces([[1]]), 0)


@pytest.mark.parametrize("signal", list(BUILD), ids=lambda s: s.value)
def test_merge_appends_and_leaves_the_inputs_alone(signal):
    parts = [BUILD[signal](LAYOUTS[signal], tag=tag) for tag in ("a", "b", "c")]
    before = [p.SerializeToString() for p in parts]
    merged = merge(parts)
    assert all(merged is not p for p in parts)
    assert signal.count(merged) == 27
    assert flat(merged) == [entry for p in parts for entry in flat(p)]
    assert [p.SerializeToString() for p in parts] == before
    # One repeated field: the concatenated wire forms are the wire form of the merge.
    assert type(merged).FromString(b"".join(before)) == merged


# --- the processor ------------------------------------------------------------------------

class Failing:
    """Refuses the chunks whose (0-based) positions are in ``errors``, accepts the rest."""

    mutates_data = False

    def __init__(self, errors: dict[int, Exception]):
        self.errors = errors
        self.calls = []

    async def consume(self, request) -> None:
        position = len(self.calls)
        self.calls.append(request)
        if position in self.errors:
            raise self.errors[position]


class Gate:
    """Holds every consume until ``open`` is set; records the ones that finished."""

    mutates_data = False

    def __init__(self):
        self.open = asyncio.Event()
        self.entered = []
        self.finished = []

    async def consume(self, request) -> None:
        self.entered.append(request)
        await self.open.wait()
        self.finished.append(request)


class WireRecorder(Recorder):
    """Also keeps the wire bytes bound to each request it is handed."""

    def __init__(self):
        super().__init__()
        self.raw = []

    async def consume(self, request) -> None:
        self.raw.append(received.raw_bytes(request))
        await super().consume(request)


def make(next_consumer=None, telemetry=None, **settings):
    config, problems = decode(batch.Config, settings)
    assert problems == []
    telemetry = telemetry or SelfMetrics()
    processor = batch.create(Settings(ID, telemetry), config, next_consumer or Recorder())
    return processor, telemetry


def sample(telemetry, name, **labels) -> float:
    return telemetry.registry.get_sample_value(name, labels) or 0.0


async def until(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def settle() -> None:
    """Let every ready task run until it waits on something outside the loop's ready queue."""
    for _ in range(20):
        await asyncio.sleep(0)


def spans(n: int, tag: str) -> ExportTraceServiceRequest:
    return traces([[n]], tag=tag)


def test_size_trigger_sends_one_merged_request_and_answers_every_contributor():
    async def run():
        recorder = Recorder()
        processor, telemetry = make(recorder, send_batch_size=5, timeout="1m")
        parts = [spans(2, "a"), spans(2, "b"), spans(2, "c")]
        before = [p.SerializeToString() for p in parts]
        first = [asyncio.create_task(processor.consume(p)) for p in parts[:2]]
        await settle()
        assert recorder.requests == [] and not any(t.done() for t in first)  # 4 items < 5: waiting
        await asyncio.wait_for(processor.consume(parts[2]), 5)
        await asyncio.wait_for(asyncio.gather(*first), 5)
        (sent,) = recorder.requests
        assert flat(sent) == [e for p in parts for e in flat(p)]
        assert [p.SerializeToString() for p in parts] == before
        assert sample(telemetry, SIZE_SENDS, processor="batch/test") == 1
        assert sample(telemetry, TIMEOUT_SENDS, processor="batch/test") == 0
    asyncio.run(run())


@pytest.mark.parametrize("signal", list(BUILD), ids=lambda s: s.value)
def test_timeout_trigger_sends_what_gathered(signal):
    async def run():
        recorder = Recorder()
        processor, telemetry = make(recorder, send_batch_size=1000, timeout="20ms")
        parts = [BUILD[signal](LAYOUTS[signal], tag=tag) for tag in ("a", "b")]
        await asyncio.wait_for(asyncio.gather(*(processor.consume(p) for p in parts)), 5)
        (sent,) = recorder.requests
        assert signal.count(sent) == 18 and flat(sent) == flat(parts[0]) + flat(parts[1])
        assert sample(telemetry, TIMEOUT_SENDS, processor="batch/test") == 1
        assert sample(telemetry, SIZE_SENDS, processor="batch/test") == 0
        # The next request starts a new batch with a timer of its own.
        await asyncio.wait_for(processor.consume(BUILD[signal](LAYOUTS[signal])), 5)
        assert len(recorder.requests) == 2
        assert sample(telemetry, TIMEOUT_SENDS, processor="batch/test") == 2
    asyncio.run(run())


def test_signals_batch_separately():
    async def run():
        recorder = Recorder()
        processor, _ = make(recorder, send_batch_size=4, timeout="1m")
        waiting = [asyncio.create_task(processor.consume(r)) for r in (spans(2, "a"), logs([[2]]), spans(2, "b"))]
        await until(lambda: waiting[0].done() and waiting[2].done())
        assert [type(r) for r in recorder.requests] == [ExportTraceServiceRequest]
        assert not waiting[1].done()  # two log records wait for more
        await processor.shutdown()
        await asyncio.wait_for(waiting[1], 5)
        assert [type(r) for r in recorder.requests] == [ExportTraceServiceRequest, ExportLogsServiceRequest]
    asyncio.run(run())


def test_timeout_zero_passes_every_request_on_at_once():
    async def run():
        recorder = Recorder()
        processor, telemetry = make(recorder, timeout=0)
        parts = [spans(1, "a"), spans(3, "b")]
        for part in parts:
            await asyncio.wait_for(processor.consume(part), 5)
        assert recorder.requests == parts  # alone in its batch, a request is passed on as it is
        assert sample(telemetry, SIZE_SENDS, processor="batch/test") == 2
    asyncio.run(run())


def test_a_single_oversized_request_is_split():
    async def run():
        recorder = Recorder()
        processor, telemetry = make(recorder, send_batch_size=3, send_batch_max_size=3, timeout="1m")
        request = traces([[4, 2], [1]])
        await asyncio.wait_for(processor.consume(request), 5)
        assert [Signal.TRACES.count(r) for r in recorder.requests] == [3, 3, 1]
        assert [e for r in recorder.requests for e in flat(r)] == flat(request)
        assert sample(telemetry, SIZE_SENDS, processor="batch/test") == 1
    asyncio.run(run())


def test_max_size_splits_a_merged_batch_but_send_batch_size_does_not_cap():
    async def run():
        recorder = Recorder()
        processor, _ = make(recorder, send_batch_size=4, timeout="1m")
        parts = [spans(3, "a"), spans(3, "b")]
        await asyncio.wait_for(asyncio.gather(*(processor.consume(p) for p in parts)), 5)
        assert [Signal.TRACES.count(r) for r in recorder.requests] == [6]

        recorder.requests.clear()
        processor, _ = make(recorder, send_batch_size=4, send_batch_max_size=4, timeout="1m")
        await asyncio.wait_for(asyncio.gather(*(processor.consume(p) for p in parts)), 5)
        assert [Signal.TRACES.count(r) for r in recorder.requests] == [4, 2]
        assert [e for r in recorder.requests for e in flat(r)] == flat(parts[0]) + flat(parts[1])
    asyncio.run(run())



@pytest.mark.parametrize("error", [RetryableError("downstream busy", 3.0), PermanentError("downstream says no"),
                                   InvalidDataError("bad payload")], ids=["retryable", "permanent", "invalid"])
def test_a_downstream_error_reaches_every_contributor_and_is_counted(error, component_log):
    async def run():
        failing = Failing({0: error})
        processor, telemetry = make(failing, send_batch_size=6, timeout="1m")
        results = await asyncio.wait_for(asyncio.gather(
            *(processor.consume(spans(2, tag)) for tag in "abc"), return_exceptions=True), 5)
        return failing, telemetry, results

    failing, telemetry, results = asyncio.run(run())
    assert len(failing.calls) == 1
    assert results == [error] * 3  # the downstream's own error, so its class and retry hint survive
    retryable = "false" if isinstance(error, PermanentError) else "true"
    assert sample(telemetry, FAILED, processor="batch/test", signal="traces", retryable=retryable) == 6
    warnings = [r for r in component_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].fields == {"signal": "traces", "items": 6, "contributors": 3, "error": str(error)}
    assert warnings[0].component == "batch/test"


@pytest.mark.parametrize("errors, expected", [
    ({1: RetryableError("chunk 2 busy", 2.0)}, RetryableError),
    ({0: PermanentError("chunk 1 refused"), 2: RetryableError("chunk 3 busy")}, RetryableError),
    ({0: PermanentError("chunk 1 refused"), 1: PermanentError("chunk 2 refused")}, PermanentError),
], ids=["one-retryable", "permanent-and-retryable", "all-permanent"])
def test_a_failed_chunk_fails_the_whole_flush_after_every_chunk_was_tried(errors, expected):
    async def run():
        failing = Failing(errors)
        processor, telemetry = make(failing, send_batch_size=4, send_batch_max_size=4, timeout="1m")
        results = await asyncio.wait_for(asyncio.gather(
            *(processor.consume(spans(n, tag)) for n, tag in ((3, "a"), (7, "b"))), return_exceptions=True), 5)
        return failing, telemetry, results

    failing, telemetry, results = asyncio.run(run())
    assert [Signal.TRACES.count(r) for r in failing.calls] == [4, 4, 2]  # every chunk was tried
    assert results[0] is results[1] and type(results[0]) is expected
    for message in (str(e) for e in errors.values()):
        assert message in str(results[0])
    if len(errors) == 1:
        assert results[0] is next(iter(errors.values()))  # alone, the error is passed on as it is
    sizes = [4, 4, 2]
    for kind in ("true", "false"):
        expected_items = sum(sizes[i] for i, e in errors.items()
                             if (kind == "false") == isinstance(e, PermanentError))
        assert sample(telemetry, FAILED, processor="batch/test", signal="traces", retryable=kind) == expected_items


def test_a_cancelled_contributor_does_not_break_the_others_and_its_items_still_go():
    async def run():
        recorder = Recorder()
        processor, _ = make(recorder, send_batch_size=100, timeout="30ms")
        parts = [spans(1, tag) for tag in "abc"]
        tasks = [asyncio.create_task(processor.consume(p)) for p in parts]
        await settle()
        tasks[1].cancel()
        done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        assert done[0] is None and done[2] is None and isinstance(done[1], asyncio.CancelledError)
        (sent,) = recorder.requests
        assert flat(sent) == [e for p in parts for e in flat(p)]
    asyncio.run(run())


def test_the_downstream_call_outlives_the_client_that_triggered_it():
    async def run():
        gate = Gate()
        processor, _ = make(gate, send_batch_size=2, timeout="1m")
        waiting = asyncio.create_task(processor.consume(spans(1, "a")))
        trigger = asyncio.create_task(processor.consume(spans(1, "b")))
        await until(lambda: len(gate.entered) == 1)
        trigger.cancel()
        await asyncio.gather(trigger, return_exceptions=True)
        assert trigger.cancelled() and not waiting.done()
        gate.open.set()
        await asyncio.wait_for(waiting, 5)
        assert gate.finished == gate.entered  # the send was not cancelled with the client
    asyncio.run(run())


def test_shutdown_flushes_pending_batches_then_passes_requests_straight_on():
    async def run():
        recorder = Recorder()
        processor, telemetry = make(recorder, send_batch_size=100, timeout="1h")
        await processor.start()
        tasks = [asyncio.create_task(processor.consume(r)) for r in (spans(2, "a"), metrics([[[1, 2]]]))]
        await settle()
        assert recorder.requests == []
        await asyncio.wait_for(processor.shutdown(), 5)
        assert all(t.done() and t.exception() is None for t in tasks)
        assert sorted(type(r).__name__ for r in recorder.requests) == [
            "ExportMetricsServiceRequest", "ExportTraceServiceRequest"]
        late = logs([[1]])
        await asyncio.wait_for(processor.consume(late), 5)
        assert recorder.requests[-1] is late
        assert sample(telemetry, SIZE_SENDS, processor="batch/test") == 0
        assert sample(telemetry, TIMEOUT_SENDS, processor="batch/test") == 0
    asyncio.run(run())


def test_shutdown_waits_for_flushes_in_progress_and_a_deadline_fails_them_retryably():
    async def run():
        gate = Gate()
        processor, _ = make(gate, send_batch_size=1, timeout="1m")
        client = asyncio.create_task(processor.consume(spans(1, "a")))
        await until(lambda: len(gate.entered) == 1)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(processor.shutdown(), 0.05)
        with pytest.raises(RetryableError, match="stopped before the batch was passed on"):
            await asyncio.wait_for(client, 5)
        assert gate.finished == []
    asyncio.run(run())


def test_requests_without_items_are_acknowledged_and_not_passed_on():
    async def run():
        recorder = Recorder()
        processor, _ = make(recorder, timeout=0)
        empty = traces([[0], []])
        await asyncio.wait_for(processor.consume(empty), 5)
        assert recorder.requests == []
    asyncio.run(run())


async def _consume_with_bytes(processor, request, data=None):
    token = received.bind(request, request.SerializeToString() if data is None else data)
    try:
        await processor.consume(request)
    finally:
        received.unbind(token)


def test_merged_batch_carries_the_concatenated_wire_bytes():
    async def run():
        recorder = WireRecorder()
        processor, _ = make(recorder, send_batch_size=6, timeout="1m")
        parts = [spans(2, tag) for tag in "abc"]
        await asyncio.wait_for(asyncio.gather(*(_consume_with_bytes(processor, p) for p in parts)), 5)
        (merged,), (raw,) = recorder.requests, recorder.raw
        assert raw == b"".join(p.SerializeToString() for p in parts)
        assert ExportTraceServiceRequest.FromString(raw) == merged
        assert received.binding() is None  # nothing leaked into the caller's context
    asyncio.run(run())


def test_a_lone_request_keeps_its_own_wire_bytes():
    async def run():
        recorder = WireRecorder()
        processor, _ = make(recorder, timeout=0)
        request = spans(3, "a")
        await asyncio.wait_for(_consume_with_bytes(processor, request, b"as received"), 5)
        assert recorder.requests == [request] and recorder.raw == [b"as received"]
    asyncio.run(run())


def test_no_wire_bytes_when_a_contributor_had_none_or_the_batch_was_split():
    async def run():
        recorder = WireRecorder()
        processor, _ = make(recorder, send_batch_size=4, timeout="1m")
        with_bytes, changed = spans(2, "a"), spans(2, "b")

        async def consume_changed():
            received.bind(changed, changed.SerializeToString())
            received.changed()  # a processor before changed it: the bytes no longer describe it
            await processor.consume(changed)

        await asyncio.wait_for(asyncio.gather(_consume_with_bytes(processor, with_bytes), consume_changed()), 5)
        assert len(recorder.requests) == 1 and recorder.raw == [None]

        recorder = WireRecorder()
        processor, _ = make(recorder, send_batch_size=2, send_batch_max_size=2, timeout="1m")
        request = spans(3, "c")
        await asyncio.wait_for(_consume_with_bytes(processor, request), 5)
        assert [Signal.TRACES.count(r) for r in recorder.requests] == [2, 1] and recorder.raw == [None, None]
    asyncio.run(run())


@pytest.mark.parametrize("downstream_mutates", [False, True])
def test_mutates_data_follows_the_next_consumer(downstream_mutates):
    recorder = Recorder()
    recorder.mutates_data = downstream_mutates
    processor, _ = make(recorder)
    assert processor.mutates_data is downstream_mutates


# --- configuration ------------------------------------------------------------------------

def test_defaults_are_the_collectors():
    config, problems = decode(batch.Config, None)
    assert problems == []
    assert (config.send_batch_size, config.timeout, config.send_batch_max_size) == (8192, 0.2, 0)
    assert isinstance(config.timeout, Duration)
    # Not profiles: each profiles request has a dictionary of its own, which merging would have to renumber.
    assert batch.TYPE == "batch" and set(batch.SIGNALS) == set(Signal) - {Signal.PROFILES}


@pytest.mark.parametrize("raw, problems", [
    ({"send_batch_size": 100, "timeout": "1s", "send_batch_max_size": 100}, []),
    ({"send_batch_size": 0, "timeout": 0}, []),
    ({"send_batch_max_size": 10000}, []),
    ({"send_batch_max_size": 100},
     ["send_batch_max_size: must be 0 (no limit) or at least send_batch_size (8192), got 100"]),
    ({"send_batch_size": -1, "send_batch_max_size": -2, "timeout": -1},
     ["send_batch_size: must not be negative, got -1", "send_batch_max_size: must not be negative, got -2",
      "timeout: must not be negative, got -1.0s"]),
    ({"timeout": "soon"}, ['timeout: invalid duration "soon" (use e.g. "5s", "200ms", "1m")']),
    ({"send_batch_size": "big"}, ["send_batch_size: expected an integer, got string"]),
    ({"metadata_keys": ["tenant"]},
     ["metadata_keys: unknown key (valid keys: send_batch_max_size, send_batch_size, timeout)"]),
])
def test_config_validation(raw, problems):
    _, got = decode(batch.Config, raw)
    assert [str(p) for p in got] == problems


def test_built_through_the_loader():
    text = """
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:4317"}}}}
processors:
  batch: {}
  batch/small: {send_batch_size: 10, send_batch_max_size: 5}
exporters: {debug: {}}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [debug]}
    logs: {receivers: [otlp], processors: [batch/small], exporters: [debug]}
"""
    registry = default_registry()
    with pytest.raises(ConfigError) as caught:
        load(text, registry, env={})
    assert [str(p) for p in caught.value.problems] == [
        "processors::batch/small::send_batch_max_size: must be 0 (no limit) or at least send_batch_size (10), got 5"]

    config = load(text.replace("send_batch_max_size: 5", "send_batch_max_size: 20"), registry, env={})
    id_ = ComponentID("batch", "small")
    recorder = Recorder()
    processor = config.factories["processors"][id_].create(Settings(id_, SelfMetrics()), config.components["processors"][id_], recorder)
    assert processor.id == id_

    async def run():
        await asyncio.wait_for(processor.consume(traces_request(25)), 5)  # 25 >= 10: sent at once, in chunks
    asyncio.run(run())
    assert [Signal.TRACES.count(r) for r in recorder.requests] == [20, 5]
