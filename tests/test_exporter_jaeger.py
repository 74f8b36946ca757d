"""The Jaeger exporter against a real Jaeger-protocol gRPC server on 127.0.0.1.

The server decodes ``PostSpans`` with the exporter's own ``api_v2`` messages
and records every batch; each test checks what arrived against the OTLP it
was given, field by field.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import (
    encode_spans,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from relay import attrs
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import ConfigError, PermanentError, RetryableError
from relay.exporters import jaeger
from relay.jaeger import proto
from relay.pipeline.registry import Registry
from relay.receivers import otlp as otlp_receiver
from relay.signals import Signal
from tests.support import ExporterHarness, JaegerSink, free_port
from tests.test_exporter_grpc import tls_files  # noqa: F401 - a fixture: a throwaway CA and server cert

EXPORTER = "jaeger/test"
VTYPE = {proto.STRING: "STRING", proto.BOOL: "BOOL", proto.INT64: "INT64", proto.FLOAT64: "FLOAT64",
         proto.BINARY: "BINARY"}


# --- a Jaeger collector's gRPC endpoint -------------------------------------------------

@pytest.fixture
def jsink():
    server = JaegerSink().start()
    yield server
    server.stop()


# --- harness ----------------------------------------------------------------------------

def make_config(endpoint: str, **settings) -> jaeger.Config:
    # One consume, one attempt, its outcome raised, unless a test turns queue and retry back on.
    raw = {"endpoint": endpoint, "tls": {"insecure": True},
           "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}}
    raw.update(settings)
    config, problems = decode(jaeger.Config, raw)
    assert problems == [], problems
    return config


class Harness(ExporterHarness):
    def __init__(self, endpoint: str, **settings):
        super().__init__(EXPORTER)
        self.exporter = jaeger.create(Settings(ComponentID.parse(EXPORTER), self.telemetry), make_config(endpoint, **settings))


def export_once(endpoint: str, request, **settings) -> tuple[BaseException | None, Harness]:
    harness = Harness(endpoint, **settings)

    async def run():
        await harness.exporter.start()
        try:
            return await harness.consume(request)
        finally:
            await harness.exporter.shutdown()

    return asyncio.run(run()), harness


# --- OTLP input -------------------------------------------------------------------------

TRACE_A = bytes(range(1, 17))
TRACE_B = bytes(range(0xA0, 0xB0))
START = 1_700_000_000_123_456_789


def span_id(n: int) -> bytes:
    return n.to_bytes(8, "big")


def put(kvs, key: str, value) -> None:
    attrs.put(kvs, key, value)


def rich_request() -> ExportTraceServiceRequest:
    """Several resources; spans with parents, links, events, every attribute type, kind and status."""
    request = ExportTraceServiceRequest()

    # 1: a named service with attributes of each kind, two scopes.
    rs = request.resource_spans.add()
    for key, value in (("service.name", "checkout"), ("host.name", "h1"), ("process.pid", 42),
                       ("sampled", True), ("weight", 0.5), ("zones", ["a", "b"]), ("blob", b"\x01\x02")):
        put(rs.resource.attributes, key, value)
    scope_a = rs.scope_spans.add()
    scope_a.scope.name, scope_a.scope.version = "io.relay.test", "1.2.3"

    root = scope_a.spans.add(trace_id=TRACE_A, span_id=span_id(1), name="GET /cart", flags=0x301,
                             kind=trace_pb2.Span.SPAN_KIND_SERVER, trace_state="vendor=x,other=y",
                             start_time_unix_nano=START, end_time_unix_nano=START + 250_000_000)
    root.status.code = trace_pb2.Status.STATUS_CODE_OK
    for key, value in (("s", "text"), ("b", True), ("i", -7), ("big", 2 ** 62), ("d", 3.25),
                       ("raw", b"\x00\xffab"), ("arr", ["x", 1, True, 2.5, b"\x01", 1.0]),
                       ("map", {"z": 1, "a": {"nested": [1, 2]}, "b": "two"})):
        put(root.attributes, key, value)
    root.attributes.add(key="none")  # a key with no value
    event = root.events.add(time_unix_nano=START + 1000, name="cache.miss")
    put(event.attributes, "key", "cart:1")
    put(event.attributes, "size", 3)
    event = root.events.add(time_unix_nano=START + 2000, name="")
    put(event.attributes, "note", "nameless")
    event = root.events.add(time_unix_nano=START + 3000, name="named")
    put(event.attributes, "event", "the attribute wins")

    child = scope_a.spans.add(trace_id=TRACE_A, span_id=span_id(2), parent_span_id=span_id(1), name="SELECT",
                              kind=trace_pb2.Span.SPAN_KIND_CLIENT, start_time_unix_nano=START + 10,
                              end_time_unix_nano=START + 5_000_000_010)
    child.status.code, child.status.message = trace_pb2.Status.STATUS_CODE_ERROR, "boom"
    link = child.links.add(trace_id=TRACE_B, span_id=span_id(9))
    put(link.attributes, "why", "batch")
    child.links.add(trace_id=TRACE_A, span_id=span_id(3))

    scope_b = rs.scope_spans.add()  # no scope name or version
    odd = scope_b.spans.add(trace_id=TRACE_A, span_id=span_id(4), parent_span_id=span_id(2), name="backwards",
                            kind=trace_pb2.Span.SPAN_KIND_PRODUCER, flags=0x102,
                            start_time_unix_nano=START + 100, end_time_unix_nano=START + 50)
    odd.status.message = "a message without a code"
    for n, kind in enumerate((trace_pb2.Span.SPAN_KIND_CONSUMER, trace_pb2.Span.SPAN_KIND_INTERNAL,
                              trace_pb2.Span.SPAN_KIND_UNSPECIFIED), start=5):
        scope_b.spans.add(trace_id=TRACE_B, span_id=span_id(n), name=f"kind-{kind}", kind=kind, flags=1,
                          start_time_unix_nano=START, end_time_unix_nano=START + n)

    # 2: no service.name, one other attribute.
    rs = request.resource_spans.add()
    put(rs.resource.attributes, "region", "eu")
    rs.scope_spans.add().spans.add(trace_id=TRACE_B, span_id=span_id(20), name="no-service",
                                   start_time_unix_nano=START, end_time_unix_nano=START + 1)

    # 3: a resource with a scope but no spans: nothing to send.
    rs = request.resource_spans.add()
    put(rs.resource.attributes, "service.name", "idle")
    rs.scope_spans.add().scope.name = "empty"

    # 4: no attributes at all.
    request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=TRACE_B, span_id=span_id(30), name="bare", start_time_unix_nano=START, end_time_unix_nano=START)
    return request


# --- checking a batch against its OTLP resource -----------------------------------------

def decoded(kv) -> tuple:
    """A Jaeger tag as (key, type name, value)."""
    field = {proto.STRING: "v_str", proto.BOOL: "v_bool", proto.INT64: "v_int64", proto.FLOAT64: "v_float64",
             proto.BINARY: "v_binary"}[kv.v_type]
    return kv.key, VTYPE[kv.v_type], getattr(kv, field)


def _plain(value):
    # An attribute value as JSON sees it: bytes as base64 text.
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def assert_tag_matches(kv, key: str, value: AnyValue) -> None:
    """The tag carries the attribute's key, a Jaeger type for its OTLP type, and its value."""
    assert kv.key == key
    kind = value.WhichOneof("value")
    expected_type = {"string_value": "STRING", "bool_value": "BOOL", "int_value": "INT64",
                     "double_value": "FLOAT64", "bytes_value": "BINARY", "array_value": "STRING",
                     "kvlist_value": "STRING", None: "STRING"}[kind]
    _, type_name, got = decoded(kv)
    assert type_name == expected_type, (key, type_name)
    if kind in ("array_value", "kvlist_value"):
        assert json.loads(got) == _plain(attrs.to_python(value)), key
    elif kind is None:
        assert got == ""
    else:
        assert got == getattr(value, kind), key


def assert_tags_match(tags, kvs) -> None:
    assert len(tags) >= len(kvs)
    for tag, kv in zip(tags, kvs):
        assert_tag_matches(tag, kv.key, kv.value)


KIND_TAG = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def assert_batch_matches(rs, batch) -> None:
    """Every field of ``batch`` follows from the OTLP resource ``rs``."""
    service = attrs.get(rs.resource.attributes, "service.name")
    assert batch.process.service_name == (service if service is not None else "OTLPResourceNoServiceName")
    others = [kv for kv in rs.resource.attributes if kv.key != "service.name"]
    assert len(batch.process.tags) == len(others)
    assert_tags_match(batch.process.tags, others)

    pairs = [(span, ss.scope) for ss in rs.scope_spans for span in ss.spans]
    assert len(batch.spans) == len(pairs)
    for got, (span, scope) in zip(batch.spans, pairs):
        assert got.trace_id == span.trace_id and len(got.trace_id) == 16
        assert got.span_id == span.span_id and len(got.span_id) == 8
        assert got.operation_name == span.name
        assert got.flags == ((span.flags & 1) if span.flags & 0xFF else 1)
        assert got.start_time.ToNanoseconds() == span.start_time_unix_nano
        assert got.duration.ToNanoseconds() == max(0, span.end_time_unix_nano - span.start_time_unix_nano)
        assert not got.HasField("process") and got.process_id == "" and not got.warnings

        refs = [(r.trace_id, r.span_id, r.ref_type) for r in got.references]
        expected = [(span.trace_id, span.parent_span_id, proto.CHILD_OF)] if span.parent_span_id else []
        expected += [(link.trace_id, link.span_id, proto.FOLLOWS_FROM) for link in span.links]
        assert refs == expected

        assert_tags_match(got.tags, span.attributes)
        extra = {kv.key: decoded(kv)[1:] for kv in got.tags[len(span.attributes):]}
        wanted = {}
        if span.kind in KIND_TAG:
            wanted["span.kind"] = ("STRING", KIND_TAG[span.kind])
        if span.status.code == trace_pb2.Status.STATUS_CODE_OK:
            wanted["otel.status_code"] = ("STRING", "OK")
        if span.status.code == trace_pb2.Status.STATUS_CODE_ERROR:
            wanted["otel.status_code"] = ("STRING", "ERROR")
            wanted["error"] = ("BOOL", True)
        if span.status.message:
            wanted["otel.status_description"] = ("STRING", span.status.message)
        if span.trace_state:
            wanted["w3c.tracestate"] = ("STRING", span.trace_state)
        if scope.name:
            wanted["otel.scope.name"] = ("STRING", scope.name)
        if scope.version:
            wanted["otel.scope.version"] = ("STRING", scope.version)
        assert extra == wanted, span.name

        assert len(got.logs) == len(span.events)
        for log, event in zip(got.logs, span.events):
            assert log.timestamp.ToNanoseconds() == event.time_unix_nano
            fields = list(log.fields)
            if event.name and attrs.find(event.attributes, "event") is None:
                assert decoded(fields[0]) == ("event", "STRING", event.name)
                fields = fields[1:]
            assert len(fields) == len(event.attributes)
            assert_tags_match(fields, event.attributes)


def batches_for(request) -> list:
    """The resources that have spans: each is one batch."""
    return [rs for rs in request.resource_spans if any(ss.spans for ss in rs.scope_spans)]


# --- translation, over the wire ---------------------------------------------------------

def test_each_resource_is_one_batch_and_every_field_follows_from_otlp(jsink):
    request = rich_request()
    error, h = export_once(jsink.endpoint, request)
    assert error is None, error
    resources = batches_for(request)
    assert len(resources) == 3 < len(request.resource_spans)  # the spanless resource sent nothing
    assert jsink.calls == len(jsink.batches) == 3
    for rs, batch in zip(resources, jsink.batches):
        assert_batch_matches(rs, batch)
    assert h.sent(Signal.TRACES) == 8 and h.failed(Signal.TRACES, True) == h.failed(Signal.TRACES, False) == 0


def test_process_names_the_service_or_says_there_is_none(jsink):
    error, _ = export_once(jsink.endpoint, rich_request())
    assert error is None, error
    named, unnamed, bare = jsink.batches
    assert named.process.service_name == "checkout"
    assert [decoded(kv) for kv in named.process.tags] == [
        ("host.name", "STRING", "h1"), ("process.pid", "INT64", 42), ("sampled", "BOOL", True),
        ("weight", "FLOAT64", 0.5), ("zones", "STRING", '["a","b"]'), ("blob", "BINARY", b"\x01\x02")]
    assert unnamed.process.service_name == "OTLPResourceNoServiceName"
    assert [decoded(kv) for kv in unnamed.process.tags] == [("region", "STRING", "eu")]
    assert bare.process.service_name == "OTLPResourceNoServiceName" and not bare.process.tags


def test_attribute_types_kind_status_state_and_scope_tags(jsink):
    error, _ = export_once(jsink.endpoint, rich_request())
    assert error is None, error
    root, child, odd = jsink.batches[0].spans[:3]
    assert [decoded(kv) for kv in root.tags] == [
        ("s", "STRING", "text"), ("b", "BOOL", True), ("i", "INT64", -7), ("big", "INT64", 2 ** 62),
        ("d", "FLOAT64", 3.25), ("raw", "BINARY", b"\x00\xffab"),
        ("arr", "STRING", '["x",1,true,2.5,"AQ==",1]'),
        ("map", "STRING", '{"a":{"nested":[1,2]},"b":"two","z":1}'),  # keys sorted, as the collector's JSON
        ("none", "STRING", ""),
        ("span.kind", "STRING", "server"), ("otel.status_code", "STRING", "OK"),
        ("w3c.tracestate", "STRING", "vendor=x,other=y"),
        ("otel.scope.name", "STRING", "io.relay.test"), ("otel.scope.version", "STRING", "1.2.3")]
    assert [decoded(kv) for kv in child.tags] == [
        ("span.kind", "STRING", "client"), ("otel.status_code", "STRING", "ERROR"), ("error", "BOOL", True),
        ("otel.status_description", "STRING", "boom"),
        ("otel.scope.name", "STRING", "io.relay.test"), ("otel.scope.version", "STRING", "1.2.3")]
    # UNSET: no status code tag and no error, but the message still travels; no scope, no scope tags.
    assert [decoded(kv) for kv in odd.tags] == [
        ("span.kind", "STRING", "producer"), ("otel.status_description", "STRING", "a message without a code")]
    kinds = {s.operation_name: [decoded(kv) for kv in s.tags] for s in jsink.batches[0].spans[3:]}
    assert kinds == {"kind-5": [("span.kind", "STRING", "consumer")],
                     "kind-1": [("span.kind", "STRING", "internal")],
                     "kind-0": []}


def test_ids_references_times_and_flags(jsink):
    error, _ = export_once(jsink.endpoint, rich_request())
    assert error is None, error
    root, child, odd = jsink.batches[0].spans[:3]
    assert (root.trace_id, root.span_id) == (TRACE_A, b"\0\0\0\0\0\0\0\x01")
    assert not root.references
    assert [(r.trace_id, r.span_id, r.ref_type) for r in child.references] == [
        (TRACE_A, span_id(1), proto.CHILD_OF), (TRACE_B, span_id(9), proto.FOLLOWS_FROM),
        (TRACE_A, span_id(3), proto.FOLLOWS_FROM)]
    assert (root.start_time.seconds, root.start_time.nanos) == (1_700_000_000, 123_456_789)
    assert (root.duration.seconds, root.duration.nanos) == (0, 250_000_000)
    assert (child.duration.seconds, child.duration.nanos) == (5, 0)
    assert odd.duration.ToNanoseconds() == 0  # ends before it starts
    assert odd.start_time.ToNanoseconds() == START + 100
    # 0x301: sampled (the remote-parent bits are OTLP's own); 0 (no trace flags) is sampled;
    # 0x102: trace flags recorded, "random" set but not "sampled" (W3C's bit 1 is not Jaeger's debug).
    assert (root.flags, child.flags, odd.flags) == (1, 1, 0)


def test_events_become_logs(jsink):
    error, _ = export_once(jsink.endpoint, rich_request())
    assert error is None, error
    root = jsink.batches[0].spans[0]
    assert [(log.timestamp.ToNanoseconds(), [decoded(kv) for kv in log.fields]) for log in root.logs] == [
        (START + 1000, [("event", "STRING", "cache.miss"), ("key", "STRING", "cart:1"), ("size", "INT64", 3)]),
        (START + 2000, [("note", "STRING", "nameless")]),
        (START + 3000, [("event", "STRING", "the attribute wins")])]
    assert not jsink.batches[0].spans[1].logs


def test_spans_from_the_opentelemetry_sdk(jsink):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "cart", "deployment.environment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("relay.tests.jaeger", "0.9")
    with tracer.start_as_current_span("warmup") as other:
        other_context = other.get_span_context()
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER,
                                      attributes={"http.method": "GET", "http.status_code": 500, "retry": False,
                                                  "ratio": 0.75, "tags": ["a", "b"], "ids": [1, 2]}) as root:
        root.add_event("cache.miss", {"key": "cart:1"})
        with tracer.start_as_current_span("SELECT carts", kind=SpanKind.CLIENT,
                                          links=[Link(other_context, {"why": "warm"})]) as child:
            child.set_status(Status(StatusCode.ERROR, "timeout"))
            child.record_exception(TimeoutError("db"))
    provider.get_tracer("relay.tests.other").start_span("unversioned", kind=SpanKind.PRODUCER).end()
    provider.shutdown()
    finished = memory.get_finished_spans()
    request = encode_spans(finished)

    error, h = export_once(jsink.endpoint, request)
    assert error is None, error
    assert len(request.resource_spans) == 1 and len(jsink.batches) == 1
    batch = jsink.batches[0]
    assert_batch_matches(request.resource_spans[0], batch)

    # And against the SDK's own view of the spans.
    assert batch.process.service_name == "cart"
    process_tags = {kv.key: decoded(kv)[2] for kv in batch.process.tags}
    assert process_tags["deployment.environment"] == "test"
    assert process_tags["telemetry.sdk.language"] == "python"
    by_name = {span.operation_name: span for span in batch.spans}
    assert set(by_name) == {s.name for s in finished}
    for sdk in finished:
        got = by_name[sdk.name]
        assert got.trace_id == sdk.context.trace_id.to_bytes(16, "big")
        assert got.span_id == sdk.context.span_id.to_bytes(8, "big")
        assert got.start_time.ToNanoseconds() == sdk.start_time
        assert got.duration.ToNanoseconds() == sdk.end_time - sdk.start_time
        assert got.flags == 1  # the SDK records no trace flags (only OTLP's remote-parent bit)
    sdk_root = next(s for s in finished if s.name == "GET /cart")
    db = by_name["SELECT carts"]
    assert [(r.trace_id, r.span_id, r.ref_type) for r in db.references] == [
        (sdk_root.context.trace_id.to_bytes(16, "big"), sdk_root.context.span_id.to_bytes(8, "big"), proto.CHILD_OF),
        (other_context.trace_id.to_bytes(16, "big"), other_context.span_id.to_bytes(8, "big"), proto.FOLLOWS_FROM)]
    db_tags = {kv.key: decoded(kv)[1:] for kv in db.tags}
    assert db_tags["error"] == ("BOOL", True)
    assert db_tags["otel.status_code"] == ("STRING", "ERROR")
    assert db_tags["otel.status_description"] == ("STRING", "timeout")
    assert db_tags["span.kind"] == ("STRING", "client")
    assert db_tags["otel.scope.name"] == ("STRING", "relay.tests.jaeger")
    assert db_tags["otel.scope.version"] == ("STRING", "0.9")
    exception = {kv.key: decoded(kv)[2] for kv in db.logs[0].fields}
    assert exception["event"] == "exception" and exception["exception.type"] == "TimeoutError"
    root_tags = {kv.key: decoded(kv)[1:] for kv in by_name["GET /cart"].tags}
    assert root_tags["http.status_code"] == ("INT64", 500)
    assert root_tags["retry"] == ("BOOL", False)
    assert root_tags["ratio"] == ("FLOAT64", 0.75)
    assert root_tags["tags"] == ("STRING", '["a","b"]') and root_tags["ids"] == ("STRING", "[1,2]")
    assert root_tags["span.kind"] == ("STRING", "server")
    unversioned = {kv.key for kv in by_name["unversioned"].tags}
    assert "otel.scope.name" in unversioned and "otel.scope.version" not in unversioned
    assert h.sent(Signal.TRACES) == len(finished) == 4


# --- the call -----------------------------------------------------------------------------

def one_span_request(service: str = "svc") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    put(rs.resource.attributes, "service.name", service)
    rs.scope_spans.add().spans.add(trace_id=TRACE_A, span_id=span_id(1), name="op",
                                   start_time_unix_nano=START, end_time_unix_nano=START + 1)
    return request


def test_headers_arrive_as_metadata_and_gzip_delivers(jsink):
    error, h = export_once(jsink.endpoint, one_span_request(), headers={"x-tenant": "acme"}, compression="gzip")
    assert error is None, error
    assert jsink.metadata[0]["x-tenant"] == "acme"
    assert jsink.batches[0].process.service_name == "svc"
    # That gzip shrinks what crosses the wire is checked for the channel both gRPC exporters
    # share (relay/net/grpc_channel.py) in tests/test_exporter_grpc.py.


def test_a_request_without_spans_makes_no_call(jsink):
    request = ExportTraceServiceRequest()
    put(request.resource_spans.add().resource.attributes, "service.name", "idle")
    error, h = export_once(jsink.endpoint, request)
    assert error is None
    assert jsink.calls == 0 and h.sent(Signal.TRACES) == 0


def test_unavailable_is_retryable(jsink):
    jsink.refuse(grpc.StatusCode.UNAVAILABLE, "collector is down")
    error, h = export_once(jsink.endpoint, one_span_request())
    assert isinstance(error, RetryableError), error
    assert "UNAVAILABLE" in str(error) and "collector is down" in str(error)
    assert h.failed(Signal.TRACES, True) == 1 and h.failed(Signal.TRACES, False) == 0 and h.sent(Signal.TRACES) == 0


def test_invalid_argument_is_permanent(jsink):
    jsink.refuse(grpc.StatusCode.INVALID_ARGUMENT, "bad span")
    error, h = export_once(jsink.endpoint, one_span_request())
    assert isinstance(error, PermanentError), error
    assert error.status == "INVALID_ARGUMENT" and "bad span" in str(error)
    assert h.failed(Signal.TRACES, False) == 1 and h.failed(Signal.TRACES, True) == 0


def test_a_refused_batch_ends_the_request_after_the_ones_before_it(jsink):
    jsink.refuse(grpc.StatusCode.INVALID_ARGUMENT, "second refused", calls={2})
    request = rich_request()
    error, h = export_once(jsink.endpoint, request)
    assert isinstance(error, PermanentError), error
    assert jsink.calls == 2  # the third batch was never sent
    assert [b.process.service_name for b in jsink.batches] == ["checkout"]
    assert h.failed(Signal.TRACES, False) == 8  # the whole request: a retry could not send only the rest


def test_unreachable_collector_is_retryable():
    error, h = export_once(f"127.0.0.1:{free_port()}", one_span_request(), timeout="10s")
    assert isinstance(error, RetryableError), error
    assert "UNAVAILABLE" in str(error)
    assert h.failed(Signal.TRACES, True) == 1


def test_a_collector_that_never_answers_times_out(jsink):
    jsink.hold.set()
    error, h = export_once(jsink.endpoint, one_span_request(), timeout="0.5s")
    assert isinstance(error, RetryableError), error
    assert jsink.entered.is_set(), "the call should have reached the collector"
    assert h.failed(Signal.TRACES, True) == 1


def test_queue_and_retry_deliver_after_the_collector_recovers(jsink):
    jsink.refuse(grpc.StatusCode.UNAVAILABLE, "starting", calls={1})
    harness = Harness(jsink.endpoint, sending_queue={"enabled": True},
                      retry_on_failure={"enabled": True, "initial_interval": "50ms", "max_interval": "100ms"})

    async def run():
        await harness.exporter.start()
        try:
            assert await harness.consume(one_span_request("queued")) is None  # accepted by the queue
            deadline = time.monotonic() + 10
            while not jsink.batches and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            await harness.exporter.shutdown()

    asyncio.run(run())
    assert [b.process.service_name for b in jsink.batches] == ["queued"]
    assert jsink.calls == 2
    assert harness.sent(Signal.TRACES) == 1 and harness.failed(Signal.TRACES, True) == 0


def test_tls_with_the_ca_file_delivers(tls_files):  # noqa: F811 - the imported fixture
    credentials = grpc.ssl_server_credentials([(tls_files["key"].read_bytes(), tls_files["cert"].read_bytes())])
    server = JaegerSink(credentials).start()
    try:
        error, _ = export_once(server.endpoint, one_span_request("secure"), tls={"ca_file": str(tls_files["ca"])})
        refused, _ = export_once(server.endpoint, one_span_request("plain"), tls={"insecure": True}, timeout="5s")
    finally:
        server.stop()
    assert error is None, error
    assert isinstance(refused, RetryableError), refused
    assert [b.process.service_name for b in server.batches] == ["secure"]


# --- config -----------------------------------------------------------------------------

def test_defaults():
    config, problems = decode(jaeger.Config, {"endpoint": "jaeger-collector:14250", "tls": {"insecure": True}})
    assert problems == []
    assert config.compression == "none"
    assert config.headers == {} and config.tls.insecure and config.tls.ca_file == ""
    assert config.timeout == 5.0
    assert config.sending_queue.enabled and config.sending_queue.queue_size == 1000
    assert config.retry_on_failure.enabled and config.retry_on_failure.initial_interval == 5.0
    assert jaeger.TYPE == "jaeger" and jaeger.SIGNALS == (Signal.TRACES,)
    assert proto.DEFAULT_PORT == 14250 and proto.POST_SPANS == "/jaeger.api_v2.CollectorService/PostSpans"


@pytest.mark.parametrize("raw, expected", [
    ({}, ["endpoint: required key is missing"]),
    ({"endpoint": "jaeger"}, ['endpoint: "jaeger" must be host:port (a Jaeger collector listens for gRPC on 14250)']),
    ({"endpoint": ":14250"}, ['endpoint: ":14250" must be host:port (a Jaeger collector listens for gRPC on 14250)']),
    ({"endpoint": "http://jaeger:14250"},
     ['endpoint: "http://jaeger:14250" must be host:port (a Jaeger collector listens for gRPC on 14250)']),
    ({"endpoint": "jaeger:99999"},
     ['endpoint: "jaeger:99999" must be host:port (a Jaeger collector listens for gRPC on 14250)']),
    ({"endpoint": "jaeger:14250", "compression": "zstd"}, ['compression: "zstd" is not one of: gzip, none, ""']),
    ({"endpoint": "jaeger:14250", "headers": {"X Tenant": "a"}},
     ["headers::X Tenant: not a valid gRPC metadata key (letters, digits, _ . -)"]),
    ({"endpoint": "jaeger:14250", "tls": {"cert_file": "c.pem"}},
     ["tls::key_file: cert_file and key_file must be given together"]),
    ({"endpoint": "jaeger:14250", "tls": {"insecure": "yes"}}, ["tls::insecure: expected a boolean, got string"]),
    ({"endpoint": "jaeger:14250", "timeout": "-1s"}, ['timeout: invalid duration "-1s" (use e.g. "5s", "200ms", "1m")']),
    ({"endpoint": "jaeger:14250", "sending_queue": {"num_consumers": 0}},
     ["sending_queue::num_consumers: must be at least 1"]),
    ({"endpoint": "jaeger:14250", "retry_on_failure": {"multiplier": 0.5}},
     ["retry_on_failure::multiplier: must be at least 1"]),
    ({"endpoint": "jaeger:14250", "insecure": True}, None),  # unknown key: named, with the valid ones
    ({"endpoint": "jaeger-collector:14250", "tls": {"insecure": True}}, []),
    ({"endpoint": "[::1]:14250", "compression": "gzip", "headers": {"x-token": "t"}, "timeout": "2s"}, []),
])
def test_config_validation(raw, expected):
    _, problems = decode(jaeger.Config, raw)
    if expected is None:
        assert [p.path for p in problems] == [("insecure",)]
        assert "unknown key" in problems[0].message and "endpoint" in problems[0].message
    else:
        assert [str(p) for p in problems] == expected


REFERENCE = """
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:%d"}}}
exporters:
  jaeger: {endpoint: jaeger-collector:14250, tls: {insecure: true}}
service:
  pipelines:
    %s: {receivers: [otlp], exporters: [jaeger]}
"""


def test_the_reference_config_loads_and_the_exporter_takes_traces_only():
    registry = Registry().add("receivers", otlp_receiver).add("exporters", jaeger)
    config = load(REFERENCE % (free_port(), "traces"), registry, env={})
    settings = config.components["exporters"][ComponentID("jaeger")]
    assert settings.endpoint == "jaeger-collector:14250" and settings.tls.insecure
    with pytest.raises(ConfigError) as raised:
        load(REFERENCE % (free_port(), "metrics"), registry, env={})
    assert any("jaeger" in str(p) for p in raised.value.problems), raised.value.problems
