"""The spanmetrics connector: the collector's metric names, dimensions, buckets and temporality.

Expected values come from the collector's spanmetrics connector documentation and config
defaults: metrics ``traces.span.metrics.calls`` / ``.duration`` (unit ms), default buckets
[2ms ... 15s], dimensions service.name, span.name, span.kind (SPAN_KIND_*), status.code
(STATUS_CODE_*), cumulative temporality, flush every 60s, overflow series
``otel.metric.overflow=true``. Time is driven: the connector's clock is a list the test sets,
and flush() is called directly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from relay import attrs
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.connectors import spanmetrics
from relay.connectors.spanmetrics.expo import ExponentialHistogram, index_of
from relay.errors import RetryableError
from relay.exporters import prometheus
from relay.exporters.prometheus.transport import PrometheusTransport
from relay.pipeline.graph import Graph
from relay.pipeline.registry import default_registry
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import Recorder, free_port

MS = 1_000_000
T0 = 1_700_000_000 * 10**9
SERVER, CLIENT = trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT
ERROR, OK = trace_pb2.Status.STATUS_CODE_ERROR, trace_pb2.Status.STATUS_CODE_OK
# The collector's documented default buckets, in ms.
DEFAULT_BUCKETS = [2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000]


def configure(**raw) -> spanmetrics.Config:
    config, problems = decode(spanmetrics.Config, raw)
    assert problems == [], [str(p) for p in problems]
    return config


class Harness:
    """The connector with a driven clock, bound to a recording metrics consumer."""

    def __init__(self, telemetry=None, **raw):
        self.now = [T0]
        self.telemetry = telemetry or SelfMetrics()
        self.connector = spanmetrics.SpanMetrics(ComponentID("spanmetrics"), configure(**raw), self.telemetry,
                                                 clock=lambda: self.now[0])
        self.out = Recorder()
        self.connector.bind({Signal.METRICS: self.out})

    def send(self, *requests) -> None:
        for request in requests:
            asyncio.run(self.connector.consume(request))

    def flush(self, at_ns: int, final: bool = False):
        self.now[0] = at_ns
        before = len(self.out.requests)
        asyncio.run(self.connector.flush(final=final))
        return self.out.requests[-1] if len(self.out.requests) > before else None


def span(name="GET /chat", kind=SERVER, code=0, ms: float = 1.0, attributes=None, events=(), trace=1):
    out = trace_pb2.Span(name=name, kind=kind, trace_id=bytes([trace]) * 16, span_id=bytes([trace]) * 8,
                         start_time_unix_nano=T0, end_time_unix_nano=T0 + round(ms * MS))
    out.status.code = code
    for key, value in (attributes or {}).items():
        attrs.put(out.attributes, key, value)
    for event_name, event_attributes in events:
        event = out.events.add(name=event_name)
        for key, value in event_attributes.items():
            attrs.put(event.attributes, key, value)
    return out


def traces(*spans, resource=None, scope=None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key, value in ({"service.name": "chat"} if resource is None else resource).items():
        attrs.put(rs.resource.attributes, key, value)
    ss = rs.scope_spans.add()
    if scope:
        ss.scope.name, ss.scope.version = scope
    ss.spans.extend(spans)
    return request


def metrics_of(request) -> dict:
    return {m.name: m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def labels(point) -> dict:
    return {kv.key: attrs.to_python(kv.value) for kv in point.attributes}


def points(metric) -> list:
    kind = metric.WhichOneof("data")
    return list(getattr(metric, kind).data_points)


def by_name(metric, key="span.name") -> dict:
    return {labels(p).get(key): p for p in points(metric)}


# --- defaults, names, labels, buckets --------------------------------------------------------

def test_defaults_are_the_collectors():
    config = configure()
    assert (config.namespace, config.metrics_flush_interval, config.aggregation_temporality) == (
        "traces.span.metrics", 60.0, "AGGREGATION_TEMPORALITY_CUMULATIVE")
    assert (config.histogram.unit, config.histogram.disable, config.exemplars.enabled) == ("ms", False, False)
    assert (config.aggregation_cardinality_limit, config.resource_metrics_cache_size) == (0, 1000)
    assert config.bounds() == DEFAULT_BUCKETS


def test_names_labels_and_default_buckets():
    harness = Harness()
    durations = [1, 2, 3, 2000, 20_000]  # ms: <=2, on the 2 ms bound, <=4, on the 2 s bound, past 15 s
    harness.send(traces(*[span(code=ERROR, ms=ms) for ms in durations], span("POST /db", kind=CLIENT, code=OK)))
    found = metrics_of(harness.flush(T0 + 60 * 10**9, final=True))
    assert set(found) == {"traces.span.metrics.calls", "traces.span.metrics.duration"}
    calls, duration = found["traces.span.metrics.calls"], found["traces.span.metrics.duration"]
    assert calls.sum.is_monotonic and calls.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    assert duration.unit == "ms"
    assert sorted(labels(p).items() for p in points(calls)) == sorted([
        {"service.name": "chat", "span.name": "GET /chat", "span.kind": "SPAN_KIND_SERVER",
         "status.code": "STATUS_CODE_ERROR"}.items(),
        {"service.name": "chat", "span.name": "POST /db", "span.kind": "SPAN_KIND_CLIENT",
         "status.code": "STATUS_CODE_OK"}.items()])
    assert {name: p.as_int for name, p in by_name(calls).items()} == {"GET /chat": 5, "POST /db": 1}
    chat = by_name(duration)["GET /chat"]
    assert list(chat.explicit_bounds) == DEFAULT_BUCKETS
    expected = [0] * (len(DEFAULT_BUCKETS) + 1)
    for ms in durations:  # bucket i holds (bounds[i-1], bounds[i]]
        expected[sum(1 for bound in DEFAULT_BUCKETS if bound < ms)] += 1
    assert list(chat.bucket_counts) == expected == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert (chat.count, chat.sum) == (5, sum(durations))
    rm = harness.out.requests[-1].resource_metrics[0]
    assert rm.scope_metrics[0].scope.name == "spanmetricsconnector"
    assert {kv.key: attrs.to_python(kv.value) for kv in rm.resource.attributes} == {"service.name": "chat"}


def test_empty_namespace_and_seconds():
    harness = Harness(namespace="", histogram={"unit": "s", "explicit": {"buckets": ["100ms", "1s", "1400ms"]}})
    harness.send(traces(span(ms=250)))
    found = metrics_of(harness.flush(T0 + 1, final=True))
    assert set(found) == {"calls", "duration"}
    point = points(found["duration"])[0]
    assert (found["duration"].unit, list(point.explicit_bounds), list(point.bucket_counts)) == (
        "s", [0.1, 1.0, 1.4], [0, 1, 0, 0])
    assert point.sum == pytest.approx(0.25)


def test_default_buckets_in_seconds_and_a_disabled_histogram():
    assert configure(histogram={"unit": "s"}).bounds() == [b / 1000 for b in DEFAULT_BUCKETS]
    harness = Harness(histogram={"disable": True})
    harness.send(traces(span()))
    assert set(metrics_of(harness.flush(T0 + 1, final=True))) == {"traces.span.metrics.calls"}


# --- temporality -----------------------------------------------------------------------------

def test_cumulative_over_two_flushes():
    harness = Harness()
    harness.send(traces(span(ms=1), span(ms=3)))
    first = metrics_of(harness.flush(T0 + 60 * 10**9))
    harness.now[0] = T0 + 70 * 10**9
    harness.send(traces(span(ms=5)))
    second = metrics_of(harness.flush(T0 + 120 * 10**9))
    calls1, calls2 = (points(m["traces.span.metrics.calls"])[0] for m in (first, second))
    # A new cumulative sum is first reported at zero (so that rate() sees its first increment).
    assert (calls1.as_int, calls1.start_time_unix_nano, calls1.time_unix_nano) == (0, T0, T0 + 60 * 10**9)
    assert (calls2.as_int, calls2.start_time_unix_nano, calls2.time_unix_nano) == (3, T0, T0 + 120 * 10**9)
    hist1, hist2 = (points(m["traces.span.metrics.duration"])[0] for m in (first, second))
    assert (hist1.count, hist1.sum, hist2.count, hist2.sum) == (2, 4.0, 3, 9.0)
    assert hist2.start_time_unix_nano == T0
    # Nothing new: cumulative series are reported again as they stand.
    third = points(metrics_of(harness.flush(T0 + 180 * 10**9))["traces.span.metrics.calls"])[0]
    assert third.as_int == 3


def test_delta_over_two_flushes():
    harness = Harness(aggregation_temporality="AGGREGATION_TEMPORALITY_DELTA")
    harness.send(traces(span(ms=1), span(ms=3)))
    t1, t2 = T0 + 60 * 10**9, T0 + 120 * 10**9
    first = metrics_of(harness.flush(t1))
    harness.send(traces(span(ms=5)))
    second = metrics_of(harness.flush(t2))
    delta = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    assert first["traces.span.metrics.calls"].sum.aggregation_temporality == delta
    assert first["traces.span.metrics.duration"].histogram.aggregation_temporality == delta
    calls1, calls2 = (points(m["traces.span.metrics.calls"])[0] for m in (first, second))
    assert (calls1.as_int, calls1.start_time_unix_nano, calls1.time_unix_nano) == (2, T0, t1)
    assert (calls2.as_int, calls2.start_time_unix_nano, calls2.time_unix_nano) == (1, t1, t2)
    hist2 = points(second["traces.span.metrics.duration"])[0]
    assert (hist2.count, hist2.sum, hist2.start_time_unix_nano) == (1, 5.0, t1)
    assert harness.flush(T0 + 180 * 10**9) is None  # nothing since: nothing to send


def test_the_shutdown_flush_reports_fresh_series_as_they_are():
    harness = Harness()
    harness.send(traces(span()))
    asyncio.run(harness.connector.shutdown())
    assert points(metrics_of(harness.out.requests[-1])["traces.span.metrics.calls"])[0].as_int == 1


# --- dimensions ------------------------------------------------------------------------------

def test_dimensions_from_the_span_then_the_resource_then_the_default():
    harness = Harness(dimensions=[{"name": "http.request.method", "default": "GET"}, {"name": "region"},
                                  {"name": "http.response.status_code"}])
    harness.send(traces(span("a", attributes={"http.request.method": "POST", "region": "eu",
                                              "http.response.status_code": 503}),
                        span("b"),
                        resource={"service.name": "chat", "region": "us"}))
    found = by_name(metrics_of(harness.flush(T0 + 1, final=True))["traces.span.metrics.calls"])
    assert labels(found["a"]) == {"service.name": "chat", "span.name": "a", "span.kind": "SPAN_KIND_SERVER",
                                  "status.code": "STATUS_CODE_UNSET", "http.request.method": "POST",
                                  "region": "eu", "http.response.status_code": 503}  # the type is kept
    # No such attribute: the default where there is one, else the dimension is left out.
    assert labels(found["b"]) == {"service.name": "chat", "span.name": "b", "span.kind": "SPAN_KIND_SERVER",
                                  "status.code": "STATUS_CODE_UNSET", "http.request.method": "GET", "region": "us"}


def test_calls_and_histogram_dimensions_apply_to_their_metric_only():
    harness = Harness(calls_dimensions=[{"name": "a"}], histogram={"dimensions": [{"name": "b"}]})
    harness.send(traces(span(attributes={"a": "1", "b": "2"})))
    found = metrics_of(harness.flush(T0 + 1, final=True))
    assert labels(points(found["traces.span.metrics.calls"])[0])["a"] == "1"
    assert "b" not in labels(points(found["traces.span.metrics.calls"])[0])
    assert labels(points(found["traces.span.metrics.duration"])[0])["b"] == "2"


def test_exclude_dimensions():
    harness = Harness(exclude_dimensions=["status.code", "span.kind"])
    harness.send(traces(span(code=ERROR), span(code=OK, kind=CLIENT)))
    calls = points(metrics_of(harness.flush(T0 + 1, final=True))["traces.span.metrics.calls"])
    assert [(labels(p), p.as_int) for p in calls] == [({"service.name": "chat", "span.name": "GET /chat"}, 2)]


def test_included_instrumentation_scopes_become_dimensions():
    harness = Harness(include_instrumentation_scope=["openai"])
    harness.send(traces(span(), scope=("openai", "1.2")), traces(span(), scope=("other", "9")))
    calls = points(metrics_of(harness.flush(T0 + 1, final=True))["traces.span.metrics.calls"])
    assert [labels(p).get("span.instrumentation.scope.name") for p in calls] == ["openai", None]
    assert labels(calls[0])["span.instrumentation.scope.version"] == "1.2"


def test_a_resource_without_service_name_makes_no_metrics_and_is_counted():
    harness = Harness()
    harness.send(traces(span(), span(), resource={"host.name": "h"}))
    assert harness.flush(T0 + 1, final=True) is None
    assert harness.telemetry.registry.get_sample_value(
        "otelcol_connector_spanmetrics_skipped_spans_total", {"connector": "spanmetrics"}) == 2


def test_resources_are_told_apart_by_the_key_attributes():
    every = Harness()
    keyed = Harness(resource_metrics_key_attributes=["service.name"])
    for harness in (every, keyed):
        harness.send(traces(span(), resource={"service.name": "chat", "process.pid": 1}),
                     traces(span(), resource={"service.name": "chat", "process.pid": 2}))
    assert len(every.flush(T0 + 1, final=True).resource_metrics) == 2
    request = keyed.flush(T0 + 1, final=True)
    assert len(request.resource_metrics) == 1
    assert points(metrics_of(request)["traces.span.metrics.calls"])[0].as_int == 2


# --- limits ----------------------------------------------------------------------------------

def test_cardinality_limit_sends_new_series_to_the_overflow_series():
    harness = Harness(aggregation_cardinality_limit=2)
    harness.send(traces(*[span(f"op-{i}") for i in range(5)]), traces(span("op-0")))
    found = metrics_of(harness.flush(T0 + 1, final=True))
    for name in ("traces.span.metrics.calls", "traces.span.metrics.duration"):
        series = {tuple(sorted(labels(p).items())): p for p in points(found[name])}
        assert len(series) == 3
        overflow = series[(("otel.metric.overflow", True),)]
        assert (overflow.count if name.endswith("duration") else overflow.as_int) == 3
    assert by_name(found["traces.span.metrics.calls"])["op-0"].as_int == 2  # a known series keeps counting
    assert harness.telemetry.registry.get_sample_value(
        "otelcol_connector_spanmetrics_overflow_points_total", {"connector": "spanmetrics", "metric": "calls"}) == 3


def test_metrics_expiration_forgets_resources_without_spans():
    harness = Harness(metrics_expiration="5m")
    harness.send(traces(span(), resource={"service.name": "old"}))
    harness.now[0] = T0 + 4 * 60 * 10**9
    harness.send(traces(span(), resource={"service.name": "new"}))
    assert len(harness.flush(T0 + 5 * 60 * 10**9).resource_metrics) == 2  # reported, then "old" expires
    request = harness.flush(T0 + 6 * 60 * 10**9)
    assert [attrs.get(rm.resource.attributes, "service.name") for rm in request.resource_metrics] == ["new"]


def test_the_least_recently_seen_resource_is_evicted_after_one_last_report():
    harness = Harness(resource_metrics_cache_size=1)
    harness.send(traces(span(), resource={"service.name": "a"}), traces(span(), resource={"service.name": "b"}))
    first = harness.flush(T0 + 1)
    assert [attrs.get(rm.resource.attributes, "service.name") for rm in first.resource_metrics] == ["b", "a"]
    second = harness.flush(T0 + 2)
    assert [attrs.get(rm.resource.attributes, "service.name") for rm in second.resource_metrics] == ["b"]


# --- events, exemplars, exponential histograms -----------------------------------------------

def test_events_metric():
    harness = Harness(events={"enabled": True, "dimensions": [{"name": "exception.type"}]})
    harness.send(traces(span(events=[("exception", {"exception.type": "RateLimitError"}),
                                     ("exception", {"exception.type": "RateLimitError"}),
                                     ("log", {})])))
    events = metrics_of(harness.flush(T0 + 1, final=True))["traces.span.metrics.events"]
    assert {labels(p).get("exception.type"): p.as_int for p in points(events)} == {None: 1, "RateLimitError": 2}


def test_exemplars_when_enabled_capped_and_cleared_by_a_flush():
    harness = Harness(exemplars={"enabled": True, "max_per_data_point": 2})
    harness.send(traces(span(trace=1, ms=3), span(trace=2), span(trace=3)))
    point = points(metrics_of(harness.flush(T0 + 1))["traces.span.metrics.duration"])[0]
    assert [(e.trace_id, e.span_id, e.as_double) for e in point.exemplars] == [
        (b"\x01" * 16, b"\x01" * 8, 3.0), (b"\x02" * 16, b"\x02" * 8, 1.0)]
    assert all(e.time_unix_nano == T0 + 1 for e in point.exemplars)
    again = points(metrics_of(harness.flush(T0 + 2))["traces.span.metrics.duration"])[0]
    assert list(again.exemplars) == []
    off = Harness()  # the default: no exemplars
    off.send(traces(span()))
    assert list(points(metrics_of(off.flush(T0 + 1, final=True))["traces.span.metrics.duration"])[0].exemplars) == []


@pytest.mark.parametrize("value, scale, index", [(1.0, 0, -1), (2.0, 0, 0), (3.0, 0, 1), (4.0, 0, 1),
                                                 (4.0, -1, 0), (1.4, 1, 0), (1.5, 1, 1), (2.0, 1, 1), (1.0, 20, -1)])
def test_exponential_bucket_index(value, scale, index):
    # Bucket i at scale s is (2**(i / 2**s), 2**((i+1) / 2**s)].
    assert index_of(value, scale) == index
    base = 2 ** (2.0 ** -scale)
    assert base ** index < value <= base ** (index + 1) * (1 + 1e-12)


def test_exponential_histogram_rescales_to_max_size():
    histogram = ExponentialHistogram(max_size=4)
    for value in (1.0, 3.0, 100.0, 0.0):
        histogram.observe(value)
    offset, counts = histogram.buckets()
    assert len(counts) <= 4 and sum(counts) == 3 and histogram.zero_count == 1
    base = 2 ** (2.0 ** -histogram.scale)
    for value in (1.0, 3.0, 100.0):
        assert counts[index_of(value, histogram.scale) - offset] >= 1
        assert base ** index_of(value, histogram.scale) < value
    harness = Harness(histogram={"exponential": {"max_size": 10}})
    harness.send(traces(span(ms=1), span(ms=1000)))
    point = points(metrics_of(harness.flush(T0 + 1, final=True))["traces.span.metrics.duration"])[0]
    assert (point.count, point.sum, point.min, point.max) == (2, 1001.0, 1.0, 1000.0)
    assert len(point.positive.bucket_counts) <= 10 and sum(point.positive.bucket_counts) == 2
    base = 2 ** (2.0 ** -point.scale)
    last = point.positive.offset + len(point.positive.bucket_counts) - 1
    assert base ** point.positive.offset < 1.0 <= base ** (point.positive.offset + 1) * (1 + 1e-12)
    assert base ** last < 1000.0 <= base ** (last + 1) * (1 + 1e-12)


@pytest.mark.parametrize("raw, problems", [
    ({"dimensions": [{"name": "span.name"}]}, ["dimensions: duplicate dimension name span.name"]),
    ({"events": {"enabled": True}}, ["events::dimensions: no dimensions configured for events"]),
    ({"histogram": {"explicit": {}, "exponential": {}}},
     ["histogram: use either `explicit` or `exponential` buckets histogram"]),
    ({"histogram": {"unit": "us"}}, ['histogram::unit: "us" is not one of: ms, s']),
    ({"histogram": {"explicit": {"buckets": ["2s", "1s"]}}}, ["histogram::explicit::buckets: must be increasing"]),
    ({"aggregation_temporality": "DELTA"}, ['aggregation_temporality: "DELTA" is not one of: ']),
    ({"aggregation_cardinality_limit": -1}, ["aggregation_cardinality_limit: must not be negative"]),
    ({"metrics_flush_interval": "0s"}, ["metrics_flush_interval: must be positive"]),
])
def test_invalid_settings_name_their_key(raw, problems):
    _, got = decode(spanmetrics.Config, raw)
    assert len(got) == len(problems) and all(str(p).startswith(e) for p, e in zip(got, problems)), got


def test_a_refused_delta_flush_is_counted():
    harness = Harness(aggregation_temporality="AGGREGATION_TEMPORALITY_DELTA")

    class Refusing:
        async def consume(self, request):
            raise RetryableError("queue full")

    harness.connector.bind({Signal.METRICS: Refusing()})
    harness.send(traces(span("a"), span("b")))
    asyncio.run(harness.connector.flush())
    sample = harness.telemetry.registry.get_sample_value
    assert sample("otelcol_connector_spanmetrics_flush_failures_total", {"connector": "spanmetrics"}) == 1
    assert sample("otelcol_connector_spanmetrics_dropped_points_total", {"connector": "spanmetrics"}) == 4


# --- through pipelines, and as Prometheus serves them ----------------------------------------

def test_traces_in_metrics_out_through_a_running_relay():
    """A real OTLP/gRPC receiver feeds a traces pipeline ending in the connector, whose metrics
    pipeline ends in a recording exporter; the test flushes instead of waiting 60 s."""
    recorded = Recorder()
    module = type("Recording", (), {"TYPE": "recording", "SIGNALS": (Signal.METRICS,), "Config": _Empty,
                                    "create": staticmethod(lambda settings, config: _Exporter(recorded))})
    registry = default_registry().add("exporters", module)
    port = free_port()
    text = yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}},
        "connectors": {"spanmetrics": {"dimensions": [{"name": "gen_ai.request.model"}]}},
        "exporters": {"recording": {}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["spanmetrics"]},
                                  "metrics": {"receivers": ["spanmetrics"], "exporters": ["recording"]}}},
    })
    config = load(text, registry, env={})

    async def run():
        graph = Graph(config, SelfMetrics())
        await graph.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(Signal.TRACES.method, request_serializer=lambda r: r.SerializeToString(),
                                           response_deserializer=Signal.TRACES.response_type.FromString)
                await call(traces(span(attributes={"gen_ai.request.model": "gpt-4o"}), span(ms=30)), timeout=10)
            await graph.connectors[ComponentID("spanmetrics")].flush()
        finally:
            await graph.shutdown(5.0)

    asyncio.run(run())
    assert len(recorded.requests) == 2  # the flush, and the last one at shutdown
    calls = metrics_of(recorded.requests[-1])["traces.span.metrics.calls"]
    assert {labels(p).get("gen_ai.request.model"): p.as_int for p in points(calls)} == {None: 1, "gpt-4o": 1}


@dataclass
class _Empty:
    def validate(self):
        return []


class _Exporter:
    mutates_data = False

    def __init__(self, recorder):
        self.recorder = recorder

    async def start(self):
        pass

    async def shutdown(self):
        pass

    async def consume(self, request):
        await self.recorder.consume(request)


def test_prometheus_serves_the_collectors_names():
    harness = Harness()
    harness.send(traces(span(code=ERROR, ms=3), span(code=ERROR, ms=300),
                        resource={"service.name": "chat", "service.instance.id": "i-1"}))
    config, problems = decode(prometheus.Config, {"endpoint": "127.0.0.1:0"})
    assert problems == []
    transport = PrometheusTransport(ComponentID.parse("prometheus"), config, SelfMetrics(), now=lambda: 1000.0)

    async def go():
        for at in (T0 + 60 * 10**9, T0 + 120 * 10**9):
            harness.now[0] = at
            await harness.connector.flush()
            await transport.send(harness.out.requests[-1])

    asyncio.run(go())
    body = generate_latest(transport.registry).decode()
    samples = {(s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(body)
               for s in f.samples}
    series = {"service_name": "chat", "span_name": "GET /chat", "span_kind": "SPAN_KIND_SERVER",
              "status_code": "STATUS_CODE_ERROR", "job": "chat", "instance": "i-1",
              "otel_scope_name": "spanmetricsconnector", "otel_scope_version": "", "otel_scope_schema_url": ""}
    assert samples[("traces_span_metrics_calls_total", frozenset(series.items()))] == 2
    bucket = "traces_span_metrics_duration_milliseconds_bucket"
    assert samples[(bucket, frozenset({**series, "le": "4"}.items()))] == 1
    assert samples[(bucket, frozenset({**series, "le": "400"}.items()))] == 2
    assert samples[("traces_span_metrics_duration_milliseconds_count", frozenset(series.items()))] == 2
    assert samples[("traces_span_metrics_duration_milliseconds_sum", frozenset(series.items()))] == 303


def test_the_connector_is_registered_under_both_names():
    registry = default_registry()
    assert registry.connectors["spanmetrics"] is registry.connectors["span_metrics"]
    connector = registry.connectors["spanmetrics"].create(Settings(ComponentID("spanmetrics"), SelfMetrics()),
                                                          configure())
    assert isinstance(connector, spanmetrics.SpanMetrics)
