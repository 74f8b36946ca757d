"""The jaeger receiver, run in-process on 127.0.0.1, fed by real Jaeger encoders and clients.

- Payloads written by the real Thrift and protobuf encoders (tests/testdata/jaeger/) go in on
  each of the four protocols, and every translated field is checked against the collector's
  Jaeger translator's rules, written out below for that batch.
- OpenTelemetry Python's Jaeger exporters (Thrift over HTTP and UDP, protobuf over gRPC) send
  SDK spans from their own virtualenv (``python3 -m tests.jaeger_clients.venv``).
- The error table of each protocol, the self-metrics, and a round trip through a pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gzip
import json
import os
import socket
import struct
import subprocess
from pathlib import Path

import aiohttp
import grpc
import pytest
import yaml
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client import CollectorRegistry

from relay import status
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import ConfigError, InvalidDataError, RetryableError
from relay.intake import INTERNAL_MESSAGE
from relay.jaeger import proto, thrift
from relay.pipeline.graph import Graph
from relay.pipeline.registry import default_registry
from relay.receivers import jaeger
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.jaeger_clients import venv
from tests.support import free_port

FIXTURES = Path(__file__).parent / "testdata" / "jaeger"
DRIVER = Path(__file__).parent / "jaeger_clients" / "drive.py"
DRIVE_TIMEOUT = 60
RECEIVER = "jaeger/test"
LOOPBACK = "127.0.0.1:0"

# The fixture batch's content, as tests/jaeger_clients/drive.py writes it.
TRACE, OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT, CHILD, FOLLOWER, ELSEWHERE = "b7ad6b7169203331", "00f067aa0ba902b7", "53995c3f42cd8ad8", "e457b5a2e4d86bd1"
START_US = 1_767_225_600_123_456


def in_loop(test):
    """Runs an async test in a fresh event loop, bounded."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(test(*args, **kwargs), 90))
    return run


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class RecordingConsumer:
    """Keeps every request; raises ``error`` if one is set; waits on ``gate`` if one is set."""

    mutates_data = False

    def __init__(self):
        self.requests: list = []
        self.error: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Event()

    async def consume(self, request) -> None:
        self.requests.append(request)
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error

    def spans(self) -> int:
        return sum(len(ss.spans) for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans)

    async def wait_for_spans(self, count: int, timeout: float = 10.0) -> None:
        async def enough():
            while self.spans() < count:
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.wait_for(enough(), timeout)


@contextlib.asynccontextmanager
async def running(protocols: dict, consumer=None, registry: CollectorRegistry | None = None):
    config, problems = decode(jaeger.Config, {"protocols": protocols})
    assert problems == [], [str(p) for p in problems]
    metrics = SelfMetrics(registry or CollectorRegistry())
    settings = Settings(ComponentID.parse(RECEIVER), metrics)
    receiver = jaeger.create(settings, config, {Signal.TRACES: consumer or RecordingConsumer()})
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.shutdown(1.0)


# --- what came out, as plain values -----------------------------------------------------------

def plain(value):
    kind = value.WhichOneof("value")
    return (kind, getattr(value, kind)) if kind else (None, None)


def attributes(kvs) -> list:
    return [(kv.key, *plain(kv.value)) for kv in kvs]


def span_view(span) -> dict:
    return {"trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
            "name": span.name, "kind": trace_pb2.Span.SpanKind.Name(span.kind), "start": span.start_time_unix_nano,
            "end": span.end_time_unix_nano, "trace_state": span.trace_state, "attributes": attributes(span.attributes),
            "status": (trace_pb2.Status.StatusCode.Name(span.status.code), span.status.message),
            "events": [(e.time_unix_nano, e.name, attributes(e.attributes)) for e in span.events],
            "links": [(link.trace_id.hex(), link.span_id.hex(), attributes(link.attributes)) for link in span.links]}


def view(requests) -> list:
    return [{"resource": attributes(rs.resource.attributes),
             "scopes": [((ss.scope.name, ss.scope.version), [span_view(s) for s in ss.spans]) for ss in rs.scope_spans]}
            for request in requests for rs in request.resource_spans]


# --- the fixture batch, as the collector's translator maps it ---------------------------------

CHECKOUT = [("service.name", "string_value", "checkout"), ("ip", "string_value", "10.0.0.7"),
            ("cpus", "int_value", 8), ("load", "double_value", 0.75), ("canary", "bool_value", False),
            # hostname and jaeger.version are renamed, and go last.
            ("host.name", "string_value", "box-7"),
            ("opencensus.exporterversion", "string_value", "Jaeger-Python-4.8.0")]
FOLLOWS_FROM = [("opentracing.ref_type", "string_value", "follows_from")]
SCOPE = ("io.genops.checkout", "0.9.0")
LEGACY_SCOPE = ("legacy.instrumentation", "0.1")

ROOT_SPAN = {
    "trace_id": TRACE, "span_id": ROOT, "parent": "", "name": "GET /checkout", "kind": "SPAN_KIND_SERVER",
    "start": START_US * 1000, "end": (START_US + 2_500_000) * 1000, "trace_state": "congo=t61rcWkgMzE",
    # span.kind, otel.scope.* and w3c.tracestate are taken off; http.* stays.
    "attributes": [("http.method", "string_value", "GET"), ("http.status_code", "int_value", 503),
                   ("payload", "bytes_value", b"\x00\x01\xff"), ("ratio", "double_value", 0.25),
                   ("sampled", "bool_value", True), ("retries", "int_value", -3)],
    # No error or otel.status_code tag: a 5xx http.status_code is an error, with no message.
    "status": ("STATUS_CODE_ERROR", ""),
    "events": [((START_US + 100_000) * 1000, "cache miss",
                [("key", "string_value", "prompt"), ("size", "int_value", 42)])],
    "links": [(OTHER_TRACE, ELSEWHERE, FOLLOWS_FROM)],
}
CHILD_SPAN = {
    # The parent from parentSpanId; that reference is no link.
    "trace_id": TRACE, "span_id": CHILD, "parent": ROOT, "name": "POST openrouter", "kind": "SPAN_KIND_CLIENT",
    "start": (START_US + 10) * 1000, "end": (START_US + 10 + 1_000_000) * 1000, "trace_state": "",
    # error: true wins over otel.status_code OK; both go, with the description.
    "attributes": [("http.status_code", "int_value", 429)],
    "status": ("STATUS_CODE_ERROR", "upstream 429"),
    # No "event" field: no name. An "event" that is not a string: no name, and it goes.
    "events": [((START_US + 20) * 1000, "", [("message", "string_value", "no event field")]),
               ((START_US + 30) * 1000, "", [("level", "string_value", "warn")])],
    "links": [],
}
FOLLOWER_SPAN = {
    # No CHILD_OF reference to its trace: the FOLLOWS_FROM one is the parent, and a link too.
    "trace_id": TRACE, "span_id": FOLLOWER, "parent": ROOT, "name": "enqueue", "kind": "SPAN_KIND_PRODUCER",
    "start": (START_US + 2_600_000) * 1000, "end": (START_US + 2_600_000) * 1000, "trace_state": "",
    "attributes": [], "status": ("STATUS_CODE_ERROR", "broker down"),
    "events": [((START_US + 2_600_000) * 1000, "", [(f"f{i:02}", "int_value", i - 8) for i in range(16)])],
    "links": [(TRACE, ROOT, FOLLOWS_FROM)],
}
# One batch process: spans by scope, in the order the scopes first appear.
THRIFT_VIEW = [{"resource": CHECKOUT, "scopes": [(SCOPE, [ROOT_SPAN, FOLLOWER_SPAN]), (LEGACY_SCOPE, [CHILD_SPAN])]}]
# api_v2: the follower has a process of its own (a resource of its own); the blank span is skipped.
PROTO_VIEW = [{"resource": CHECKOUT, "scopes": [(SCOPE, [ROOT_SPAN]), (LEGACY_SCOPE, [CHILD_SPAN])]},
              {"resource": [("service.name", "string_value", "queue-worker"), ("ip", "string_value", "10.0.0.9")],
               "scopes": [(SCOPE, [FOLLOWER_SPAN])]}]


# --- clients ----------------------------------------------------------------------------------

async def post_thrift(port: int, body: bytes, content_type: str = "application/x-thrift",
                      method: str = "POST", path: str = "/api/traces") -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"http://127.0.0.1:{port}{path}", data=body,
                                   headers={"Content-Type": content_type}) as response:
            return response.status, await response.text(), dict(response.headers)


async def post_spans(port: int, body: bytes):
    """(code, details, retry-after) of a raw PostSpans call."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(proto.POST_SPANS)
        try:
            await call(body, timeout=10)
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details(), status.retry_after_from_metadata(error.trailing_metadata())
        return grpc.StatusCode.OK, "", None


def send_datagram(port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(data, ("127.0.0.1", port))


def metric(registry: CollectorRegistry, name: str, **labels) -> float:
    return registry.get_sample_value(name, {"receiver": RECEIVER, **labels}) or 0.0


async def until(condition, timeout: float = 10.0) -> None:
    """Waits for what arrives over UDP, which nothing acknowledges; bounded."""
    async def poll():
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


# --- configuration ----------------------------------------------------------------------------

def test_each_protocol_takes_the_collectors_defaults():
    config, problems = decode(jaeger.Config, {"protocols": {name: None for name in
                                                            ("grpc", "thrift_http", "thrift_compact", "thrift_binary")}})
    assert problems == []
    protocols = config.protocols
    assert protocols.grpc.endpoint == "localhost:14250"
    assert protocols.thrift_http.endpoint == "localhost:14268"
    assert protocols.thrift_compact.endpoint == "localhost:6831"
    assert protocols.thrift_binary.endpoint == "localhost:6832"
    for udp in (protocols.thrift_compact, protocols.thrift_binary):
        assert (udp.queue_size, udp.max_packet_size, udp.workers, udp.socket_buffer_size) == (1000, 65_000, 10, 0)


@pytest.mark.parametrize("protocols, expected", [
    pytest.param({}, "receivers::jaeger::protocols: at least one protocol must be configured "
                     "(grpc, thrift_http, thrift_compact, thrift_binary)", id="none"),
    pytest.param({"grpc": {"endpoint": "collector"}},
                 'receivers::jaeger::protocols::grpc::endpoint: "collector" is not a host:port endpoint', id="endpoint"),
    pytest.param({"grpc": {"endpoint": "0.0.0.0:14250"}, "thrift_http": {"endpoint": "0.0.0.0:14250"}},
                 "receivers::jaeger::protocols::thrift_http::endpoint: is the same as the grpc endpoint", id="same-port"),
    pytest.param({"thrift_compact": {"queue_size": 0}},
                 "receivers::jaeger::protocols::thrift_compact::queue_size: must be positive", id="queue"),
    pytest.param({"thrift_binary": {"max_packet_size": 70_000}},
                 "receivers::jaeger::protocols::thrift_binary::max_packet_size: must be at most 65535, "
                 "the largest UDP datagram", id="packet"),
    pytest.param({"thrift_http": {"max_request_body_size": -1}},
                 "receivers::jaeger::protocols::thrift_http::max_request_body_size: must not be negative "
                 "(0 means the default)", id="body"),
    pytest.param({"thrift_zipkin": {}}, "receivers::jaeger::protocols::thrift_zipkin", id="unknown-protocol"),
    pytest.param({"grpc": {"tls": {"cert_file": "x"}}}, "receivers::jaeger::protocols::grpc::tls", id="no-tls-here"),
])
def test_invalid_configs_are_refused_naming_the_key(protocols, expected):
    text = yaml.safe_dump({"receivers": {"jaeger": {"protocols": protocols}}, "exporters": {"debug": {}},
                           "service": {"pipelines": {"traces": {"receivers": ["jaeger"], "exporters": ["debug"]}}}})
    with pytest.raises(ConfigError) as raised:
        load(text, default_registry(), env={})
    assert any(line.startswith(expected) for line in str(raised.value).splitlines()), str(raised.value)


def test_the_udp_ports_may_share_a_number_with_the_tcp_ones():
    port = free_port()
    _, problems = decode(jaeger.Config, {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"},
                                                       "thrift_binary": {"endpoint": f"127.0.0.1:{port}"}}})
    assert problems == []


@in_loop
async def test_only_the_protocols_named_are_started():
    async with running({"thrift_http": {"endpoint": LOOPBACK}}) as receiver:
        assert list(receiver.ports) == ["thrift_http"]
        assert receiver.ports["thrift_http"] > 0


# --- the fixture batch on every protocol ------------------------------------------------------

def test_the_thrift_readers_agree_on_the_fixtures():
    body = thrift.read_batch(fixture("batch.thrift"))
    assert thrift.read_emit_batch(fixture("emit_batch_compact.thrift"), compact=True) == body
    assert thrift.read_emit_batch(fixture("emit_batch_binary.thrift"), compact=False) == body
    assert body.process.service_name == "checkout" and len(body.spans) == 3


@in_loop
async def test_thrift_http_translates_every_field_and_answers_202():
    consumer = RecordingConsumer()
    async with running({"thrift_http": {"endpoint": LOOPBACK}}, consumer) as receiver:
        code, text, _ = await post_thrift(receiver.ports["thrift_http"], fixture("batch.thrift"))
    assert (code, text) == (202, "")
    assert view(consumer.requests) == THRIFT_VIEW


@in_loop
async def test_thrift_http_takes_the_other_thrift_media_type_with_parameters():
    consumer = RecordingConsumer()
    async with running({"thrift_http": {"endpoint": LOOPBACK}}, consumer) as receiver:
        port = receiver.ports["thrift_http"]
        assert (await post_thrift(port, fixture("batch.thrift"), "application/vnd.apache.thrift.binary"))[0] == 202
        assert (await post_thrift(port, fixture("batch.thrift"), "application/x-thrift; charset=binary"))[0] == 202
    assert view(consumer.requests) == THRIFT_VIEW * 2


@in_loop
async def test_thrift_http_inflates_a_compressed_body_within_its_limit():
    consumer = RecordingConsumer()
    registry = CollectorRegistry()
    batch = fixture("batch.thrift")
    async with running({"thrift_http": {"endpoint": LOOPBACK, "max_request_body_size": 4096}},
                       consumer, registry) as receiver:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async def post(data: bytes, encoding: str) -> tuple[int, str]:
                async with session.post(f"http://127.0.0.1:{receiver.ports['thrift_http']}/api/traces", data=data,
                                        headers={"Content-Type": "application/x-thrift",
                                                 "Content-Encoding": encoding}) as response:
                    return response.status, await response.text()

            assert (await post(gzip.compress(batch), "gzip"))[0] == 202
            code, text = await post(gzip.compress(batch * 100), "gzip")  # small on the wire, past the limit inflated
            assert code == 413 and "inflates to more than the limit of 4096 bytes" in text
            code, text = await post(batch, "br")
            assert code == 400 and 'unsupported Content-Encoding "br"' in text
    assert consumer.spans() == 3
    assert metric(registry, "otelcol_receiver_refused_requests_total", transport="collector_http", signal="traces",
                  status="413") == 1


@pytest.mark.parametrize("protocol, name", [("thrift_compact", "emit_batch_compact.thrift"),
                                            ("thrift_binary", "emit_batch_binary.thrift")])
@in_loop
async def test_udp_translates_every_field(protocol, name):
    consumer = RecordingConsumer()
    registry = CollectorRegistry()
    async with running({protocol: {"endpoint": LOOPBACK}}, consumer, registry) as receiver:
        send_datagram(receiver.ports[protocol], fixture(name))
        await consumer.wait_for_spans(3)
    assert view(consumer.requests) == THRIFT_VIEW
    assert metric(registry, "otelcol_receiver_accepted_spans_total", transport=f"udp_{protocol}") == 3


@in_loop
async def test_grpc_translates_every_field_and_groups_spans_by_process():
    consumer = RecordingConsumer()
    registry = CollectorRegistry()
    async with running({"grpc": {"endpoint": LOOPBACK}}, consumer, registry) as receiver:
        answer = await post_spans(receiver.ports["grpc"], fixture("post_spans.binpb"))
    assert answer == (grpc.StatusCode.OK, "", None)
    assert view(consumer.requests) == PROTO_VIEW
    # The blank span was no span.
    assert metric(registry, "otelcol_receiver_accepted_spans_total", transport="grpc") == 3


@in_loop
async def test_grpc_answers_with_the_generated_stub_types():
    """The reply parses as a PostSpansResponse, as a generated client expects."""
    async with running({"grpc": {"endpoint": LOOPBACK}}) as receiver:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.ports['grpc']}") as channel:
            call = channel.unary_unary(proto.POST_SPANS, request_serializer=proto.PostSpansRequest.SerializeToString,
                                       response_deserializer=proto.PostSpansResponse.FromString)
            reply = await call(proto.PostSpansRequest.FromString(fixture("post_spans.binpb")), timeout=10)
    assert reply == proto.PostSpansResponse()


# --- the translator's rules, one at a time ----------------------------------------------------

def one_span(**fields) -> proto.Batch:
    span = proto.Span(trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex(CHILD), operation_name="op", **fields)
    return proto.Batch(process=proto.Process(service_name="svc"), spans=[span])


def translated(batch) -> dict:
    from relay.receivers.jaeger import translate

    request = translate.to_request(batch)
    return span_view(request.resource_spans[0].scope_spans[0].spans[0])


def kv(key, **value):
    vtype = {"v_str": proto.STRING, "v_bool": proto.BOOL, "v_int64": proto.INT64, "v_float64": proto.FLOAT64,
             "v_binary": proto.BINARY}[next(iter(value))]
    return proto.KeyValue(key=key, v_type=vtype, **value)


@pytest.mark.parametrize("tags, kind, code", [
    ([kv("http.status_code", v_int64=404), kv("span.kind", v_str="client")], "SPAN_KIND_CLIENT", "STATUS_CODE_ERROR"),
    ([kv("http.status_code", v_int64=404), kv("span.kind", v_str="server")], "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"),
    ([kv("http.status_code", v_str="500")], "SPAN_KIND_UNSPECIFIED", "STATUS_CODE_ERROR"),
    ([kv("http.status_code", v_int64=399)], "SPAN_KIND_UNSPECIFIED", "STATUS_CODE_ERROR"),
    ([kv("http.status_code", v_int64=302)], "SPAN_KIND_UNSPECIFIED", "STATUS_CODE_UNSET"),
    ([kv("http.status_code", v_str="n/a")], "SPAN_KIND_UNSPECIFIED", "STATUS_CODE_UNSET"),
    # Past int64, as Go's ParseInt: no code (and past Python's 4300 digits, no ValueError).
    ([kv("http.status_code", v_str="5" * 5000)], "SPAN_KIND_UNSPECIFIED", "STATUS_CODE_UNSET"),
    ([kv("http.status_code", v_str="0" * 5000 + "503")], "SPAN_KIND_UNSPECIFIED", "STATUS_CODE_ERROR"),
    ([kv("otel.status_code", v_str="ok"), kv("http.status_code", v_int64=500)], "SPAN_KIND_UNSPECIFIED",
     "STATUS_CODE_OK"),
    ([kv("error", v_bool=False), kv("span.kind", v_str="consumer")], "SPAN_KIND_CONSUMER", "STATUS_CODE_UNSET"),
    ([kv("error", v_str="true")], "SPAN_KIND_UNSPECIFIED", "STATUS_CODE_UNSET"),
    ([kv("span.kind", v_str="sideways")], "SPAN_KIND_UNSPECIFIED", "STATUS_CODE_UNSET"),
])
def test_kind_and_status_follow_the_collectors_precedence(tags, kind, code):
    span = translated(one_span(tags=tags))
    assert (span["kind"], span["status"][0]) == (kind, code)


def test_an_error_tag_takes_the_http_status_message_when_there_is_no_description():
    span = translated(one_span(tags=[kv("error", v_bool=True), kv("http.status_message", v_str="Bad Gateway")]))
    assert span["status"] == ("STATUS_CODE_ERROR", "Bad Gateway")
    assert span["attributes"] == [("http.status_message", "string_value", "Bad Gateway")]


def test_a_false_error_tag_stays_an_attribute():
    span = translated(one_span(tags=[kv("error", v_bool=False)]))
    assert span["attributes"] == [("error", "bool_value", False)]


def test_a_repeated_tag_keeps_its_place_and_the_last_value():
    span = translated(one_span(tags=[kv("a", v_str="1"), kv("b", v_str="2"), kv("a", v_int64=3)]))
    assert span["attributes"] == [("a", "int_value", 3), ("b", "string_value", "2")]


def test_the_first_child_of_reference_to_the_trace_is_the_parent():
    refs = [proto.SpanRef(trace_id=bytes.fromhex(OTHER_TRACE), span_id=bytes.fromhex(ELSEWHERE), ref_type=proto.CHILD_OF),
            proto.SpanRef(trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex(FOLLOWER), ref_type=proto.FOLLOWS_FROM),
            proto.SpanRef(trace_id=bytes.fromhex(TRACE), span_id=bytes.fromhex(ROOT), ref_type=proto.CHILD_OF)]
    span = translated(one_span(references=refs))
    assert span["parent"] == ROOT
    # Every other reference is a link, a CHILD_OF to another trace included.
    assert span["links"] == [(OTHER_TRACE, ELSEWHERE, [("opentracing.ref_type", "string_value", "child_of")]),
                             (TRACE, FOLLOWER, FOLLOWS_FROM)]


def test_a_process_without_a_service_name_says_so_with_an_empty_resource():
    from relay.receivers.jaeger import translate

    batch = one_span()
    batch.process.service_name = "OTLPResourceNoServiceName"
    batch.process.tags.append(kv("ip", v_str="10.0.0.1"))
    request = translate.to_request(batch)
    assert attributes(request.resource_spans[0].resource.attributes) == []


# --- the error table --------------------------------------------------------------------------

def truncated_batch() -> bytes:
    return fixture("batch.thrift")[:-40]


def zigzag_varint(value: int) -> bytes:
    raw, out = (value << 1) ^ (value >> 63), b""
    while raw >= 0x80:
        out, raw = out + bytes([raw & 0x7F | 0x80]), raw >> 7
    return out + bytes([raw])


def with_micros(name: str, old: int, new: int) -> bytes:
    """A fixture written by the real encoders, with the i64 ``old`` (a start time or a log's
    timestamp, which occur once) rewritten to ``new``."""
    data = fixture(name)
    encode = zigzag_varint if "compact" in name else functools.partial(struct.pack, ">q")
    assert data.count(encode(old)) == 1
    return data.replace(encode(old), encode(new))


# Past a protobuf Timestamp's years 1 to 9999: the first span's start, the first log's timestamp.
FAR_START = ("batch.thrift", START_US, 2 ** 63 - 1)
FAR_LOG = ("batch.thrift", START_US + 100_000, -(2 ** 63))


@in_loop
async def test_grpc_error_table():
    consumer = RecordingConsumer()
    registry = CollectorRegistry()
    good = fixture("post_spans.binpb")
    short_id = proto.PostSpansRequest(batch=proto.Batch(spans=[proto.Span(trace_id=b"\x01" * 8, span_id=b"\x02" * 8)]))
    async with running({"grpc": {"endpoint": LOOPBACK, "max_recv_msg_size_mib": 1}}, consumer, registry) as receiver:
        port = receiver.ports["grpc"]
        code, details, _ = await post_spans(port, b"\xff\xff\xff")
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "cannot parse PostSpansRequest" in details
        code, details, _ = await post_spans(port, short_id.SerializeToString())
        assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "batch.spans[0].trace_id must be 16 bytes, got 8")
        code, _, _ = await post_spans(port, b"\0" * (2 * 1024 * 1024))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert consumer.requests == []

        consumer.error = RetryableError("queue is full", retry_after=3)
        assert await post_spans(port, good) == (grpc.StatusCode.UNAVAILABLE, "queue is full", 3.0)
        consumer.error = InvalidDataError("downstream refused it")
        assert await post_spans(port, good) == (grpc.StatusCode.INVALID_ARGUMENT, "downstream refused it", None)
        consumer.error = RuntimeError("a bug")
        assert await post_spans(port, good) == (grpc.StatusCode.UNAVAILABLE, INTERNAL_MESSAGE, None)
    # Each pipeline refusal counted its three spans.
    refused = sum(metric(registry, "otelcol_receiver_refused_spans_total", transport="grpc", reason=reason)
                  for reason in ("RetryableError", "InvalidDataError", "RuntimeError"))
    assert refused == 9
    assert metric(registry, "otelcol_receiver_refused_requests_total", transport="grpc", signal="traces",
                  status="INVALID_ARGUMENT") == 3


@in_loop
async def test_thrift_http_error_table():
    consumer = RecordingConsumer()
    registry = CollectorRegistry()
    async with running({"thrift_http": {"endpoint": LOOPBACK, "max_request_body_size": 4096}},
                       consumer, registry) as receiver:
        port = receiver.ports["thrift_http"]
        code, text, _ = await post_thrift(port, fixture("batch.thrift"), "application/json")
        assert code == 415 and "application/x-thrift" in text
        code, text, _ = await post_thrift(port, truncated_batch())
        assert code == 400 and "truncated" in text
        code, text, _ = await post_thrift(port, b"\x00")  # a struct with no fields: no process, no spans
        assert code == 400 and "required field process is missing" in text
        code, text, _ = await post_thrift(port, b"\x0b\x00\x01\x7f\xff\xff\xff")  # a string longer than the body
        assert code == 400 and "truncated" in text
        code, _, _ = await post_thrift(port, b"\0" * 5000)
        assert code == 413
        code, text, _ = await post_thrift(port, with_micros(*FAR_START))
        assert code == 400 and "batch.spans[0].startTime of 9223372036854775807 microseconds is past what a " \
            "timestamp (years 1 to 9999) can hold" in text
        code, text, _ = await post_thrift(port, with_micros(*FAR_LOG))
        assert code == 400 and "batch.spans[0].logs[0].timestamp of" in text
        assert (await post_thrift(port, b"", method="GET"))[0] == 405
        assert (await post_thrift(port, fixture("batch.thrift"), path="/v1/traces"))[0] == 404
        assert consumer.requests == []

        consumer.error = RetryableError("memory limit", retry_after=2.5)
        code, text, headers = await post_thrift(port, fixture("batch.thrift"))
        assert (code, text.strip(), headers.get("Retry-After")) == (503, "memory limit", "3")
        consumer.error = InvalidDataError("downstream refused it")
        assert (await post_thrift(port, fixture("batch.thrift")))[0] == 400
        consumer.error = RuntimeError("a bug")
        code, text, _ = await post_thrift(port, fixture("batch.thrift"))
        assert (code, text.strip()) == (503, INTERNAL_MESSAGE)
    assert metric(registry, "otelcol_receiver_refused_requests_total", transport="collector_http", signal="traces",
                  status="415") == 1
    assert metric(registry, "otelcol_receiver_refused_requests_total", transport="collector_http", signal="traces",
                  status="503") == 2
    assert metric(registry, "otelcol_receiver_refused_requests_total", transport="collector_http", signal="traces",
                  status="400") == 6


@in_loop
async def test_udp_drops_are_counted_and_the_port_stays_up():
    consumer = RecordingConsumer()
    registry = CollectorRegistry()
    config = {"thrift_compact": {"endpoint": LOOPBACK, "max_packet_size": 3000}}
    async with running(config, consumer, registry) as receiver:
        port = receiver.ports["thrift_compact"]

        def refused(code: str) -> float:
            return metric(registry, "otelcol_receiver_refused_requests_total", transport="udp_thrift_compact",
                          signal="traces", status=code)

        send_datagram(port, b"\x82\x21\x00\x09emitBatch\x00")  # an emitBatch with no batch
        send_datagram(port, fixture("emit_batch_binary.thrift"))  # binary protocol on the compact port
        send_datagram(port, b"\x00" * 3001)
        send_datagram(port, with_micros("emit_batch_compact.thrift", START_US, 2 ** 63 - 1))
        await until(lambda: refused("INVALID_ARGUMENT") == 3 and refused("RESOURCE_EXHAUSTED") == 1)
        consumer.error = RetryableError("memory limit")
        send_datagram(port, fixture("emit_batch_compact.thrift"))
        await until(lambda: refused("UNAVAILABLE") == 1)
        consumer.error = None
        send_datagram(port, fixture("emit_batch_compact.thrift"))
        await consumer.wait_for_spans(6)
    assert metric(registry, "otelcol_receiver_refused_spans_total", transport="udp_thrift_compact",
                  reason="RetryableError") == 3
    assert metric(registry, "otelcol_receiver_accepted_spans_total", transport="udp_thrift_compact") == 3


@in_loop
async def test_udp_counts_what_a_full_queue_cannot_take():
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()
    registry = CollectorRegistry()
    config = {"thrift_binary": {"endpoint": LOOPBACK, "queue_size": 1, "workers": 1}}
    async with running(config, consumer, registry) as receiver:
        port = receiver.ports["thrift_binary"]
        send_datagram(port, fixture("emit_batch_binary.thrift"))
        await consumer.wait_for_spans(3)  # the one worker waits in the pipeline
        for _ in range(3):  # one waits in the queue, two find it full
            send_datagram(port, fixture("emit_batch_binary.thrift"))
        await until(lambda: metric(registry, "otelcol_receiver_refused_requests_total", transport="udp_thrift_binary",
                                   signal="traces", status="UNAVAILABLE") == 2)
        consumer.gate.set()
        await consumer.wait_for_spans(6)
    assert metric(registry, "otelcol_receiver_accepted_spans_total", transport="udp_thrift_binary") == 6


@in_loop
async def test_udp_counts_what_shutdown_leaves_behind():
    """Datagrams queued or in the pipeline when the grace runs out are counted, not lost unseen."""
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()  # never set: the pipeline does not take them in time
    registry = CollectorRegistry()
    config, _ = decode(jaeger.Config, {"protocols": {"thrift_binary": {"endpoint": LOOPBACK, "workers": 1}}})
    receiver = jaeger.create(Settings(ComponentID.parse(RECEIVER), SelfMetrics(registry)), config,
                             {Signal.TRACES: consumer})
    await receiver.start()
    server = receiver.servers[0]
    for _ in range(3):
        send_datagram(receiver.ports["thrift_binary"], fixture("emit_batch_binary.thrift"))
    await consumer.wait_for_spans(3)
    await until(lambda: server._queue.qsize() == 2)  # one in the pipeline, two waiting
    await receiver.shutdown(0.05)
    assert metric(registry, "otelcol_receiver_refused_requests_total", transport="udp_thrift_binary",
                  signal="traces", status="UNAVAILABLE") == 3
    # The datagram in the pipeline had been read: its three spans are counted as refused.
    assert metric(registry, "otelcol_receiver_refused_spans_total", transport="udp_thrift_binary",
                  reason="ShutdownError") == 3
    assert metric(registry, "otelcol_receiver_accepted_spans_total", transport="udp_thrift_binary") == 0


@in_loop
async def test_a_translator_failure_of_another_kind_is_refused_as_invalid_on_every_transport(monkeypatch):
    """The safety net under the readers: a gap answers in the protocol's terms and is counted, never a bare 500."""
    from relay.receivers.jaeger import translate

    def broken(batch):
        raise OverflowError("a gap in the translator")

    monkeypatch.setattr(translate, "to_request", broken)
    consumer = RecordingConsumer()
    registry = CollectorRegistry()
    protocols = {"grpc": {"endpoint": LOOPBACK}, "thrift_http": {"endpoint": LOOPBACK},
                 "thrift_compact": {"endpoint": LOOPBACK}}
    async with running(protocols, consumer, registry) as receiver:
        code, text, _ = await post_thrift(receiver.ports["thrift_http"], fixture("batch.thrift"))
        assert (code, text.strip()) == (400, "cannot read the body as a jaeger.thrift Batch: "
                                             "OverflowError: a gap in the translator")
        code, details, _ = await post_spans(receiver.ports["grpc"], fixture("post_spans.binpb"))
        assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT,
                                   "cannot read the PostSpansRequest: OverflowError: a gap in the translator")
        send_datagram(receiver.ports["thrift_compact"], fixture("emit_batch_compact.thrift"))
        await until(lambda: metric(registry, "otelcol_receiver_refused_requests_total", transport="udp_thrift_compact",
                                   signal="traces", status="INVALID_ARGUMENT") == 1)
    assert consumer.requests == []
    assert metric(registry, "otelcol_receiver_refused_requests_total", transport="collector_http", signal="traces",
                  status="400") == 1
    assert metric(registry, "otelcol_receiver_refused_requests_total", transport="grpc", signal="traces",
                  status="INVALID_ARGUMENT") == 1


@in_loop
async def test_grpc_takes_an_http_status_code_of_thousands_of_digits():
    tag = kv("http.status_code", v_str="5" * 5000)
    request = proto.PostSpansRequest(batch=one_span(tags=[tag], start_time={"seconds": 1}))
    consumer = RecordingConsumer()
    async with running({"grpc": {"endpoint": LOOPBACK}}, consumer) as receiver:
        assert await post_spans(receiver.ports["grpc"], request.SerializeToString()) == (grpc.StatusCode.OK, "", None)
    assert consumer.spans() == 1


@in_loop
async def test_thrift_http_shutdown_cancels_what_is_in_flight_after_its_grace():
    consumer = RecordingConsumer()
    consumer.gate = asyncio.Event()  # never set: the pipeline holds the request
    registry = CollectorRegistry()
    config, _ = decode(jaeger.Config, {"protocols": {"thrift_http": {"endpoint": LOOPBACK}}})
    receiver = jaeger.create(Settings(ComponentID.parse(RECEIVER), SelfMetrics(registry)), config,
                             {Signal.TRACES: consumer})
    await receiver.start()
    post = asyncio.ensure_future(post_thrift(receiver.ports["thrift_http"], fixture("batch.thrift")))
    try:
        await consumer.wait_for_spans(3)
        # aiohttp alone would wait up to a minute for the request; the bound here is only a safety net.
        await asyncio.wait_for(receiver.shutdown(0.05), 30)
    finally:
        post.cancel()
        await asyncio.gather(post, return_exceptions=True)
    assert metric(registry, "otelcol_receiver_accepted_spans_total", transport="collector_http") == 0


def test_udp_errors_are_logged_a_line_a_second_with_what_was_held_back():
    from relay.receivers.jaeger.udp import _ThrottledLog

    class Lines:
        def __init__(self):
            self.lines = []

        def error(self, message, exc_info=None, fields=None):
            self.lines.append((message, fields))

    now = [100.0]
    log = _ThrottledLog(Lines(), 1.0, lambda: now[0])
    for _ in range(3):
        log.error("decoding a request failed unexpectedly", exc_info=None, fields={"n": 1})
    now[0] += 1.0
    log.error("decoding a request failed unexpectedly", fields={"n": 2})
    assert log.log.lines == [("decoding a request failed unexpectedly", {"n": 1}),
                             ("decoding a request failed unexpectedly", {"n": 2, "suppressed": 2})]


def test_thrift_readers_refuse_what_is_not_an_emit_batch():
    with pytest.raises(thrift.ThriftError, match='unsupported agent call "emitZipkinBatch"'):
        thrift.read_emit_batch(b"\x82\x21\x00\x0femitZipkinBatch\x00", compact=True)
    with pytest.raises(thrift.ThriftError, match="not a compact protocol message"):
        thrift.read_emit_batch(b"\x80\x01\x00\x04", compact=True)
    deep = b"\x0c\x00\x01" * (thrift.MAX_DEPTH + 2)
    with pytest.raises(thrift.ThriftError, match="nested deeper"):
        thrift.read_batch(deep)
    # A list that claims more elements than there are bytes.
    with pytest.raises(thrift.ThriftError, match="collection of"):
        thrift.read_batch(b"\x0f\x00\x02\x0c" + struct.pack(">i", 1_000_000) + b"\x00")


# --- a round trip through a pipeline ----------------------------------------------------------

def test_a_pipeline_carries_jaeger_batches_to_its_exporter():
    """thrift_http and grpc into one traces pipeline, through the resource processor, to a recording exporter."""
    received = []

    class Recorder:
        mutates_data = False

        async def start(self):
            pass

        async def shutdown(self):
            pass

        async def consume(self, request):
            received.append(request)

    @dataclasses.dataclass
    class RecordConfig:
        def validate(self) -> list:
            return []

    module = type("M", (), {"TYPE": "record", "SIGNALS": (Signal.TRACES,), "Config": RecordConfig,
                            "create": staticmethod(lambda settings, config: Recorder())})
    registry = default_registry().add("exporters", module)
    grpc_port, http_port = free_port(), free_port()
    text = yaml.safe_dump({
        "receivers": {"jaeger": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                               "thrift_http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        "processors": {"resource": {"attributes": [{"key": "genops.team", "value": "team-jaeger", "action": "upsert"}]}},
        "exporters": {"record": {}},
        "service": {"pipelines": {"traces": {"receivers": ["jaeger"], "processors": ["resource"],
                                             "exporters": ["record"]}}}})
    config = load(text, registry, env={})

    async def run():
        graph = Graph(config, SelfMetrics(CollectorRegistry()))
        await asyncio.wait_for(graph.start(), 20)
        try:
            assert (await post_thrift(http_port, fixture("batch.thrift")))[0] == 202
            assert (await post_spans(grpc_port, fixture("post_spans.binpb")))[0] == grpc.StatusCode.OK
        finally:
            await asyncio.wait_for(graph.shutdown(5.0), 20)

    asyncio.run(run())
    team = ("genops.team", "string_value", "team-jaeger")
    assert view(received) == [{**resource, "resource": resource["resource"] + [team]}
                              for resource in THRIFT_VIEW + PROTO_VIEW]


# --- real clients: OpenTelemetry's Jaeger exporters -------------------------------------------

def driver_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    return env


async def drive(python: Path, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(str(python), str(DRIVER), *args, env=driver_env(),
                                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), DRIVE_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"the driver was still running after {DRIVE_TIMEOUT}s") from None
    assert process.returncode == 0, f"the driver exited {process.returncode}:\n{out.decode()}{err.decode()}"
    return out.decode()


def typed(value_type: str, value) -> tuple:
    return {"str": ("string_value", value), "bool": ("bool_value", value), "int": ("int_value", value),
            "float": ("double_value", value)}[value_type]


def micros_rounded(nanos: int) -> int:
    # The Thrift exporter rounds to microseconds (its _nsec_to_usec_round).
    return (nanos + 500) // 1000


def expected_span(sdk: dict) -> dict:
    """An SDK span as the receiver must hand it on, after a trip through a Jaeger exporter."""
    tags = {key: typed(*value) for key, value in sdk["attributes"].items()}
    # Both exporters copy the resource onto every span, and write the scope twice: as
    # otel.library.* (kept as attributes) and otel.scope.* (the scope).
    tags.update({key: typed(*value) for key, value in sdk["resource"].items()})
    name, version = sdk["scope"]
    tags.update({"otel.library.name": ("string_value", name), "otel.library.version": ("string_value", version)})
    status = {"UNSET": ("STATUS_CODE_UNSET", ""), "OK": ("STATUS_CODE_OK", ""),
              "ERROR": ("STATUS_CODE_ERROR", sdk["status_description"] or "")}[sdk["status"]]
    return {
        "trace_id": sdk["trace_id"], "span_id": sdk["span_id"], "parent": sdk["parent_span_id"], "name": sdk["name"],
        "kind": f"SPAN_KIND_{sdk['kind']}", "trace_state": "", "status": status,
        "attributes": [(key, *value) for key, value in tags.items()],
        # The exporters put an event's name in a "message" field, which the collector does not read as the name.
        "events": [("", [(key, *typed(*value)) for key, value in event["attributes"].items()]
                    + [("message", "string_value", event["name"])]) for event in sdk["events"]],
        "links": [(trace_id, span_id, FOLLOWS_FROM) for trace_id, span_id in sdk["links"]],
    }


def check_times(got: dict, sdk: dict, protocol: str) -> None:
    if protocol == "grpc":
        # The protobuf exporter converts through a float of seconds: within a microsecond.
        assert abs(got["start"] - sdk["start"]) <= 1000 and abs(got["end"] - sdk["end"]) <= 1000
        return
    start = micros_rounded(sdk["start"])
    assert got["start"] == start * 1000
    assert got["end"] == (start + micros_rounded(sdk["end"] - sdk["start"])) * 1000


@pytest.mark.parametrize("protocol", ["thrift_http", "thrift_compact", "thrift_binary", "grpc"])
@in_loop
async def test_opentelemetry_jaeger_exporters_deliver_every_field(protocol):
    python = venv.require()
    consumer = RecordingConsumer()
    async with running({protocol: {"endpoint": LOOPBACK}}, consumer) as receiver:
        port = receiver.ports[protocol]
        target = f"http://127.0.0.1:{port}/api/traces" if protocol == "thrift_http" else f"127.0.0.1:{port}"
        sdk_spans = json.loads(await drive(python, "sdk", protocol, target))
        await consumer.wait_for_spans(len(sdk_spans))
    assert len(sdk_spans) == 3
    got = {}
    resources = []
    for resource in view(consumer.requests):
        resources.append(resource["resource"])
        for scope, spans in resource["scopes"]:
            for span in spans:
                got[span["span_id"]] = (scope, span)
    for sdk in sdk_spans:
        scope, span = got[sdk["span_id"]]
        assert scope == tuple(sdk["scope"])
        check_times(span, sdk, protocol)
        for event, sdk_event in zip(span["events"], sdk["events"], strict=True):
            expected_time = (sdk_event["time"] if protocol == "grpc" else micros_rounded(sdk_event["time"]) * 1000)
            assert abs(event[0] - expected_time) <= (1000 if protocol == "grpc" else 0)
        span = {key: value for key, value in span.items() if key not in ("start", "end")}
        span["events"] = [event[1:] for event in span["events"]]
        assert span == expected_span(sdk)
    sdk_resource = [(key, *typed(*value)) for key, value in sdk_spans[0]["resource"].items()]
    if protocol == "grpc":
        # The process carries the resource as tags; its service name comes first and again as a tag.
        assert set(map(tuple, resources)) == {tuple(sdk_resource)}
    else:
        # The Thrift exporter's process is the service name alone.
        assert set(map(tuple, resources)) == {(("service.name", "string_value", "jaeger-driver"),)}


def test_the_fixtures_are_what_the_real_encoders_write(tmp_path):
    python = venv.require()
    done = subprocess.run([str(python), str(DRIVER), "payloads", str(tmp_path)], env=driver_env(),
                          capture_output=True, text=True, timeout=DRIVE_TIMEOUT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(path.name for path in FIXTURES.iterdir() if path.suffix != ".md")
    assert names == sorted(path.name for path in tmp_path.iterdir())
    for name in names:
        assert (tmp_path / name).read_bytes() == fixture(name), name

