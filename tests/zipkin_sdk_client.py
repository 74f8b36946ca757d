"""Sends spans of the OpenTelemetry SDK to a Zipkin receiver with a real OpenTelemetry Zipkin
exporter, and prints on stdout, as JSON, the export result and what the SDK recorded, for the
test to compare with the OTLP the relay made of it. Run by tests/test_receiver_zipkin.py as
its own process: the protobuf exporter's generated code needs the pure-Python protobuf runtime
(``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``), which the relay's process does not use
(see ``compatible_messages``).

    python -m tests.zipkin_sdk_client {json-v2|json-v1|proto} URL
"""

from __future__ import annotations

import json
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

RESOURCE = {"service.name": "checkout", "service.version": "1.4.2", "deployment.environment": "prod",
            "genops.team": "payments"}
LOCAL_IPV4, LOCAL_PORT = "10.1.2.3", 31313


def record() -> tuple[list, dict]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("shop.instrumentation", "0.9.1")
    with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as server:
        server.set_attribute("http.request.method", "POST")
        server.set_attribute("http.response.status_code", 502)
        server.set_attribute("genops.cost.total", 0.0125)
        server.set_attribute("retry", True)
        server.set_attribute("gen_ai.request.models", ["gpt-4o", "claude-3"])
        server.add_event("payment.declined", {"reason": "insufficient funds", "attempt": 2})
        server.set_status(Status(StatusCode.ERROR, "payment declined"))
        with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT) as client:
            client.set_attribute("peer.service", "payments-api")
            client.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("render receipt"):  # internal
            pass
    provider.shutdown()
    return list(memory.get_finished_spans()), dict(provider.resource.attributes)


def compatible_messages(zipkin_pb2) -> None:
    """The exporter's message classes, made again from its own zipkin.proto descriptor.

    Its generated module predates protobuf 3.19: the pure-Python runtime imports it, but builds
    ``tags`` as a repeated field rather than a map, and the exporter's ``tags.update`` fails.
    Classes built by the runtime from the module's serialized descriptor are the same messages
    (same names, numbers and types) with a working map; the exporter's encoding is untouched.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(zipkin_pb2.DESCRIPTOR.serialized_pb))
    for name in ("Span", "Endpoint", "Annotation", "ListOfSpans"):
        setattr(zipkin_pb2, name, message_factory.GetMessageClass(pool.FindMessageTypeByName(f"zipkin.proto3.{name}")))


def exporter(protocol: str, url: str):
    # The v1 encoder compares max_tag_value_length with 0 and fails on its default (None).
    options = {"endpoint": url, "local_node_ipv4": LOCAL_IPV4, "local_node_port": LOCAL_PORT, "timeout": 10,
               "max_tag_value_length": 1024}
    if protocol == "proto":
        from opentelemetry.exporter.zipkin.proto.http.v2.gen import zipkin_pb2

        compatible_messages(zipkin_pb2)
        from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter

        return ZipkinExporter(**options)
    from opentelemetry.exporter.zipkin.encoder import Protocol
    from opentelemetry.exporter.zipkin.json import ZipkinExporter

    return ZipkinExporter(version=Protocol.V1 if protocol == "json-v1" else Protocol.V2, **options)


def described(span) -> dict:
    context = span.get_span_context()
    return {
        "trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "name": span.name, "kind": span.kind.name, "start": span.start_time, "end": span.end_time,
        "attributes": dict(span.attributes), "status": [span.status.status_code.name, span.status.description],
        "events": [{"name": e.name, "time": e.timestamp, "attributes": dict(e.attributes)} for e in span.events],
        "scope": [span.instrumentation_scope.name, span.instrumentation_scope.version],
    }


def main() -> None:
    protocol, url = sys.argv[1], sys.argv[2]
    spans, resource = record()
    sender = exporter(protocol, url)
    result = sender.export(spans)
    sender.shutdown()
    json.dump({"result": result.name, "resource": resource, "spans": [described(s) for s in spans]}, sys.stdout)


if __name__ == "__main__":
    main()
