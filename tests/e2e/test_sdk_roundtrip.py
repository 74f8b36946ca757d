"""The real OpenTelemetry SDK sends all three signals through a relay process to a sink.

The SDK's exporters are subclassed only to keep a copy of each request they
encode; the sink must then hold exactly those requests, byte for byte.
"""

from __future__ import annotations

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from relay.signals import Signal
from tests.support import RelayProcess, emit_sample_metrics, free_port, passthrough_config

RESOURCE = Resource.create({"service.name": "chat-api", "service.version": "1.4.2",
                            "genops.team": "search", "deployment.environment.name": "prod"})


def same_requests(received, sent) -> bool:
    """Byte-identical requests, in any order: the relay's queue delivers them concurrently."""
    return sorted(r.SerializeToString() for r in received) == sorted(r.SerializeToString() for r in sent)


def recording(exporter_class):
    class Recording(exporter_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.sent = []

        def _translate_data(self, data, *args, **kwargs):
            request = super()._translate_data(data, *args, **kwargs)
            self.sent.append(request)
            return request
    return Recording


@pytest.fixture
def relay(tmp_path, sink):
    port, health = free_port(), free_port()
    process = RelayProcess(passthrough_config(port, {"otlp": sink.endpoint}, health), tmp_path, health).start()
    process.port = port
    yield process
    assert process.stop() == 0


def test_traces_arrive_exactly_as_sent(relay, sink):
    exporter = recording(OTLPSpanExporter)(endpoint=f"127.0.0.1:{relay.port}", insecure=True)
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("genops.openrouter", "0.3.0")
    with tracer.start_as_current_span("POST /v1/chat", kind=SpanKind.SERVER) as parent:
        with tracer.start_as_current_span("chat openai/gpt-4o", kind=SpanKind.CLIENT,
                                          links=[Link(parent.get_span_context(), {"why": "retry"})]) as span:
            span.set_attributes({
                "gen_ai.request.model": "openai/gpt-4o",
                "gen_ai.response.model": "openai/gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 350,
                "genops.cost.total": 0.0065, "genops.openrouter.fallback_used": False,
                "gen_ai.response.finish_reasons": ["stop"],
            })
            span.add_event("gen_ai.choice", {"index": 0})
            span.set_status(Status(StatusCode.ERROR, "upstream 502"))
    provider.shutdown()

    assert len(exporter.sent) == 2
    assert sink.wait_for(Signal.TRACES, 2)
    assert same_requests(sink.requests[Signal.TRACES], exporter.sent)
    received = {s.name: s for r in sink.requests[Signal.TRACES]
                for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans}
    child = received["chat openai/gpt-4o"]
    assert child.parent_span_id == received["POST /v1/chat"].span_id
    attrs = {kv.key: kv.value for kv in child.attributes}
    assert attrs["gen_ai.usage.input_tokens"].int_value == 1200
    assert attrs["genops.cost.total"].double_value == 0.0065
    assert child.status.message == "upstream 502"
    resource = {kv.key: kv.value.string_value for kv in sink.requests[Signal.TRACES][0].resource_spans[0].resource.attributes}
    assert resource["genops.team"] == "search"


def test_metrics_arrive_exactly_as_sent(relay, sink):
    exporter = recording(OTLPMetricExporter)(endpoint=f"127.0.0.1:{relay.port}", insecure=True)
    emit_sample_metrics(exporter, RESOURCE)

    assert exporter.sent
    assert sink.wait_for(Signal.METRICS, sum(Signal.METRICS.count(r) for r in exporter.sent))
    assert same_requests(sink.requests[Signal.METRICS], exporter.sent)
    metrics = {m.name: m for r in sink.requests[Signal.METRICS] for rm in r.resource_metrics
               for sm in rm.scope_metrics for m in sm.metrics}
    assert metrics["genops.requests"].sum.data_points[0].as_int == 3
    assert metrics["genops.request.duration"].histogram.data_points[0].sum == 1.7
    assert metrics["genops.budget.utilization"].gauge.data_points[0].as_double == 0.42


def test_logs_arrive_exactly_as_sent(relay, sink):
    exporter = recording(OTLPLogExporter)(endpoint=f"127.0.0.1:{relay.port}", insecure=True)
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("genops.openrouter")
    logger.emit(body="budget 80% used", severity_number=SeverityNumber.WARN, severity_text="WARN",
                attributes={"genops.team": "search", "budget.utilization": 0.8})
    provider.shutdown()

    assert len(exporter.sent) == 1
    assert sink.wait_for(Signal.LOGS, 1)
    assert same_requests(sink.requests[Signal.LOGS], exporter.sent)
    record = sink.requests[Signal.LOGS][0].resource_logs[0].scope_logs[0].log_records[0]
    assert record.body.string_value == "budget 80% used"
    assert record.severity_number == SeverityNumber.WARN.value
