"""The real SDK sends openai-instrumentation-shaped spans through a relay running genops."""

from __future__ import annotations

import time
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from relay import attrs
from relay.signals import Signal
from tests.support import RelayProcess, free_port

# openai/gpt-4o on OpenRouter: $2.50 / $10.00 per million input / output tokens, $1.25 cached input
# (OpenRouter's /api/v1/models listing as recorded in genai-prices 0.2.3, in force through 2026).
GPT4O_INPUT, GPT4O_OUTPUT, GPT4O_CACHED = 2.5e-6, 10e-6, 1.25e-6
# A negotiated rate configured below, per million tokens.
MINI_INPUT, MINI_OUTPUT = 0.10e-6, 0.40e-6

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
        include_metadata: true
processors:
  genops:
    defaults: {{team: unassigned, project: unassigned}}
    rules:
      - from_context: metadata.x-genops-team
        target: team
      - attribute: service.name
        pattern: "^support-"
        set: {{team: support, project: helpdesk}}
    pricing:
      overrides:
        - model: openai/gpt-4o-mini
          input: 0.10
          output: 0.40
exporters:
  otlp:
    endpoint: {sink}
    tls: {{insecure: true}}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [genops]
      exporters: [otlp]
  telemetry:
    metrics: {{level: none}}
"""


def send(port: int, service: str, spans: list[tuple[str, dict]], headers: dict | None = None) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, headers=headers)))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2", "2.1b0")
    for name, attributes in spans:
        with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
            pass
    provider.shutdown()


def openai_span(request_model: str, response_model: str, input_tokens: int, output_tokens: int, **extra) -> dict:
    return {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "server.address": "openrouter.ai",
            "gen_ai.request.model": request_model, "gen_ai.response.model": response_model,
            "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.response.finish_reasons": ("stop",), **extra}


@pytest.fixture
def relay(tmp_path, sink):
    port, health = free_port(), free_port()
    process = RelayProcess(CONFIG.format(port=port, sink=sink.endpoint, health=health), tmp_path, health).start()
    process.port = port
    yield process
    assert process.stop() == 0


def test_llm_spans_leave_the_relay_attributed_and_priced(relay, sink):
    send(relay.port, "support-bot", [
        ("chat openai/gpt-4o", openai_span("openai/gpt-4o", "openai/gpt-4o-2024-08-06", 1000, 200,
                                           **{"gen_ai.usage.cache_read.input_tokens": 600})),
        ("chat reported", openai_span("openai/gpt-4o", "openai/gpt-4o", 1000, 200, **{"gen_ai.usage.cost": 0.5})),
        ("chat unknown", openai_span("acme/private-llm", "acme/private-llm", 10, 10)),
        ("GET /health", {"http.route": "/health"}),
    ])
    send(relay.port, "billing-api", [("chat mini", openai_span("openai/gpt-4o", "openai/gpt-4o-mini", 2000, 500))],
         headers={"x-genops-team": "payments"})
    assert sink.wait_for(Signal.TRACES, 5)

    spans = {span.name: {kv.key: attrs.to_python(kv.value) for kv in span.attributes}
             for r in sink.requests[Signal.TRACES] for rs in r.resource_spans
             for ss in rs.scope_spans for span in ss.spans}

    priced = spans["chat openai/gpt-4o"]
    assert (priced["genops.team"], priced["genops.project"]) == ("support", "helpdesk")
    assert priced["genops.cost.total"] == pytest.approx(400 * GPT4O_INPUT + 600 * GPT4O_CACHED + 200 * GPT4O_OUTPUT,
                                                        rel=1e-9)
    assert (priced["genops.cost.currency"], priced["genops.cost.source"]) == ("USD", "computed")
    assert priced["genops.model"] == "openai/gpt-4o-2024-08-06"

    reported = spans["chat reported"]
    assert (reported["genops.cost.total"], reported["genops.cost.source"]) == (0.5, "reported")
    assert reported["gen_ai.usage.cost"] == 0.5

    unknown = spans["chat unknown"]
    assert unknown["genops.cost.source"] == "unpriced" and "genops.cost.total" not in unknown

    assert not any(key.startswith("genops.") for key in spans["GET /health"])

    mini = spans["chat mini"]
    assert (mini["genops.team"], mini["genops.project"]) == ("payments", "unassigned")
    assert mini["genops.cost.total"] == pytest.approx(2000 * MINI_INPUT + 500 * MINI_OUTPUT, rel=1e-9)
    assert mini["genops.cost.price_source"] == "override"


MINIMAL_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
processors:
  genops:
    attributes: minimal
    defaults: {{team: research, project: lab}}
connectors:
  genops_metrics: {{metrics_flush_interval: 100ms}}
exporters:
  otlp:
    endpoint: {sink}
    tls: {{insecure: true}}
  prometheus:
    endpoint: 127.0.0.1:{prometheus}
    namespace: genops_openrouter
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [genops]
      exporters: [otlp, genops_metrics]
    metrics/cost:
      receivers: [genops_metrics]
      exporters: [prometheus]
  telemetry:
    metrics: {{level: none}}
"""


def test_minimal_attributes_still_count_cost_and_tokens_downstream(tmp_path, sink):
    port, health, prometheus = free_port(), free_port(), free_port()
    process = RelayProcess(MINIMAL_CONFIG.format(port=port, sink=sink.endpoint, health=health,
                                                 prometheus=prometheus), tmp_path, health).start()
    try:
        send(port, "lab-bot", [("chat", openai_span("openai/gpt-4o", "openai/gpt-4o", 1000, 200))])
        assert sink.wait_for(Signal.TRACES, 1)
        (span,) = [{kv.key: attrs.to_python(kv.value) for kv in span.attributes}
                   for r in sink.requests[Signal.TRACES] for rs in r.resource_spans
                   for ss in rs.scope_spans for span in ss.spans]
        cost = 1000 * GPT4O_INPUT + 200 * GPT4O_OUTPUT
        assert {key for key in span if key.startswith("genops.")} == {"genops.team", "genops.cost.total"}
        assert span["genops.cost.total"] == pytest.approx(cost, rel=1e-9)
        # The connector reads the span's own token keys where genops wrote none. A new series
        # is first exported at zero (so that rate() sees its first increase): wait past that.
        samples = {}
        for _ in range(100):  # up to 10 s
            samples = scrape(prometheus)
            costs = [value for (name, labels), value in samples.items()
                     if name == "genops_openrouter_cost_total" and ("genops_team", "research") in labels]
            if costs and costs[0] > 0:
                break
            time.sleep(0.1)
        assert costs and costs[0] == pytest.approx(cost, rel=1e-9)
        tokens = sorted(value for (name, _), value in samples.items()
                        if name == "genops_openrouter_tokens_total" and value > 0)
        assert tokens == [200.0, 1000.0]
    finally:
        assert process.stop() == 0


def scrape(port: int) -> dict:
    """(metric name, frozenset of label pairs) -> value, from the prometheus exporter."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}
