"""deploy/examples/redaction.yaml, run as written, keeps content and raw customer ids from the backend.

A relay process runs the example file with only its endpoints pointed at this
machine (string replacement, nothing else changed). The real OpenTelemetry SDK
sends LLM spans carrying prompt and completion content in both the flattened
and the current convention, and a customer id on span, resource and metric
attributes. Every request the sink received is serialized again and searched
byte for byte: none of the content and not the raw id may appear, while the
id's SHA-256 does, exactly as the attributes processor computes it.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from relay import attrs
from relay.attributes.values import digest
from relay.signals import Signal
from tests.support import ROOT, RelayProcess, free_port

EXAMPLE = ROOT / "deploy" / "examples" / "redaction.yaml"
CUSTOMER = "cust-4711"
# Distinct markers, so a hit in the bytes can only be leaked content.
PROMPT = "PROMPT-7f3a: what is our refund policy for order 99812?"
COMPLETION = "COMPLETION-c41e: refunds are possible within 30 days."
SYSTEM = "SYSTEM-0b2d: you are the support assistant of ACME."
INPUT_MESSAGES = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "INPUT-MSG-91aa"}]}])
OUTPUT_MESSAGES = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "OUTPUT-MSG-5d07"}],
                               "finish_reason": "stop"}])
LEAKS = [PROMPT, COMPLETION, SYSTEM, "INPUT-MSG-91aa", "OUTPUT-MSG-5d07", CUSTOMER]


def example_with_local_endpoints(ports: dict[str, int], sink_endpoint: str) -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    replacements = {
        "0.0.0.0:4317": f"127.0.0.1:{ports['grpc']}",
        "0.0.0.0:4318": f"127.0.0.1:{ports['http']}",
        "0.0.0.0:13133": f"127.0.0.1:{ports['health']}",
        "0.0.0.0:8888": f"127.0.0.1:{ports['telemetry']}",
        # The scheme turns TLS off for the plaintext sink.
        "otlp.backend.example.com:4317": f"http://{sink_endpoint}",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@pytest.fixture
def relay(tmp_path, sink):
    ports = {name: free_port() for name in ("grpc", "http", "health", "telemetry")}
    process = RelayProcess(example_with_local_endpoints(ports, sink.endpoint), tmp_path, ports["health"],
                           env={"BACKEND_API_KEY": "test-key"}).start()
    process.ports = ports
    yield process
    assert process.stop() == 0


def llm_span_attributes(**extra) -> dict:
    return {
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
        "gen_ai.request.model": "openai/gpt-4o", "gen_ai.response.model": "openai/gpt-4o",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200,
        # The flattened convention: one attribute per message part.
        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": PROMPT,
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": COMPLETION,
        # The current convention: the conversation as one attribute each.
        "gen_ai.input.messages": INPUT_MESSAGES, "gen_ai.output.messages": OUTPUT_MESSAGES,
        "gen_ai.system_instructions": SYSTEM,
        **extra,
    }


def send_spans(port: int, resource: dict, spans: list[tuple[str, dict]]) -> None:
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for name, attributes in spans:
        with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
            pass
    provider.shutdown()


def send_metric(port: int) -> None:
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"127.0.0.1:{port}", insecure=True),
                                           export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": "support-bot"}), metric_readers=[reader])
    provider.get_meter("support-bot").create_counter("llm.calls").add(1, {"genops.customer_id": CUSTOMER})
    provider.shutdown()  # exports what was recorded


def spans_by_name(sink) -> dict[str, tuple[dict, dict]]:
    """span name -> (span attributes, resource attributes), as the sink received them."""
    return {span.name: ({kv.key: attrs.to_python(kv.value) for kv in span.attributes},
                        {kv.key: attrs.to_python(kv.value) for kv in rs.resource.attributes})
            for request in sink.requests[Signal.TRACES] for rs in request.resource_spans
            for ss in rs.scope_spans for span in ss.spans}


def test_the_backend_receives_no_content_and_only_the_hashed_customer_id(relay, sink):
    send_spans(relay.ports["grpc"], {"service.name": "support-bot"}, [
        ("chat on span", llm_span_attributes(**{"genops.customer_id": CUSTOMER})),
        ("GET /orders", {"http.route": "/orders", "genops.customer_id": CUSTOMER}),
    ])
    send_spans(relay.ports["grpc"], {"service.name": "billing-bot", "genops.customer_id": CUSTOMER},
               [("chat on resource", llm_span_attributes())])
    send_metric(relay.ports["grpc"])
    assert sink.wait_for(Signal.TRACES, 3), relay.log_text()
    assert sink.wait_for(Signal.METRICS, 1), relay.log_text()

    wire = b"".join(request.SerializeToString() for signal in (Signal.TRACES, Signal.METRICS)
                    for request in sink.requests[signal])
    for leak in LEAKS:
        assert leak.encode() not in wire, leak

    # The processor's hash is SHA-256 over the id's UTF-8, in hex.
    hashed = hashlib.sha256(CUSTOMER.encode()).hexdigest()
    assert digest(AnyValue(string_value=CUSTOMER)) == hashed
    assert hashed.encode() in wire

    spans = spans_by_name(sink)
    on_span, _ = spans["chat on span"]
    assert on_span["genops.customer_id"] == hashed
    assert spans["GET /orders"][0]["genops.customer_id"] == hashed
    _, resource = spans["chat on resource"]
    assert resource["genops.customer_id"] == hashed
    for name, (span, _) in spans.items():
        assert not [key for key in span if key.startswith(("gen_ai.prompt", "gen_ai.completion"))], name
        assert not {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"} & set(span)

    # What is not content stays, and genops priced the call before redaction.
    assert on_span["gen_ai.request.model"] == "openai/gpt-4o"
    assert (on_span["gen_ai.usage.input_tokens"], on_span["gen_ai.usage.output_tokens"]) == (1000, 200)
    assert on_span["genops.cost.source"] == "computed" and on_span["genops.cost.total"] > 0

    (point,) = [point for request in sink.requests[Signal.METRICS] for rm in request.resource_metrics
                for sm in rm.scope_metrics for metric in sm.metrics if metric.name == "llm.calls"
                for point in metric.sum.data_points]
    assert {kv.key: attrs.to_python(kv.value) for kv in point.attributes} == {"genops.customer_id": hashed}


def test_logs_are_refused_rather_than_forwarded_unredacted(relay, sink):
    # Message events travel as log bodies, which attribute actions do not reach: the
    # example has no logs pipeline, so the relay takes no logs at all.
    request = urllib.request.Request(f"http://127.0.0.1:{relay.ports['http']}/v1/logs", data=b"",
                                     headers={"Content-Type": "application/x-protobuf"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 404
    # Traces are taken on the same port: the refusal is about the signal.
    traces = urllib.request.Request(f"http://127.0.0.1:{relay.ports['http']}/v1/traces", data=b"",
                                    headers={"Content-Type": "application/x-protobuf"}, method="POST")
    with urllib.request.urlopen(traces, timeout=5) as answer:
        assert answer.status == 200
    assert sink.count(Signal.LOGS) == 0
