"""The filter processor: the collector's OTTL form and its include/exclude form, drop counts,
error modes, and a run through a real pipeline.

Expected results follow the collector's filterprocessor README: an item matching any
condition is dropped; a dropped span takes its events; a metric whose data points are all
dropped goes too; empty scopes and resources go; when nothing is left, nothing is passed on
and the client is still told the data was accepted.
"""

from __future__ import annotations

import asyncio
import io
import json

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client import CollectorRegistry

from relay import attrs
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import PermanentError
from relay.pipeline.graph import Graph
from relay.pipeline.registry import default_registry
from relay.processors import filter as filter_processor
from relay.signals import Signal
from relay.telemetry import SelfMetrics, setup_logging
from tests.support import Recorder, Sink, free_port


def make(settings: dict, telemetry=None):
    config, problems = decode(filter_processor.Config, settings)
    assert problems == [], [str(p) for p in problems]
    sink = Recorder()
    telemetry = telemetry or SelfMetrics(CollectorRegistry())
    processor = filter_processor.create(Settings(ComponentID("filter", "ottl"), telemetry), config, sink)
    return processor, sink, telemetry


def run(settings: dict, request, telemetry=None):
    """What the next consumer receives (None: nothing was passed on) and the drop counter."""
    processor, sink, telemetry = make(settings, telemetry)
    asyncio.run(processor.consume(request))
    assert len(sink.requests) <= 1
    return (sink.requests[0] if sink.requests else None), telemetry


def problems(settings: dict) -> list[str]:
    _, found = decode(filter_processor.Config, settings, ("processors", "filter"))
    return [str(p) for p in found]


def dropped(telemetry, what: str) -> float | None:
    return telemetry.registry.get_sample_value(f"otelcol_processor_filter_{what}_filtered_total",
                                               {"filter": "filter/ottl"})


def put(kvs, values: dict):
    for key, value in values.items():
        attrs.put(kvs, key, value)


# --- data ---------------------------------------------------------------------------------------

def spans() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    app = request.resource_spans.add()
    put(app.resource.attributes, {"service.name": "app", "host.name": "web-1"})
    scope = app.scope_spans.add()
    health = scope.spans.add(name="GET /health")
    put(health.attributes, {"http.route": "/health"})
    health.events.add(name="grpc call")
    checkout = scope.spans.add(name="POST /checkout")
    put(checkout.attributes, {"http.route": "/checkout", "container.name": "app_container_2"})
    put(checkout.events.add(name="grpc.request").attributes, {"grpc": True})
    checkout.events.add(name="exception")
    scope.spans.add(name="app_3")
    local = request.resource_spans.add()
    put(local.resource.attributes, {"service.name": "worker", "host.name": "localhost"})
    local.scope_spans.add().spans.add(name="poll")
    return request


def with_ids(request):
    """Trace and span ids, which the OTLP receiver requires."""
    for number, span in enumerate((s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans), 1):
        span.trace_id, span.span_id = bytes([7] * 15 + [number]), bytes([9] * 7 + [number])
    return request


def trace_view(request) -> list | None:
    if request is None:
        return None
    return [(attrs.get(rs.resource.attributes, "service.name"),
             [(span.name, [event.name for event in span.events]) for ss in rs.scope_spans for span in ss.spans])
            for rs in request.resource_spans]


def metrics() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    put(rm.resource.attributes, {"service.name": "my_service", "my_label": "abc123"})
    sm = rm.scope_metrics.add()
    cost = sm.metrics.add(name="genops.cost.total")
    put(cost.sum.data_points.add(as_double=0.5).attributes, {"http.route": "/chat"})
    put(cost.sum.data_points.add(as_double=0.1).attributes, {"http.route": "/healthz"})
    sm.metrics.add(name="my.metric").gauge.data_points.add(as_int=1)
    sm.metrics.add(name="latency").histogram.data_points.add(count=3)
    sm.metrics.add(name="genops.debug.timing").gauge.data_points.add(as_double=2.0)
    quantiles = sm.metrics.add(name="quantiles")
    quantiles.summary.data_points.add(count=1)
    quantiles.summary.data_points.add(count=2)
    other = request.resource_metrics.add()
    put(other.resource.attributes, {"service.name": "my_service_name"})
    other.scope_metrics.add().metrics.add(name="up").gauge.data_points.add(as_int=1)
    return request


def metric_view(request) -> list | None:
    if request is None:
        return None
    out = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                out.append((metric.name, len(getattr(metric, kind).data_points)))
    return out


def logs() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    put(rl.resource.attributes, {"service.name": "app"})
    records = rl.scope_logs.add().log_records
    for text, severity in (("user logged in", 9), ("password=hunter2", 17), ("debugging", 5), ("disk full", 13)):
        record = records.add(severity_number=severity)
        record.body.string_value = text
        put(record.attributes, {"level": severity})
    return request


def log_view(request) -> list | None:
    if request is None:
        return None
    return [r.body.string_value for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]


# --- the OTTL form: the README's examples -------------------------------------------------------

@pytest.mark.parametrize("traces, expected, count", [
    ({"span": ['attributes["http.route"] == "/health"']},
     [("app", [("POST /checkout", ["grpc.request", "exception"]), ("app_3", [])]), ("worker", [("poll", [])])], 1),
    ({"span": ['attributes["container.name"] == "app_container_2"', 'resource.attributes["host.name"] == "localhost"',
               'name == "app_3"']},
     [("app", [("GET /health", ["grpc call"])])], 3),
    # Span events: the span stays, with the events that do not match; a dropped span's events are not looked at.
    ({"spanevent": ['attributes["grpc"] == true', 'IsMatch(name, ".*grpc.*")']},
     [("app", [("GET /health", []), ("POST /checkout", ["exception"]), ("app_3", [])]), ("worker", [("poll", [])])],
     0),
    ({"span": ['name == "GET /health"'], "spanevent": ['name == "exception"']},
     [("app", [("POST /checkout", ["grpc.request"]), ("app_3", [])]), ("worker", [("poll", [])])], 1),
    # Paths of the span's resource and scope, and converters, in prefixed and unprefixed form.
    ({"span": ['IsMatch(span.name, "^(GET|POST) ") and resource.attributes["service.name"] == "app"']},
     [("app", [("app_3", [])]), ("worker", [("poll", [])])], 2),
    ({"spanevent": ['span.name == "POST /checkout" and not IsMatch(name, "grpc")']},
     [("app", [("GET /health", ["grpc call"]), ("POST /checkout", ["grpc.request"]), ("app_3", [])]),
      ("worker", [("poll", [])])], 0),
    # Everything dropped: nothing is passed on.
    ({"span": ["true"]}, None, 4),
    ({"span": ['name == "nothing matches"']},
     [("app", [("GET /health", ["grpc call"]), ("POST /checkout", ["grpc.request", "exception"]), ("app_3", [])]),
      ("worker", [("poll", [])])], 0),
])
def test_traces(traces, expected, count):
    request, telemetry = run({"traces": traces}, spans())
    assert trace_view(request) == expected
    assert dropped(telemetry, "spans") == count


@pytest.mark.parametrize("settings, expected, count", [
    ({"metric": ['name == "my.metric" and resource.attributes["my_label"] == "abc123"',
                 "type == METRIC_DATA_TYPE_HISTOGRAM"]},
     [("genops.cost.total", 2), ("genops.debug.timing", 1), ("quantiles", 2), ("up", 1)], 2),
    ({"datapoint": ["metric.type == METRIC_DATA_TYPE_SUMMARY",
                    'resource.attributes["service.name"] == "my_service_name"']},
     [("genops.cost.total", 2), ("my.metric", 1), ("latency", 1), ("genops.debug.timing", 1)], 3),
    ({"datapoint": ['attributes["http.route"] == "/healthz"']},
     [("genops.cost.total", 1), ("my.metric", 1), ("latency", 1), ("genops.debug.timing", 1), ("quantiles", 2),
      ("up", 1)], 1),
    # Dropping metrics by name.
    ({"metric": ['IsMatch(name, "^genops\\\\.debug\\\\.")']},
     [("genops.cost.total", 2), ("my.metric", 1), ("latency", 1), ("quantiles", 2), ("up", 1)], 1),
    ({"metric": ['name == "genops.cost.total"'], "datapoint": ["true"]}, None, 8),
])
def test_metrics(settings, expected, count):
    request, telemetry = run({"metrics": settings}, metrics())
    assert metric_view(request) == expected
    assert dropped(telemetry, "datapoints") == count


@pytest.mark.parametrize("conditions, expected, count", [
    (['IsMatch(body, ".*password.*")', "severity_number < SEVERITY_NUMBER_WARN"], ["disk full"], 3),
    (["severity_number < SEVERITY_NUMBER_WARN"], ["password=hunter2", "disk full"], 2),
    (['IsMatch(body, ".*password.*")'], ["user logged in", "debugging", "disk full"], 1),
    (['attributes["level"] >= 9 or resource.attributes["service.name"] == "app"'], None, 4),
])
def test_logs(conditions, expected, count):
    request, telemetry = run({"logs": {"log_record": conditions}}, logs())
    assert log_view(request) == expected
    assert dropped(telemetry, "logs") == count


def test_a_signal_without_conditions_passes_through_untouched():
    request = metrics()
    empty = request.resource_metrics.add()  # an empty resource is only removed where the signal is filtered
    put(empty.resource.attributes, {"service.name": "idle"})
    before = request.SerializeToString()
    out, telemetry = run({"traces": {"span": ["true"]}}, request)
    assert out is request and out.SerializeToString() == before
    assert dropped(telemetry, "datapoints") == 0


def test_empty_scopes_and_resources_are_removed():
    request = spans()
    request.resource_spans.add().scope_spans.add()  # arrived empty
    out, _ = run({"traces": {"span": ['name == "poll"']}}, request)
    assert [attrs.get(rs.resource.attributes, "service.name") for rs in out.resource_spans] == ["app"]


def test_conditions_are_compiled_once_not_per_request(monkeypatch):
    from relay.ottl import parse

    processor, sink, _ = make({"traces": {"span": ['name == "poll"']}})

    def no_parsing(text):
        raise AssertionError(f"parsed again: {text}")

    monkeypatch.setattr(parse, "tokenize", no_parsing)
    for _ in range(2):
        asyncio.run(processor.consume(spans()))
    assert [len(r.resource_spans) for r in sink.requests] == [1, 1]


def test_component_contract():
    assert filter_processor.TYPE == "filter"
    assert set(filter_processor.SIGNALS) == {Signal.TRACES, Signal.METRICS, Signal.LOGS, Signal.PROFILES}
    processor, _, _ = make(filter_processor.EXAMPLE)
    assert processor.mutates_data is True
    # The collector's default since its error-mode feature gate went stable.
    assert filter_processor.Config().error_mode == "ignore"


# --- error modes --------------------------------------------------------------------------------

# ParseJSON("1") fails on every item, as in the collector's own error-mode tests.
FAILING = 'attributes["pass"] == ParseJSON("1")'
MATCHING = 'name == "app_3"'


def run_logged(settings: dict, request, telemetry):
    stream = io.StringIO()
    setup_logging("info", stream)
    out, _ = run(settings, request, telemetry)
    return out, [json.loads(line) for line in stream.getvalue().splitlines()]


def errors(telemetry) -> float | None:
    return telemetry.registry.get_sample_value("otelcol_processor_filter_errors_total",
                                               {"filter": "filter/ottl", "signal": "traces"})


@pytest.mark.parametrize("settings", [{}, {"error_mode": "ignore"}], ids=["default", "ignore"])
def test_ignore_takes_a_failing_condition_as_false_logs_and_goes_on(settings):
    telemetry = SelfMetrics(CollectorRegistry())
    out, lines = run_logged({**settings, "traces": {"span": [FAILING, MATCHING]}}, spans(), telemetry)
    assert [name for _, names in trace_view(out) for name, _ in names] == ["GET /health", "POST /checkout", "poll"]
    assert dropped(telemetry, "spans") == 1 and errors(telemetry) == 4
    assert lines == [{
        "ts": lines[0]["ts"], "level": "warning", "msg": "OTTL condition failed; the item is kept",
        "component": "filter/ottl", "condition": FAILING,
        "error": "ParseJSON: could not convert parsed value of type float64 to JSON object", "items": 4,
        "signal": "traces"}]


def test_silent_counts_without_logging():
    telemetry = SelfMetrics(CollectorRegistry())
    out, lines = run_logged({"error_mode": "silent", "traces": {"span": [FAILING, MATCHING]}}, spans(), telemetry)
    assert lines == [] and errors(telemetry) == 4 and dropped(telemetry, "spans") == 1


def test_propagate_raises_a_permanent_error_and_passes_nothing_on():
    processor, sink, telemetry = make({"error_mode": "propagate", "traces": {"span": [FAILING]}})
    with pytest.raises(PermanentError) as raised:
        asyncio.run(processor.consume(spans()))
    assert str(raised.value) == (f'filter/ottl: OTTL condition "{FAILING}" failed: ParseJSON: could not convert '
                                 "parsed value of type float64 to JSON object")
    assert sink.requests == []


@pytest.mark.parametrize("condition, failures, kept", [
    # Past float64 and too deep for the decoder: an error on the item (kept), not on the request.
    ('IsMap(ParseJSON(attributes["payload"]))', 1, 4),
    ('IsMap(ParseJSON(attributes["deep"]))', 1, 4),
    # Past int64, Int gives nil (Go's strconv.ParseInt refuses it), which is not 1.
    ('Int(attributes["big"]) == 1', None, 4),
], ids=["400-digit number", "deep", "5000-digit int"])
def test_hostile_data_fails_only_the_condition_never_the_request(condition, failures, kept):
    request = spans()
    health = request.resource_spans[0].scope_spans[0].spans[0]
    put(health.attributes, {"payload": "[" + "9" * 400 + "]", "deep": "[" * 100_000 + "]" * 100_000,
                            "big": "1" * 5000})
    telemetry = SelfMetrics(CollectorRegistry())
    guarded = f'attributes["http.route"] == "/health" and {condition}'
    out, _ = run({"traces": {"span": [guarded]}}, request, telemetry)
    assert sum(len(names) for _, names in trace_view(out)) == kept
    assert errors(telemetry) == failures


def _broken(item):
    raise ZeroDivisionError("division by zero")


def test_any_exception_from_a_condition_is_a_failure_on_the_data():
    # A condition raising something other than EvalError stands for a bug in a function: no
    # real one is known to (that is the point), so the plan is built by hand.
    from relay.processors.filter.config import Condition, Plan
    from relay.processors.filter.processor import Filter
    telemetry = SelfMetrics(CollectorRegistry())
    stream = io.StringIO()
    setup_logging("info", stream)
    plan = Plan({"span": (Condition("broken()", _broken),)}, {}, "ignore")
    assert trace_view(Filter("filter/ottl", plan, telemetry)(spans())) == trace_view(spans())
    assert errors(telemetry) == 4
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["condition"], line["error"], line["items"]) == ("broken()", "ZeroDivisionError: division by zero", 4)
    propagating = Plan({"span": (Condition("broken()", _broken),)}, {}, "propagate")
    with pytest.raises(PermanentError, match='"broken\\(\\)" failed: ZeroDivisionError: division by zero'):
        Filter("filter/ottl", propagating, telemetry)(spans())


# --- the include / exclude form -----------------------------------------------------------------

@pytest.mark.parametrize("settings, expected, count", [
    ({"metrics": {"include": {"match_type": "regexp", "metric_names": ["^genops\\."]}}},
     [("genops.cost.total", 2), ("genops.debug.timing", 1)], 5),
    ({"metrics": {"exclude": {"match_type": "strict", "metric_names": ["my.metric", "up"]}}},
     [("genops.cost.total", 2), ("latency", 1), ("genops.debug.timing", 1), ("quantiles", 2)], 2),
    ({"metrics": {"include": {"match_type": "regexp", "metric_names": [".*"]},
                  "exclude": {"match_type": "strict", "metric_names": ["quantiles"],
                              "resource_attributes": [{"key": "my_label", "value": "abc123"}]}}},
     [("genops.cost.total", 2), ("my.metric", 1), ("latency", 1), ("genops.debug.timing", 1), ("up", 1)], 2),
    ({"metrics": {"include": {"match_type": "strict",
                              "resource_attributes": [{"key": "service.name", "value": "my_service_name"}]}}},
     [("up", 1)], 7),
])
def test_legacy_metrics(settings, expected, count):
    request, telemetry = run(settings, metrics())
    assert metric_view(request) == expected
    assert dropped(telemetry, "datapoints") == count


def test_legacy_spans_and_logs():
    request, telemetry = run({"spans": {"exclude": {"match_type": "regexp", "services": ["^work"],
                                                    "span_names": ["^GET "]}}}, spans())
    assert trace_view(request) == [("app", [("GET /health", ["grpc call"]), ("POST /checkout",
                                                                          ["grpc.request", "exception"]),
                                            ("app_3", [])]), ("worker", [("poll", [])])]
    request, telemetry = run({"spans": {"include": {"match_type": "strict", "services": ["app"]},
                                        "exclude": {"match_type": "regexp", "span_names": ["^GET "]}}}, spans())
    assert trace_view(request) == [("app", [("POST /checkout", ["grpc.request", "exception"]), ("app_3", [])])]
    assert dropped(telemetry, "spans") == 2
    request, telemetry = run({"logs": {"include": {"match_type": "strict",
                                                   "record_attributes": [{"key": "level", "value": 17}]}}}, logs())
    assert log_view(request) == ["password=hunter2"] and dropped(telemetry, "logs") == 3


# --- config problems ----------------------------------------------------------------------------

@pytest.mark.parametrize("settings, expected", [
    ({"traces": {"span": ['colour == "red"']}},
     ['processors::filter::traces::span::0: unsupported OTTL condition "colour == "red"": unknown path "colour" '
      '(span paths: attributes, dropped_attributes_count, end_time_unix_nano, kind, name, parent_span_id.string, '
      'span_id.string, start_time_unix_nano, status.code, status.message, trace_id.string, trace_state)']),
    ({"metrics": {"metric": ['Concat([name], "")']}},
     ['processors::filter::metrics::metric::0: unsupported OTTL condition "Concat([name], "")": Concat returns a '
      'string, not a bool, so it cannot stand alone as a condition (compare it, e.g. Concat(...) == ...)']),
    ({"logs": {"log_record": ['IsMatch(body, "(?=x)")']}},
     ['processors::filter::logs::log_record::0: unsupported OTTL condition "IsMatch(body, "(?=x)")": invalid '
      'regular expression "(?=x)": lookahead and lookbehind are not supported (the collector\'s regular expressions '
      'are RE2)']),
    ({"traces": {"spanevent": ['name == "a" and']}},
     ['processors::filter::traces::spanevent::0: unsupported OTTL condition "name == "a" and": expected a value '
      'at column 16, got the end of the text']),
    ({"metrics": {"exclude": {"match_type": "expr", "expressions": ['MetricName == "x"']}}},
     ['processors::filter::metrics::exclude::match_type: match_type "expr" is not supported by this relay; write the '
      'condition in the OTTL form instead (e.g. metrics: {metric: [...]} or logs: {log_record: [...]})']),
    ({"logs": {"include": {"match_type": "regexp", "severity_texts": ["WARN"]}}},
     ['processors::filter::logs::include::severity_texts: severity_texts is not supported by this relay; write the '
      'condition in the OTTL form instead (e.g. metrics: {metric: [...]} or logs: {log_record: [...]})']),
    ({"metrics": {"metric": ['name == "x"'], "exclude": {"match_type": "strict", "metric_names": ["y"]}}},
     ["processors::filter::metrics: cannot use OTTL conditions and include/exclude for metrics at the same time"]),
    ({"traces": {"span": ["true"]}, "spans": {"exclude": {"match_type": "strict", "span_names": ["y"]}}},
     ["processors::filter: cannot use OTTL conditions (traces) and include/exclude (spans) at the same time"]),
    ({"error_mode": "loud"}, ['processors::filter::error_mode: "loud" is not one of: ignore, silent, propagate']),
    ({"traces": {"spans": ["true"]}},
     ["processors::filter::traces::spans: unknown key (valid keys: span, spanevent)"]),
])
def test_config_problems(settings, expected):
    assert problems(settings) == expected


# --- through a real pipeline ----------------------------------------------------------------------

def test_a_pipeline_drops_what_the_filter_matches_and_acknowledges_what_it_dropped_entirely():
    sink = Sink().start()
    port = free_port()
    config = load(f"""
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{port}"}}}}}}
processors:
  filter/ottl:
    error_mode: ignore
    traces:
      span:
        - 'attributes["http.route"] == "/health"'
exporters:
  otlp: {{endpoint: "{sink.endpoint}", tls: {{insecure: true}}, compression: none, sending_queue: {{enabled: false}}}}
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [filter/ottl], exporters: [otlp]}}
""", default_registry(), env={})
    only_health = ExportTraceServiceRequest()
    put(only_health.resource_spans.add().scope_spans.add().spans.add(name="probe").attributes,
        {"http.route": "/health"})
    with_ids(only_health)
    telemetry = SelfMetrics(CollectorRegistry())

    async def send_both():
        graph = Graph(config, telemetry)
        await graph.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                export = channel.unary_unary(Signal.TRACES.method)
                # Both calls succeed: the first is dropped entirely, which is not an error.
                await export(only_health.SerializeToString(), timeout=10)
                await export(with_ids(spans()).SerializeToString(), timeout=10)
        finally:
            await graph.shutdown(5.0)

    try:
        asyncio.run(send_both())
        assert sink.wait_for(Signal.TRACES, 3)
        [received] = sink.requests[Signal.TRACES]
        assert trace_view(received) == [("app", [("POST /checkout", ["grpc.request", "exception"]), ("app_3", [])]),
                                        ("worker", [("poll", [])])]
        assert dropped(telemetry, "spans") == 2
    finally:
        sink.stop()
