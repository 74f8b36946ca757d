"""The genops_metrics connector: spans in, the metrics contract out."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from relay import attrs
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.connectors import genops_metrics
from relay.connectors.genops_metrics import aggregate
from relay.errors import ConfigError
from relay.pipeline.graph import Graph
from relay.pipeline.registry import default_registry
from relay.telemetry import SelfMetrics
from tests.support import Recorder

START = 1_767_225_600_000_000_000


@pytest.fixture(autouse=True, params=["native", "python"] if aggregate.accumulate else ["python"])
def adder(request, monkeypatch):
    """Every test runs with the native accumulator (where built) and with the Python path."""
    if request.param == "python":
        monkeypatch.setattr(aggregate, "accumulate", None)
    return request.param


def spans_request(spans: list[tuple[dict, float, bool]]) -> ExportTraceServiceRequest:
    """(attributes, duration in seconds, error) per span."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for attributes, seconds, error in spans:
        span = scope.spans.add(name="chat", start_time_unix_nano=START,
                               end_time_unix_nano=START + int(seconds * 1e9))
        if error:
            span.status.code = 2
        for key, value in attributes.items():
            attrs.put(span.attributes, key, value)
    return request


def connector(settings: dict | None = None, telemetry: SelfMetrics | None = None):
    config, problems = decode(genops_metrics.Config, settings or {})
    assert problems == []
    made = genops_metrics.create(Settings(ComponentID("genops_metrics"), telemetry or SelfMetrics()), config)
    sink = Recorder()
    made.bind({genops_metrics.Signal.METRICS: sink})
    made.clock = lambda: START + 60_000_000_000
    made.start_ns = START
    return made, sink


def flushed(made, sink):
    """The request a second flush sends: the first reports new series at zero."""
    asyncio.run(made.flush())
    asyncio.run(made.flush())
    return sink.requests[-1]


def points(request) -> dict[str, dict[tuple, object]]:
    """{metric name: {sorted attribute items: value or (bucket counts, sum, count)}}"""
    out: dict = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                table = out.setdefault(metric.name, {})
                for point in getattr(metric, kind).data_points:
                    key = tuple(sorted((kv.key, attrs.to_python(kv.value)) for kv in point.attributes))
                    if kind == "histogram":
                        table[key] = (list(point.bucket_counts), point.sum, point.count)
                    else:
                        table[key] = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
    return out


def llm(team: str, model: str = "openai/gpt-4o", cost: float | None = 0.01, provider: str = "OpenAI",
        **extra) -> dict:
    attributes = {"genops.team": team, "genops.project": "assist", "genops.model": model,
                  "genops.openrouter.actual_provider": provider, "gen_ai.request.model": model,
                  "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200}
    if cost is not None:
        attributes["genops.cost.total"] = cost
    attributes.update(extra)
    return attributes


def labels(**pairs) -> tuple:
    return tuple(sorted((key.replace("__", "."), value) for key, value in pairs.items()))


def test_the_metrics_contract_from_spans():
    made, sink = connector()
    request = spans_request([
        (llm("search", cost=0.5), 1.5, False),
        (llm("search", cost=0.25, **{"gen_ai.usage.cache_read.input_tokens": 600,
                                     "gen_ai.usage.reasoning_tokens": 50}), 0.3, False),
        (llm("ads", cost=1.0, **{"http.response.status_code": 502, "error.type": "upstream_timeout"}), 30.0, True),
        (llm("ads", cost=None), 0.05, True),
        ({"http.route": "/health"}, 0.01, False),
        (llm("ads", model="anthropic/claude-3.5-sonnet", cost=0.0, provider="Amazon Bedrock",
             **{"genops.openrouter.predicted_provider": "Anthropic"}), 2.0, False),
    ])
    asyncio.run(made.consume(request))
    got = points(flushed(made, sink))
    cost_labels = dict(genops__team="search", genops__project="assist", genops__model="openai/gpt-4o",
                       genops__openrouter__actual_provider="OpenAI")
    assert got["requests"][labels(**cost_labels, http__status_code="200")] == 2
    ads = dict(cost_labels, genops__team="ads")
    assert got["requests"][labels(**ads, http__status_code="502")] == 1
    assert got["requests"][labels(**ads, http__status_code="500")] == 1  # ERROR without a status: 500
    # cost has the labels of requests, http_status_code included, so that the guide's
    # rate(cost_total) / rate(requests_total) matches series one to one.
    assert set(got["cost"]) == set(got["requests"])
    assert got["cost"][labels(**cost_labels, http__status_code="200")] == pytest.approx(0.75)
    assert got["cost"][labels(**ads, http__status_code="502")] == pytest.approx(1.0)
    assert got["cost"][labels(**ads, http__status_code="500")] == 0.0  # priced at nothing: no cost reported
    # Token types are disjoint: 2000 input of which 600 cached, 400 output of which 50 reasoning.
    tokens = {dict(k)["token_type"]: v for k, v in got["tokens"].items() if dict(k)["genops.team"] == "search"}
    assert tokens == {"input": 1400, "cache_read": 600, "cache_write": 0, "output": 350, "reasoning": 50}
    duration = got["request.duration"][labels(genops__team="search", genops__model="openai/gpt-4o",
                                              genops__openrouter__actual_provider="OpenAI")]
    buckets = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0]
    expected = [0] * 12
    expected[buckets.index(0.5)] += 1   # 0.3 s
    expected[buckets.index(2.5)] += 1   # 1.5 s
    assert duration == (expected, pytest.approx(1.8), 2)
    assert got["errors"] == {
        labels(genops__team="ads", genops__model="openai/gpt-4o", error_type="upstream_timeout"): 1,
        labels(genops__team="ads", genops__model="openai/gpt-4o", error_type="span_error"): 1,
    }
    assert got["provider.switches"] == {labels(genops__model="anthropic/claude-3.5-sonnet",
                                               genops__openrouter__predicted_provider="Anthropic",
                                               genops__openrouter__actual_provider="Amazon Bedrock"): 1}
    assert sum(got["requests"].values()) == 5  # the non-LLM span is not counted


def test_series_are_cumulative_across_flushes_and_named_for_the_contract():
    made, sink = connector()
    for _ in range(3):
        asyncio.run(made.consume(spans_request([(llm("search", cost=0.1), 1.0, False)])))
        asyncio.run(made.flush())
    values = [sum(points(r)["requests"].values()) for r in sink.requests]
    assert values == [0, 2, 3]  # a new series is reported at zero first, so rate() sees its first increase
    metrics = {m.name: m for m in sink.requests[-1].resource_metrics[0].scope_metrics[0].metrics}
    assert {name: m.unit for name, m in metrics.items()} == {
        "requests": "{request}", "cost": "{USD}", "tokens": "{token}", "request.duration": "s"}
    assert all(m.sum.is_monotonic and m.sum.aggregation_temporality == 2
               for name, m in metrics.items() if name != "request.duration")
    assert metrics["request.duration"].histogram.aggregation_temporality == 2
    point = metrics["requests"].sum.data_points[0]
    assert point.start_time_unix_nano < point.time_unix_nano


def test_a_new_series_is_first_reported_at_zero():
    made, sink = connector()
    asyncio.run(made.consume(spans_request([(llm("search", cost=0.5), 1.0, False)])))
    asyncio.run(made.flush())
    first = points(sink.requests[0])
    assert set(first["requests"].values()) == {0} and set(first["cost"].values()) == {0.0}
    assert all(count == 0 for _, _, count in first["request.duration"].values())
    asyncio.run(made.flush())
    assert sum(points(sink.requests[1])["requests"].values()) == 1


def test_extra_dimensions_with_defaults():
    made, sink = connector({"dimensions": [{"name": "genops.customer_id", "default": "none"},
                                           {"name": "genops.environment"}]})
    asyncio.run(made.consume(spans_request([
        (llm("search", **{"genops.customer_id": "c-1", "genops.environment": "prod"}), 1.0, False),
        (llm("search"), 1.0, False)])))
    customers = {dict(k).get("genops.customer_id") for k in points(flushed(made, sink))["cost"]}
    assert customers == {"c-1", "none"}


def test_cardinality_limit_sends_new_series_to_one_overflow_series():
    telemetry = SelfMetrics()
    made, sink = connector({"aggregation_cardinality_limit": 10,
                            "dimensions": [{"name": "genops.customer_id"}]}, telemetry)
    asyncio.run(made.consume(spans_request([(llm("t", **{"genops.customer_id": f"c{i}"}), 1.0, False)
                                            for i in range(100)])))
    got = points(flushed(made, sink))
    for name in ("requests", "cost"):
        assert len(got[name]) == 11
        assert got[name][(("otel.metric.overflow", True),)] == pytest.approx(90 if name == "requests" else 0.9)
    assert telemetry.registry.get_sample_value("otelcol_connector_genops_metrics_overflow_points_total",
                                               {"connector": "genops_metrics", "metric": "requests"}) == 90


CONFIG = """
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:0"}}}}
connectors: {genops_metrics: {metrics_flush_interval: 1h}}
exporters: {debug: {}}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [genops_metrics, debug]}
    metrics/cost: {receivers: [genops_metrics], exporters: [debug]}
"""


def test_a_connector_joins_a_traces_pipeline_to_a_metrics_pipeline_and_flushes_on_shutdown():
    config = load(CONFIG, default_registry(), env={})
    graph = Graph(config, SelfMetrics())
    made = graph.connectors[ComponentID("genops_metrics")]
    sink = Recorder()
    made.bind({genops_metrics.Signal.METRICS: sink})
    receiver = graph.receivers[ComponentID("otlp")]

    async def run():
        await graph.start()
        await receiver.consumers[genops_metrics.Signal.TRACES].consume(
            spans_request([(llm("search"), 1.0, False)]))
        assert sink.requests == []  # nothing before the first flush ...
        await graph.shutdown(timeout=5)

    asyncio.run(run())
    # ... and the last one on shutdown, with every series as it stands
    assert list(points(sink.requests[0])["requests"].values()) == [1]


@pytest.mark.parametrize("text, expected", [
    (CONFIG.replace("    metrics/cost: {receivers: [genops_metrics], exporters: [debug]}\n", ""),
     ['service::pipelines::traces::exporters::0: connector "genops_metrics" is used as an exporter but no '
      "pipeline uses it as a receiver"]),
    (CONFIG.replace("exporters: [genops_metrics, debug]", "exporters: [debug]"),
     ['service::pipelines::metrics/cost::receivers::0: connector "genops_metrics" is used as a receiver but no '
      "pipeline uses it as an exporter"]),
    (CONFIG.replace("metrics/cost:", "logs/cost:"),
     ['service::pipelines::logs/cost::receivers::0: connector "genops_metrics" does not emit logs']),
])
def test_connector_wiring_errors(text, expected):
    with pytest.raises(ConfigError) as error:
        load(text, default_registry(), env={})
    assert [str(p) for p in error.value.problems] == expected


def test_absurd_numbers_neither_crash_nor_poison_the_totals():
    made, sink = connector()
    asyncio.run(made.consume(spans_request([
        (llm("t", cost=float("inf"), **{"gen_ai.usage.input_tokens": float("inf"),
                                         "gen_ai.usage.output_tokens": float("nan")}), 1.0, False),
        (llm("t", cost=float("nan")), 1.0, False),
        (llm("t", cost=0.5, **{"gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": -4}), 1.0, False),
    ])))
    got = points(flushed(made, sink))
    assert list(got["cost"].values()) == [0.5]
    tokens = {dict(k)["token_type"]: v for k, v in got["tokens"].items()}
    # An infinite count is no count: it adds nothing (the default llm() span's 1000 and the "12" do).
    assert tokens["input"] == 1000 + 12
    assert tokens["output"] == 0 + 200 + 0
