"""The real OpenTelemetry SDK's OTLP/HTTP exporters send all three signals through a relay process.

The relay listens on OTLP/HTTP and OTLP/gRPC at once and forwards over
OTLP/gRPC to a recording sink. The exporters are given a requests.Session
that keeps every request as it went on the wire; once inflated, those bodies
must be exactly what the sink holds, byte for byte.
"""

from __future__ import annotations

import gzip
import json
import urllib.request
import zlib

import pytest
import requests
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from relay import fixtures
from relay.signals import Signal
from tests.support import ROOT, RelayProcess, Sink, emit_sample_metrics, free_port

RESOURCE = Resource.create({"service.name": "chat-api", "genops.team": "search"})


class RecordingSession(requests.Session):
    """Keeps each request as sent (headers, body) and the status it was answered with."""

    def __init__(self):
        super().__init__()
        self.sent: list[tuple[dict, bytes]] = []
        self.statuses: list[int] = []

    def send(self, request, **kwargs):
        self.sent.append((dict(request.headers), request.body))
        response = super().send(request, **kwargs)
        self.statuses.append(response.status_code)
        return response

    def bodies(self) -> list[bytes]:
        """The serialized requests, inflated as the relay had to."""
        out = []
        for headers, data in self.sent:
            encoding = headers.get("Content-Encoding", "")
            out.append(gzip.decompress(data) if encoding == "gzip"
                       else zlib.decompress(data) if encoding == "deflate" else data)
        return out

    def encodings(self) -> set[str]:
        return {headers.get("Content-Encoding", "") for headers, _ in self.sent}


class Relay:
    def __init__(self, process: RelayProcess, http_port: int, grpc_port: int, sink: Sink):
        self.process, self.http_port, self.grpc_port, self.sink = process, http_port, grpc_port, sink
        self.seen = {signal: 0 for signal in Signal}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def mark(self) -> None:
        self.seen = {signal: len(self.sink.requests[signal]) for signal in Signal}

    def new_requests(self, signal: Signal) -> list:
        """What the sink received since ``mark()``; the tests share one relay and take turns."""
        return self.sink.requests[signal][self.seen[signal]:]

    def wait_for(self, signal: Signal, items: int) -> bool:
        already = sum(signal.count(r) for r in self.sink.requests[signal][:self.seen[signal]])
        return self.sink.wait_for(signal, already + items)


def config(http_port: int, grpc_port: int, health: int, sink: Sink) -> str:
    pipelines = "".join(f"    {s.value}:\n      receivers: [otlp]\n      exporters: [otlp]\n" for s in Signal)
    return (f"receivers:\n  otlp:\n    protocols:\n"
            f"      http:\n        endpoint: 127.0.0.1:{http_port}\n"
            f"      grpc:\n        endpoint: 127.0.0.1:{grpc_port}\n"
            f"exporters:\n  otlp:\n    endpoint: {sink.endpoint}\n    tls:\n      insecure: true\n"
            f"extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\n"
            f"service:\n  extensions: [health_check]\n  pipelines:\n{pipelines}"
            f"  telemetry:\n    logs:\n      level: info\n    metrics:\n      level: none\n")


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    sink = Sink().start()
    http_port, grpc_port, health = free_port(), free_port(), free_port()
    process = RelayProcess(config(http_port, grpc_port, health, sink), tmp_path_factory.mktemp("relay"),
                           health).start()
    try:
        yield Relay(process, http_port, grpc_port, sink)
        assert process.stop() == 0, process.log_text()
    finally:
        process.stop()
        sink.stop()


def same_requests(received, sent_bodies) -> bool:
    """Byte-identical requests, in any order: the relay's queue delivers them concurrently."""
    return sorted(r.SerializeToString() for r in received) == sorted(sent_bodies)


def test_traces_arrive_exactly_as_sent_plain_and_gzip(relay):
    relay.mark()
    sessions = {"none": RecordingSession(), "gzip": RecordingSession()}
    provider = TracerProvider(resource=RESOURCE)
    for name, session in sessions.items():
        exporter = OTLPSpanExporter(endpoint=relay.url("/v1/traces"), session=session,
                                    compression=Compression(name))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("genops.openrouter", "0.3.0")
    with tracer.start_as_current_span("POST /v1/chat", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("chat openai/gpt-4o", kind=SpanKind.CLIENT) as span:
            span.set_attributes({"gen_ai.request.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 1200,
                                 "genops.cost.total": 0.0065, "gen_ai.response.finish_reasons": ["stop"]})
            span.add_event("gen_ai.choice", {"index": 0})
            span.set_status(Status(StatusCode.ERROR, "upstream 502"))
    provider.shutdown()

    # Each span went out twice, once per exporter; the second went gzip-compressed.
    assert sessions["none"].encodings() == {""}
    assert sessions["gzip"].encodings() == {"gzip"}
    sent = sessions["none"].bodies() + sessions["gzip"].bodies()
    assert len(sent) == 4
    assert all(status == 200 for s in sessions.values() for status in s.statuses)
    assert relay.wait_for(Signal.TRACES, 4)
    assert same_requests(relay.new_requests(Signal.TRACES), sent)
    spans = [s for r in relay.new_requests(Signal.TRACES) for rs in r.resource_spans
             for ss in rs.scope_spans for s in ss.spans]
    child = next(s for s in spans if s.name == "chat openai/gpt-4o")
    assert {kv.key: kv.value for kv in child.attributes}["gen_ai.usage.input_tokens"].int_value == 1200
    assert child.status.message == "upstream 502"


def test_metrics_arrive_exactly_as_sent_gzip(relay):
    relay.mark()
    session = RecordingSession()
    exporter = OTLPMetricExporter(endpoint=relay.url("/v1/metrics"), session=session, compression=Compression.Gzip)
    emit_sample_metrics(exporter, RESOURCE)

    assert session.encodings() == {"gzip"}
    assert session.statuses and set(session.statuses) == {200}
    sent = session.bodies()
    assert relay.wait_for(Signal.METRICS, sum(Signal.METRICS.count(Signal.METRICS.request_type.FromString(b))
                                              for b in sent))
    assert same_requests(relay.new_requests(Signal.METRICS), sent)
    metrics = {m.name: m for r in relay.new_requests(Signal.METRICS) for rm in r.resource_metrics
               for sm in rm.scope_metrics for m in sm.metrics}
    assert metrics["genops.requests"].sum.data_points[0].as_int == 3
    assert metrics["genops.request.duration"].histogram.data_points[0].sum == 1.7


def test_logs_arrive_exactly_as_sent_deflate(relay):
    relay.mark()
    session = RecordingSession()
    exporter = OTLPLogExporter(endpoint=relay.url("/v1/logs"), session=session, compression=Compression.Deflate)
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("genops.openrouter")
    logger.emit(body="budget 80% used", severity_number=SeverityNumber.WARN, severity_text="WARN",
                attributes={"genops.team": "search", "budget.utilization": 0.8})
    provider.shutdown()

    assert session.encodings() == {"deflate"}
    assert session.statuses == [200]
    assert relay.wait_for(Signal.LOGS, 1)
    assert same_requests(relay.new_requests(Signal.LOGS), session.bodies())
    record = relay.new_requests(Signal.LOGS)[0].resource_logs[0].scope_logs[0].log_records[0]
    assert record.body.string_value == "budget 80% used"


def test_otlp_json_through_the_process_arrives_as_its_protobuf_twin(relay):
    relay.mark()
    body = (ROOT / "proto_fixtures" / "logs.json").read_bytes()
    request = urllib.request.Request(relay.url("/v1/logs"), data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "application/json"
        assert json.loads(answer.read()) == {}
    expected = fixtures.load("logs")
    assert relay.wait_for(Signal.LOGS, Signal.LOGS.count(expected))
    assert relay.new_requests(Signal.LOGS) == [expected]
    listening = [line for line in relay.process.log_lines() if line["msg"] == "OTLP/HTTP receiver listening"]
    assert [line["endpoint"] for line in listening] == [f"127.0.0.1:{relay.http_port}"]
