"""Runs in the Jaeger clients' venv (never imported by the test suite), as

    python drive.py sdk PROTOCOL TARGET     # spans from the OpenTelemetry SDK through a real Jaeger exporter
    python drive.py payloads DIRECTORY      # the fixture payloads, written by the real encoders

``sdk``: PROTOCOL is ``thrift_http`` (TARGET a URL), ``grpc``, ``thrift_compact`` or
``thrift_binary`` (TARGET host:port). The first three are OpenTelemetry's Jaeger exporters as a
user configures them; no exporter speaks binary Thrift over UDP, so ``thrift_binary`` is the
Thrift exporter's own translation sent through the generated ``Agent`` client with Thrift's
TBinaryProtocol. Prints, as one JSON line, the spans the SDK finished, for the test to compare.

``payloads``: one Jaeger batch with every field the receiver translates, written with the
generated ``jaeger.thrift`` classes and Thrift's own protocol writers (a collector's HTTP body,
an agent's compact and binary emitBatch datagrams) and with the generated ``api_v2`` protobuf
classes (a PostSpans request). The test suite keeps them in tests/testdata/jaeger/.
"""

from __future__ import annotations

import json
import socket
import sys
import warnings
from pathlib import Path

warnings.simplefilter("ignore")  # the exporters announce their retirement on every call


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def sdk(protocol: str, target: str) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

    resource = Resource({"service.name": "jaeger-driver", "genops.team": "team-jaeger",
                         "deployment.environment": "test"})
    provider = TracerProvider(resource=resource)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(_exporter(protocol, target)))
    tracer = provider.get_tracer("genops.jaeger.driver", "1.2.3")
    elsewhere = SpanContext(trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736, span_id=0x00F067AA0BA902B7,
                            is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span(
            "chat openrouter/auto", kind=SpanKind.CLIENT, links=[Link(elsewhere)],
            attributes={"gen_ai.request.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 120,
                        "genops.cost.total": 0.0042, "stream": True}) as root:
        root.add_event("retry", {"attempt": 2, "reason": "429"})
        with tracer.start_as_current_span("parse response", kind=SpanKind.INTERNAL) as child:
            child.set_attribute("response.bytes", 1234)
            child.set_status(Status(StatusCode.OK))
        root.set_status(Status(StatusCode.ERROR, "rate limited"))
    with tracer.start_as_current_span("serve", kind=SpanKind.SERVER) as server:
        server.set_attribute("http.status_code", 200)
    provider.shutdown()
    print(json.dumps([_describe(span) for span in memory.get_finished_spans()]))


def _exporter(protocol: str, target: str):
    if protocol == "thrift_http":
        from opentelemetry.exporter.jaeger.thrift import JaegerExporter

        return JaegerExporter(collector_endpoint=target, timeout=10)
    host, _, port = target.rpartition(":")
    if protocol == "thrift_compact":
        from opentelemetry.exporter.jaeger.thrift import JaegerExporter

        return JaegerExporter(agent_host_name=host, agent_port=int(port))
    if protocol == "grpc":
        from opentelemetry.exporter.jaeger.proto.grpc import JaegerExporter

        return JaegerExporter(collector_endpoint=target, insecure=True, timeout=10)
    if protocol == "thrift_binary":
        return _BinaryAgentExporter(host, int(port))
    raise SystemExit(f"unknown protocol {protocol}")


class _BinaryAgentExporter:
    """The Thrift exporter's translation, sent as its UDP agent client sends it, in the binary protocol."""

    def __init__(self, host: str, port: int):
        self.address = (host, port)

    def export(self, spans):
        from opentelemetry.exporter.jaeger.thrift.gen.agent import Agent
        from opentelemetry.exporter.jaeger.thrift.gen.jaeger import ttypes
        from opentelemetry.exporter.jaeger.thrift.translate import ThriftTranslator, Translate
        from opentelemetry.sdk.trace.export import SpanExportResult
        from thrift.protocol import TBinaryProtocol
        from thrift.transport import TTransport

        batch = ttypes.Batch(spans=Translate(spans)._translate(ThriftTranslator()),
                             process=ttypes.Process(serviceName=spans[0].resource.attributes["service.name"]))
        buffer = TTransport.TMemoryBuffer()
        Agent.Client(TBinaryProtocol.TBinaryProtocol(buffer)).emitBatch(batch)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(buffer.getvalue(), self.address)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _describe(span) -> dict:
    def attributes(values):
        return {key: [type(value).__name__, list(value) if isinstance(value, tuple) else value]
                for key, value in (values or {}).items()}

    context = span.get_span_context()
    return {
        "name": span.name, "trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else "",
        "kind": span.kind.name, "start": span.start_time, "end": span.end_time,
        "status": span.status.status_code.name, "status_description": span.status.description,
        "attributes": attributes(span.attributes), "resource": attributes(span.resource.attributes),
        "scope": [span.instrumentation_scope.name, span.instrumentation_scope.version],
        "events": [{"name": event.name, "time": event.timestamp, "attributes": attributes(event.attributes)}
                   for event in span.events],
        "links": [[f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}"] for link in span.links],
    }


# --- the fixture batch ------------------------------------------------------------------------

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
OTHER_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
ROOT, CHILD, FOLLOWER, ELSEWHERE = 0xB7AD6B7169203331, 0x00F067AA0BA902B7, 0x53995C3F42CD8AD8, 0xE457B5A2E4D86BD1
START = 1_767_225_600_123_456  # microseconds: 2026-01-01T00:00:00.123456Z


def payloads(directory: str) -> None:
    from opentelemetry.exporter.jaeger.thrift.gen.agent import Agent
    from opentelemetry.exporter.jaeger.thrift.gen.jaeger import ttypes as j
    from thrift.protocol import TBinaryProtocol, TCompactProtocol
    from thrift.transport import TTransport

    def tag(key, kind, value):
        field = {j.TagType.STRING: "vStr", j.TagType.DOUBLE: "vDouble", j.TagType.BOOL: "vBool",
                 j.TagType.LONG: "vLong", j.TagType.BINARY: "vBinary"}[kind]
        return j.Tag(key=key, vType=kind, **{field: value})

    def ids(trace):
        return {"traceIdHigh": _signed(trace >> 64), "traceIdLow": _signed(trace & ((1 << 64) - 1))}

    s, d, b, lg, bn = j.TagType.STRING, j.TagType.DOUBLE, j.TagType.BOOL, j.TagType.LONG, j.TagType.BINARY
    process = j.Process(serviceName="checkout", tags=[
        tag("hostname", s, "box-7"), tag("jaeger.version", s, "Python-4.8.0"), tag("ip", s, "10.0.0.7"),
        tag("cpus", lg, 8), tag("load", d, 0.75), tag("canary", b, False)])
    root = j.Span(spanId=_signed(ROOT), parentSpanId=0, operationName="GET /checkout", flags=1,
                  startTime=START, duration=2_500_000, **ids(TRACE),
                  references=[j.SpanRef(refType=j.SpanRefType.FOLLOWS_FROM, spanId=_signed(ELSEWHERE), **ids(OTHER_TRACE))],
                  tags=[tag("span.kind", s, "server"), tag("http.method", s, "GET"), tag("http.status_code", lg, 503),
                        tag("otel.scope.name", s, "io.genops.checkout"), tag("otel.scope.version", s, "0.9.0"),
                        tag("w3c.tracestate", s, "congo=t61rcWkgMzE"), tag("payload", bn, b"\x00\x01\xff"),
                        tag("ratio", d, 0.25), tag("sampled", b, True), tag("retries", lg, -3)],
                  logs=[j.Log(timestamp=START + 100_000, fields=[
                      tag("event", s, "cache miss"), tag("key", s, "prompt"), tag("size", lg, 42)])])
    child = j.Span(spanId=_signed(CHILD), parentSpanId=_signed(ROOT), operationName="POST openrouter", flags=1,
                   startTime=START + 10, duration=1_000_000, **ids(TRACE),
                   tags=[tag("span.kind", s, "client"), tag("error", b, True), tag("otel.status_code", s, "OK"),
                         tag("otel.status_description", s, "upstream 429"), tag("http.status_code", lg, 429),
                         tag("otel.library.name", s, "legacy.instrumentation"), tag("otel.library.version", s, "0.1")],
                   logs=[j.Log(timestamp=START + 20, fields=[tag("message", s, "no event field")]),
                         j.Log(timestamp=START + 30, fields=[tag("event", lg, 7), tag("level", s, "warn")])])
    follower = j.Span(spanId=_signed(FOLLOWER), parentSpanId=0, operationName="enqueue", flags=0,
                      startTime=START + 2_600_000, duration=0, **ids(TRACE),
                      references=[j.SpanRef(refType=j.SpanRefType.FOLLOWS_FROM, spanId=_signed(ROOT), **ids(TRACE))],
                      tags=[tag("span.kind", s, "producer"), tag("otel.status_code", s, "error"),
                            tag("otel.status_description", s, "broker down"),
                            tag("otel.scope.name", s, "io.genops.checkout"), tag("otel.scope.version", s, "0.9.0")],
                      # Sixteen fields: past the compact protocol's short list header.
                      logs=[j.Log(timestamp=START + 2_600_000, fields=[tag(f"f{i:02}", lg, i - 8) for i in range(16)])])
    batch = j.Batch(process=process, spans=[root, child, follower])

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    body = TTransport.TMemoryBuffer()
    batch.write(TBinaryProtocol.TBinaryProtocol(body))
    (out / "batch.thrift").write_bytes(body.getvalue())
    for name, protocol in (("emit_batch_compact.thrift", TCompactProtocol.TCompactProtocol),
                           ("emit_batch_binary.thrift", TBinaryProtocol.TBinaryProtocol)):
        datagram = TTransport.TMemoryBuffer()
        Agent.Client(protocol(datagram)).emitBatch(batch)
        (out / name).write_bytes(datagram.getvalue())
    (out / "post_spans.binpb").write_bytes(_post_spans(batch))


def _post_spans(batch) -> bytes:
    """The same batch in api_v2 protobuf, as Jaeger's own converter writes it (parentSpanId as a
    CHILD_OF reference), plus what only api_v2 has: a span with a process of its own, and a blank span."""
    from google.protobuf.duration_pb2 import Duration
    from google.protobuf.timestamp_pb2 import Timestamp
    from opentelemetry.exporter.jaeger.proto.grpc.gen import collector_pb2, model_pb2

    def unsigned(value):
        return value & ((1 << 64) - 1)

    def trace_id(high, low):
        return unsigned(high).to_bytes(8, "big") + unsigned(low).to_bytes(8, "big")

    def kv(tag):
        field = {0: "v_str", 1: "v_float64", 2: "v_bool", 3: "v_int64", 4: "v_binary"}[tag.vType]
        value = [tag.vStr, tag.vDouble, tag.vBool, tag.vLong, tag.vBinary][tag.vType]
        # jaeger.thrift's TagType and api_v2's ValueType number the types differently.
        vtype = {0: model_pb2.STRING, 1: model_pb2.FLOAT64, 2: model_pb2.BOOL, 3: model_pb2.INT64,
                 4: model_pb2.BINARY}[tag.vType]
        return model_pb2.KeyValue(key=tag.key, v_type=vtype, **{field: value})

    def micros(value, kind):
        stamp = kind()
        stamp.FromMicroseconds(value)
        return stamp

    spans = []
    for span in batch.spans:
        tid = trace_id(span.traceIdHigh, span.traceIdLow)
        refs = [model_pb2.SpanRef(trace_id=tid, span_id=unsigned(span.parentSpanId).to_bytes(8, "big"),
                                  ref_type=model_pb2.CHILD_OF)] if span.parentSpanId else []
        refs += [model_pb2.SpanRef(trace_id=trace_id(ref.traceIdHigh, ref.traceIdLow),
                                   span_id=unsigned(ref.spanId).to_bytes(8, "big"), ref_type=ref.refType)
                 for ref in span.references or ()]
        spans.append(model_pb2.Span(
            trace_id=tid, span_id=unsigned(span.spanId).to_bytes(8, "big"), operation_name=span.operationName,
            references=refs, flags=span.flags, start_time=micros(span.startTime, Timestamp),
            duration=micros(span.duration, Duration), tags=[kv(tag) for tag in span.tags or ()],
            logs=[model_pb2.Log(timestamp=micros(log.timestamp, Timestamp), fields=[kv(tag) for tag in log.fields])
                  for log in span.logs or ()]))
    # The follower comes from another process; the blank span is what a broken client sends.
    spans[2].process.CopyFrom(model_pb2.Process(service_name="queue-worker",
                                                tags=[model_pb2.KeyValue(key="ip", v_str="10.0.0.9")]))
    spans.append(model_pb2.Span())
    process = model_pb2.Process(service_name=batch.process.serviceName, tags=[kv(tag) for tag in batch.process.tags])
    request = collector_pb2.PostSpansRequest(batch=model_pb2.Batch(spans=spans, process=process))
    return request.SerializeToString()


if __name__ == "__main__":
    if sys.argv[1:2] == ["sdk"] and len(sys.argv) == 4:
        sdk(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["payloads"] and len(sys.argv) == 3:
        payloads(sys.argv[2])
    else:
        raise SystemExit(__doc__)
