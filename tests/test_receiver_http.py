"""The OTLP/HTTP receiver, run in-process on 127.0.0.1 with fake consumers behind it."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gzip
import json
import resource
import socket
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client import CollectorRegistry

from relay import client, fixtures, otlpjson, received, status
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import InvalidDataError, PermanentError, QueueFullError, RetryableError, ShutdownError, TooLargeError
from relay.exporters import debug
from relay.pipeline.registry import Registry
from relay.receivers import otlp
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import logs_request, metrics_request, profiles_request, traces_request

RECEIVER = "otlp/test"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MIB = 1024 * 1024
TRACE_ID = "5B8EFFF798038103D269B633813FC60C"
SPAN_ID = "EEE19B7EC3C1B174"
PARENT_ID = "EEE19B7EC3C1B173"
GENERIC = "internal error in the relay; retry later"


class FakeConsumer:
    """Records each request with the client info and wire bytes bound while it was consumed;
    raises ``error`` if set, and waits for ``gate`` if set."""

    mutates_data = False

    def __init__(self, error: BaseException | None = None):
        self.received: list = []
        self.clients: list[client.ClientInfo] = []
        self.raw: list[bytes | None] = []
        self.error = error
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def consume(self, request) -> None:
        self.received.append(request)
        self.clients.append(client.current())
        self.raw.append(received.raw_bytes(request))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error


@dataclasses.dataclass
class Answer:
    status: int
    headers: Any
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def rpc_status(self) -> status_pb2.Status:
        """The google.rpc.Status body, decoded per the answer's content type."""
        if self.content_type == PROTOBUF:
            return status_pb2.Status.FromString(self.body)
        assert self.content_type == JSON, self
        return otlpjson.decode(self.body, status_pb2.Status)


class Harness:
    """A started receiver (HTTP only unless ``grpc`` settings are given), a client session and a registry."""

    def __init__(self, consumers: dict, http: dict | None = None, grpc_settings: dict | None = None):
        self.registry = CollectorRegistry()
        self.telemetry = SelfMetrics(self.registry)
        protocols = {"http": {"endpoint": "127.0.0.1:0", **(http or {})}}
        if grpc_settings is not None:
            protocols["grpc"] = {"endpoint": "127.0.0.1:0", **grpc_settings}
        config, problems = decode(otlp.Config, {"protocols": protocols})
        assert problems == [] and config is not None
        self.receiver = otlp.create(Settings(ComponentID.parse(RECEIVER), self.telemetry), config, consumers)
        self.http = getattr(self.receiver, "http", self.receiver)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "Harness":
        await self.receiver.start()
        assert self.http.port, "the receiver must report the port it bound"
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()
        await self.receiver.shutdown(grace=0)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http.port}{path}"

    async def send(self, body: bytes | Callable[[], bytes] = b"", content_type: str | None = PROTOBUF,
                   path: str = "/v1/traces", method: str = "POST", headers: dict | None = None,
                   chunked: bool = False, session: aiohttp.ClientSession | None = None) -> Answer:
        headers = dict(headers or {})
        if content_type is not None:
            headers["Content-Type"] = content_type
        data: Any = body() if callable(body) else body
        if chunked:
            whole = data

            async def pieces():
                for start in range(0, len(whole), 64 * 1024):
                    yield whole[start:start + 64 * 1024]
            data = pieces()
        async with (session or self.session).request(
                method, self.url(path), data=data if method not in ("GET", "HEAD") else None, headers=headers,
                skip_auto_headers=("Content-Type",), timeout=aiohttp.ClientTimeout(total=30)) as answer:
            return Answer(answer.status, answer.headers, await answer.read())

    def accepted(self, signal: Signal, transport: str = "http") -> float:
        return self.registry.get_sample_value(f"otelcol_receiver_accepted_{signal.item}_total",
                                              {"receiver": RECEIVER, "transport": transport}) or 0.0

    def refused(self, signal: Signal, reason: str) -> float:
        return self.registry.get_sample_value(f"otelcol_receiver_refused_{signal.item}_total",
                                              {"receiver": RECEIVER, "transport": "http", "reason": reason}) or 0.0

    def refused_requests(self, signal: Signal, code: int) -> float:
        return self.registry.get_sample_value("otelcol_receiver_refused_requests_total", {
            "receiver": RECEIVER, "transport": "http", "signal": signal.value, "status": str(code)}) or 0.0


def all_signals(consumer: FakeConsumer) -> dict:
    return {signal: consumer for signal in Signal}


# --- request bodies ---------------------------------------------------------------------------------------

def span_doc(**changes) -> dict:
    """One span written as the OTLP specification's JSON examples are."""
    span = {
        "traceId": TRACE_ID, "spanId": SPAN_ID, "parentSpanId": PARENT_ID, "name": "GET /chat",
        "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
        "kind": 2, "attributes": [{"key": "tokens", "value": {"intValue": "42"}}],
        "status": {"code": 2, "message": "boom"},
    }
    span.update(changes)
    return span


def traces_doc(span: dict | None = None, **extra) -> dict:
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "chat"}}]},
        "scopeSpans": [{"scope": {"name": "genops", "version": "0.4.0"}, "spans": [span or span_doc()]}],
    }], **extra}


def renamed(doc: dict, **names) -> dict:
    """``doc`` with keys renamed (old=new), keeping their values."""
    return {names.get(key, key): value for key, value in doc.items()}


def as_json(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def expected_span() -> trace_pb2.Span:
    span = trace_pb2.Span(trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(SPAN_ID),
                          parent_span_id=bytes.fromhex(PARENT_ID), name="GET /chat",
                          start_time_unix_nano=1544712660000000000, end_time_unix_nano=1544712661000000000,
                          kind=trace_pb2.Span.SPAN_KIND_SERVER)
    span.attributes.add(key="tokens").value.int_value = 42
    span.status.code, span.status.message = trace_pb2.Status.STATUS_CODE_ERROR, "boom"
    return span


def expected_traces() -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "chat"
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "genops", "0.4.0"
    ss.spans.append(expected_span())
    return request


PROTO = traces_request(spans=3).SerializeToString()
# Highly compressible: 256 KiB of attribute inflates from a few KiB.
ROOMY = traces_request(spans=1, attribute_bytes=256 * 1024).SerializeToString()


def deflate_raw(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@functools.cache
def gzip_bomb(inflated: int = 1024 * MIB, unit: int = MIB) -> bytes:
    """A valid gzip body of ``inflated`` zero bytes, about a thousandth of that size.

    Each block is flushed fully, so every block of zeros compresses to the same
    bytes and the body is one block repeated: no need to compress a whole GiB.
    """
    zeros = bytes(unit)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    assert packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH) == block
    tail = packer.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(inflated // unit):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * (inflated // unit) + tail + struct.pack("<II", crc, inflated & 0xFFFFFFFF)


def gzip_of(data: bytes) -> bytes:
    return gzip.compress(data)


# --- the conformance table --------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    id: str
    request: dict
    status: int
    check: Callable[[Answer, FakeConsumer], None] | None = None
    error: BaseException | None = None
    config: dict | None = None


def delivered(expected: Any) -> Callable:
    def check(answer: Answer, consumer: FakeConsumer) -> None:
        want = expected() if callable(expected) else expected
        assert consumer.received == [want]
    return check


def first_span(consumer: FakeConsumer) -> trace_pb2.Span:
    return consumer.received[0].resource_spans[0].scope_spans[0].spans[0]


def nothing_delivered(answer: Answer, consumer: FakeConsumer) -> None:
    assert consumer.received == []


def enums_decoded(answer: Answer, consumer: FakeConsumer) -> None:
    span = first_span(consumer)
    assert span.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert span.status.code == trace_pb2.Status.STATUS_CODE_ERROR


def refused_with(code: grpc.StatusCode, text: str) -> Callable:
    """The body is a google.rpc.Status with ``code`` whose message contains ``text``; nothing was forwarded."""
    def check(answer: Answer, consumer: FakeConsumer) -> None:
        reply = answer.rpc_status()
        assert reply.code == code.value[0], reply
        assert text in reply.message, reply.message
        assert "Retry-After" not in answer.headers
    return check


def plain_text(text: str, **headers) -> Callable:
    def check(answer: Answer, consumer: FakeConsumer) -> None:
        assert answer.content_type.startswith("text/plain")
        assert answer.body.decode() == text
        for key, value in headers.items():
            assert answer.headers[key.replace("_", "-")] == value
        assert consumer.received == []
    return check


def retry_after(value: str | None, message: str | None = None) -> Callable:
    def check(answer: Answer, consumer: FakeConsumer) -> None:
        assert answer.headers.get("Retry-After") == value
        if message is not None:
            assert answer.rpc_status().message == message
        assert len(consumer.received) == 1  # the pipeline saw it and refused it
    return check


def cors_headers(origin: str | None, **more) -> Callable:
    def check(answer: Answer, consumer: FakeConsumer) -> None:
        present = {k: v for k, v in answer.headers.items() if k.lower().startswith("access-control-")}
        if origin is None:
            assert present == {}, present
            return
        assert present.pop("Access-Control-Allow-Origin") == origin
        assert present.pop("Access-Control-Allow-Credentials") == "true"
        assert present == {k.replace("_", "-"): v for k, v in more.items()}
    return check


CORS = {"cors": {"allowed_origins": ["https://*.example.com", "http://localhost:3000"],
                 "allowed_headers": ["X-Tenant"], "max_age": 600}}


def preflight(origin: str, method: str = "POST", headers: str = "content-type") -> dict:
    return {"method": "OPTIONS", "content_type": None,
            "headers": {"Origin": origin, "Access-Control-Request-Method": method,
                        "Access-Control-Request-Headers": headers}}


CASES = [
    # What arrives, and how.
    Case("protobuf", {"body": PROTO}, 200, delivered(lambda: traces_request(spans=3))),
    Case("json-camelcase-uppercase-hex-ids-int64-strings", {"body": as_json(traces_doc()), "content_type": JSON}, 200,
         delivered(expected_traces)),
    Case("json-hex-ids-lowercase", {"body": as_json(traces_doc(span_doc(
        traceId=TRACE_ID.lower(), spanId=SPAN_ID.lower(), parentSpanId=PARENT_ID.lower()))), "content_type": JSON},
        200, delivered(expected_traces)),
    Case("json-int64-as-numbers", {"body": as_json(traces_doc(span_doc(
        startTimeUnixNano=1544712660000000000, endTimeUnixNano=1544712661000000000,
        attributes=[{"key": "tokens", "value": {"intValue": 42}}]))), "content_type": JSON},
        200, delivered(expected_traces)),
    Case("json-enums-as-integers", {"body": as_json(traces_doc()), "content_type": JSON}, 200, enums_decoded),
    Case("json-unknown-fields-ignored", {"body": as_json(traces_doc(
        span_doc(futureField={"nested": [1, 2]}, droppedThings=3), schemaVersion2="x")), "content_type": JSON},
        200, delivered(expected_traces)),
    Case("json-proto-field-names-also-accepted", {"body": as_json(traces_doc(renamed(
        span_doc(), traceId="trace_id", startTimeUnixNano="start_time_unix_nano"))), "content_type": JSON},
        200, delivered(expected_traces)),
    Case("json-charset-parameter", {"body": as_json(traces_doc()), "content_type": "application/json; charset=utf-8"},
         200, delivered(expected_traces)),
    Case("protobuf-with-parameter", {"body": PROTO, "content_type": "application/x-protobuf; proto=otlp"},
         200, delivered(lambda: traces_request(spans=3))),

    # Empty requests: answered, never forwarded.
    Case("empty-protobuf", {"body": b""}, 200, nothing_delivered),
    Case("empty-json-object", {"body": b"{}", "content_type": JSON}, 200, nothing_delivered),
    Case("json-structure-without-spans", {"body": as_json({"resourceSpans": [{"scopeSpans": [{}]}]}),
                                          "content_type": JSON}, 200, nothing_delivered),

    # Malformed bodies: 400 with a google.rpc.Status in the request's content type.
    Case("bad-json", {"body": b'{"resourceSpans": [', "content_type": JSON}, 400,
         refused_with(grpc.StatusCode.INVALID_ARGUMENT, "cannot parse ExportTraceServiceRequest as OTLP/JSON")),
    Case("json-not-an-object", {"body": b"[]", "content_type": JSON}, 400,
         refused_with(grpc.StatusCode.INVALID_ARGUMENT, "top level")),
    Case("json-empty-body", {"body": b"", "content_type": JSON}, 400,
         refused_with(grpc.StatusCode.INVALID_ARGUMENT, "malformed JSON")),
    Case("json-bad-hex-id", {"body": as_json(traces_doc(span_doc(spanId="abc"))), "content_type": JSON}, 400,
         refused_with(grpc.StatusCode.INVALID_ARGUMENT, "spanId")),
    Case("json-wrong-type", {"body": as_json(traces_doc(span_doc(name=["x"]))), "content_type": JSON}, 400,
         refused_with(grpc.StatusCode.INVALID_ARGUMENT, "cannot parse")),
    Case("bad-protobuf", {"body": b"\xff\xff\xff\xff garbage"}, 400,
         refused_with(grpc.StatusCode.INVALID_ARGUMENT, "cannot parse ExportTraceServiceRequest")),
    Case("truncated-protobuf", {"body": PROTO[:-7]}, 400,
         refused_with(grpc.StatusCode.INVALID_ARGUMENT, "cannot parse")),

    # Content type, method, path.
    Case("wrong-content-type", {"body": PROTO, "content_type": "text/plain"}, 415,
         plain_text("415 unsupported media type, supported: [application/json, application/x-protobuf]")),
    Case("no-content-type", {"body": PROTO, "content_type": None}, 415, nothing_delivered),
    Case("protobuf-without-x", {"body": PROTO, "content_type": "application/protobuf"}, 415, nothing_delivered),
    Case("get", {"method": "GET"}, 405, plain_text("405 method not allowed, supported: [POST]", Allow="POST")),
    Case("put", {"method": "PUT", "body": PROTO}, 405, plain_text("405 method not allowed, supported: [POST]",
                                                                     Allow="POST")),
    Case("options-without-cors", preflight("https://app.example.com"), 405, cors_headers(None)),
    Case("unknown-path", {"body": PROTO, "path": "/v1/spans"}, 404, nothing_delivered),
    Case("trailing-slash-is-another-path", {"body": PROTO, "path": "/v1/traces/"}, 404, nothing_delivered),

    # Compression.
    Case("gzip", {"body": gzip_of(ROOMY), "headers": {"Content-Encoding": "gzip"}}, 200,
         delivered(lambda: trace_service_pb2.ExportTraceServiceRequest.FromString(ROOMY))),
    Case("gzip-json", {"body": gzip_of(as_json(traces_doc())), "content_type": JSON,
                       "headers": {"Content-Encoding": "GZIP"}}, 200, delivered(expected_traces)),
    Case("gzip-two-members", {"body": gzip_of(PROTO[:40]) + gzip_of(PROTO[40:]),
                              "headers": {"Content-Encoding": "gzip"}}, 200,
         delivered(lambda: traces_request(spans=3))),
    Case("deflate-zlib", {"body": zlib.compress(ROOMY), "headers": {"Content-Encoding": "deflate"}}, 200,
         delivered(lambda: trace_service_pb2.ExportTraceServiceRequest.FromString(ROOMY))),
    Case("deflate-raw", {"body": deflate_raw(ROOMY), "headers": {"Content-Encoding": "deflate"}}, 200,
         delivered(lambda: trace_service_pb2.ExportTraceServiceRequest.FromString(ROOMY))),
    Case("identity", {"body": PROTO, "headers": {"Content-Encoding": "identity"}}, 200,
         delivered(lambda: traces_request(spans=3))),
    Case("gzip-chunked", {"body": gzip_of(ROOMY), "headers": {"Content-Encoding": "gzip"}, "chunked": True},
         200, delivered(lambda: trace_service_pb2.ExportTraceServiceRequest.FromString(ROOMY))),
    Case("gzip-corrupt", {"body": b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"not deflate at all",
                          "headers": {"Content-Encoding": "gzip"}}, 400,
         refused_with(grpc.StatusCode.INVALID_ARGUMENT, "cannot inflate the gzip request body")),
    Case("gzip-truncated", {"body": gzip_of(ROOMY)[:-20], "headers": {"Content-Encoding": "gzip"}}, 400,
         refused_with(grpc.StatusCode.INVALID_ARGUMENT, "truncated")),
    Case("gzip-trailing-garbage", {"body": gzip_of(PROTO) + b"garbage!", "headers": {"Content-Encoding": "gzip"}},
         400, refused_with(grpc.StatusCode.INVALID_ARGUMENT, "cannot inflate")),
    Case("deflate-trailing-data", {"body": zlib.compress(PROTO) + b"more", "headers": {"Content-Encoding": "deflate"}},
         400, refused_with(grpc.StatusCode.INVALID_ARGUMENT, "data after the end")),
    Case("unsupported-encoding", {"body": PROTO, "content_type": JSON, "headers": {"Content-Encoding": "br"}}, 400,
         refused_with(grpc.StatusCode.INVALID_ARGUMENT, 'unsupported Content-Encoding "br"')),
    Case("two-encodings", {"body": gzip_of(gzip_of(PROTO)), "headers": {"Content-Encoding": "gzip, gzip"}}, 400,
         refused_with(grpc.StatusCode.INVALID_ARGUMENT, "unsupported Content-Encoding")),

    # Size limits (64 KiB here), on the wire and inflated.
    Case("oversize-body", {"body": ROOMY}, 413,
         refused_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than the limit of 65536 bytes"),
         config={"max_request_body_size": 65536}),
    Case("oversize-chunked-body", {"body": ROOMY, "chunked": True}, 413,
         refused_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than the limit"),
         config={"max_request_body_size": 65536}),
    Case("oversize-json", {"body": ROOMY, "content_type": JSON}, 413,
         refused_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than the limit"),
         config={"max_request_body_size": 65536}),
    Case("gzip-inflates-past-limit", {"body": gzip_of(ROOMY), "headers": {"Content-Encoding": "gzip"}}, 413,
         refused_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "inflates to more than the limit of 65536 bytes"),
         config={"max_request_body_size": 65536}),
    Case("deflate-inflates-past-limit", {"body": zlib.compress(ROOMY), "headers": {"Content-Encoding": "deflate"}},
         413, refused_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "inflates to more"),
         config={"max_request_body_size": 65536}),
    Case("gzip-bomb", {"body": gzip_bomb, "headers": {"Content-Encoding": "gzip"}}, 413,
         refused_with(grpc.StatusCode.RESOURCE_EXHAUSTED, f"inflates to more than the limit of {20 * MIB} bytes")),
    Case("within-limit", {"body": PROTO}, 200, delivered(lambda: traces_request(spans=3)),
         config={"max_request_body_size": len(PROTO)}),

    # Pipeline failures, classified by relay.status.to_http.
    Case("retryable-with-delay", {"body": PROTO}, 503, retry_after("7"), error=RetryableError("full", retry_after=7)),
    Case("retryable-delay-rounded-up", {"body": PROTO}, 503, retry_after("1"),
         error=RetryableError("full", retry_after=0.2)),
    Case("retryable-json", {"body": as_json(traces_doc()), "content_type": JSON}, 503, retry_after("7", "full"),
         error=RetryableError("full", retry_after=7)),
    Case("retryable-without-delay", {"body": PROTO}, 503, retry_after(None, "busy"), error=RetryableError("busy")),
    Case("queue-full", {"body": PROTO}, 503, retry_after("2"), error=QueueFullError("queue is full", retry_after=2)),
    Case("shutting-down", {"body": PROTO}, 503, retry_after(None), error=ShutdownError("stopping")),
    Case("invalid-data", {"body": PROTO}, 400, refused_with(grpc.StatusCode.INVALID_ARGUMENT, "bad span"),
         error=InvalidDataError("bad span")),
    Case("too-large", {"body": PROTO}, 413, refused_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "over"),
         error=TooLargeError("over")),
    Case("permanent-invalid-argument", {"body": PROTO}, 400, refused_with(grpc.StatusCode.INVALID_ARGUMENT, "bad"),
         error=PermanentError("downstream: bad", status="INVALID_ARGUMENT")),
    Case("permanent-other", {"body": PROTO}, 500, refused_with(grpc.StatusCode.INTERNAL, "refused for good"),
         error=PermanentError("downstream refused for good", status="PERMISSION_DENIED")),
    Case("unexpected-exception", {"body": PROTO}, 503, retry_after(None, GENERIC), error=RuntimeError("a bug")),

    # CORS.
    Case("cors-preflight-allowed", preflight("https://app.example.com", headers="Content-Type, X-Tenant"), 204,
         cors_headers("https://app.example.com", Access_Control_Allow_Methods="POST",
                      Access_Control_Allow_Headers="Content-Type, X-Tenant", Access_Control_Max_Age="600"),
         config=CORS),
    Case("cors-preflight-exact-origin", preflight("http://localhost:3000"), 204,
         cors_headers("http://localhost:3000", Access_Control_Allow_Methods="POST",
                      Access_Control_Allow_Headers="content-type", Access_Control_Max_Age="600"), config=CORS),
    Case("cors-preflight-any-origin", preflight("https://anywhere.test"), 204,
         cors_headers("https://anywhere.test", Access_Control_Allow_Methods="POST",
                      Access_Control_Allow_Headers="content-type"), config={"cors": {"allowed_origins": ["*"]}}),
    Case("cors-preflight-origin-not-allowed", preflight("https://example.com.evil.test"), 204, cors_headers(None),
         config=CORS),
    Case("cors-preflight-header-not-allowed", preflight("https://app.example.com", headers="X-Other"), 204,
         cors_headers(None), config=CORS),
    Case("cors-preflight-method-not-allowed", preflight("https://app.example.com", method="PUT"), 204,
         cors_headers(None), config=CORS),
    Case("cors-post-allowed-origin", {"body": PROTO, "headers": {"Origin": "https://app.example.com"}}, 200,
         cors_headers("https://app.example.com"), config=CORS),
    Case("cors-error-allowed-origin", {"body": b"garbage", "headers": {"Origin": "https://app.example.com"}}, 400,
         cors_headers("https://app.example.com"), config=CORS),
    Case("cors-post-other-origin", {"body": PROTO, "headers": {"Origin": "https://evil.test"}}, 200,
         cors_headers(None), config=CORS),
    Case("cors-not-configured", {"body": PROTO, "headers": {"Origin": "https://app.example.com"}}, 200,
         cors_headers(None)),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_conformance(case: Case):
    consumer = FakeConsumer(case.error)

    async def run() -> Answer:
        async with Harness(all_signals(consumer), case.config) as h:
            answer = await h.send(**case.request)
            # Whatever happened, the receiver still takes a good request afterwards.
            consumer.error, before = None, len(consumer.received)
            assert (await h.send(PROTO)).status == 200
            del consumer.received[before:]
            return answer

    answer = asyncio.run(run())
    assert answer.status == case.status, answer
    media = (case.request.get("content_type", PROTOBUF) or "").split(";")[0].strip()
    if answer.status not in (204, 404, 405, 415):
        # Every export answer, success or refusal, is in the request's own content type.
        assert answer.content_type == media, answer
    if answer.status == 200:
        # An empty Export*ServiceResponse: full success.
        assert answer.body == (b"" if media == PROTOBUF else b"{}")
    if case.error is not None:
        assert answer.status == status.to_http(case.error)[0]
    if case.check is not None:
        case.check(answer, consumer)


# --- memory: the gzip bomb --------------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


class PeakMemory:
    """Peak resident memory growth from now on. Linux resets the high-water mark on
    request (clear_refs 5); elsewhere the process's lifetime peak is all there is."""

    def __init__(self):
        try:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")
            self.base, self.exact = _status_kib("VmRSS"), True
        except OSError:
            self.base, self.exact = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False

    def growth_bytes(self) -> int:
        peak = _status_kib("VmHWM") if self.exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (peak - self.base) * 1024


def test_gzip_bomb_is_refused_without_holding_it_inflated():
    bomb = gzip_bomb()  # 1 GiB of zeros
    assert len(bomb) < 2 * MIB
    consumer = FakeConsumer()

    async def run():
        async with Harness(all_signals(consumer)) as h:  # the default limit, 20 MiB
            memory = PeakMemory()
            # Inflating stops at the limit, not at the end of the bomb: the answer comes before this deadline.
            answer = await asyncio.wait_for(h.send(bomb, headers={"Content-Encoding": "gzip"}), 15)
            return answer, memory.growth_bytes(), h.refused_requests(Signal.TRACES, 413)

    answer, growth, refusals = asyncio.run(run())
    assert answer.status == 413
    assert answer.rpc_status().code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    # Inflating it whole would take a GiB; stopping at the limit takes about 20 MiB.
    assert growth < 200 * MIB, f"resident memory grew by {growth / MIB:.0f} MiB"
    assert refusals == 1
    assert consumer.received == []


# --- fixtures, counting, metadata ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, signal, path", [
    ("traces_llm", Signal.TRACES, "/v1/traces"),
    ("metrics", Signal.METRICS, "/v1/metrics"),
    ("logs", Signal.LOGS, "/v1/logs"),
])
def test_json_fixtures_arrive_equal_to_their_protobuf_twins(name, signal, path):
    folder = fixtures.fixtures_dir()
    as_json_text, as_protobuf = (folder / f"{name}.json").read_bytes(), (folder / f"{name}.binpb").read_bytes()
    consumer = FakeConsumer()

    async def run():
        async with Harness({signal: consumer}) as h:
            answers = [await h.send(as_json_text, JSON, path), await h.send(as_protobuf, PROTOBUF, path),
                       await h.send(gzip_of(as_json_text), JSON, path, headers={"Content-Encoding": "gzip"})]
            assert [a.status for a in answers] == [200, 200, 200]
            assert [a.content_type for a in answers] == [JSON, PROTOBUF, JSON]
            assert h.accepted(signal) == 3 * signal.count(fixtures.load(name))

    asyncio.run(run())
    twin = fixtures.load(name)
    assert consumer.received == [twin, twin, twin]
    assert all(type(r) is signal.request_type for r in consumer.received)
    # Only the protobuf body is the wire form, bound for exporters to forward as is.
    assert consumer.raw == [None, as_protobuf, None]


def test_each_signal_reaches_its_own_consumer_and_is_counted():
    consumers = {signal: FakeConsumer() for signal in Signal}
    requests = {Signal.TRACES: traces_request(2), Signal.METRICS: metrics_request(), Signal.LOGS: logs_request(),
                Signal.PROFILES: profiles_request()}
    paths = {Signal.TRACES: "/v1/traces", Signal.METRICS: "/v1/metrics", Signal.LOGS: "/v1/logs",
             Signal.PROFILES: "/v1development/profiles"}

    async def run():
        async with Harness(consumers) as h:
            for signal, request in requests.items():
                answer = await h.send(request.SerializeToString(), path=paths[signal])
                assert answer.status == 200
            # Profiles count in samples, as the collector counts them.
            assert [h.accepted(s) for s in Signal] == [2, 5, 4, 4]
            assert [h.accepted(s, "grpc") for s in Signal] == [0, 0, 0, 0]

    asyncio.run(run())
    for signal, consumer in consumers.items():
        assert consumer.received == [requests[signal]]


def test_refusals_are_counted_like_the_grpc_receiver():
    consumer = FakeConsumer()

    async def run():
        async with Harness(all_signals(consumer), {"max_request_body_size": 65536}) as h:
            consumer.error = RetryableError("full", retry_after=1)
            assert (await h.send(traces_request(3).SerializeToString())).status == 503
            consumer.error = RuntimeError("bug")
            assert (await h.send(traces_request(2).SerializeToString())).status == 503
            consumer.error = InvalidDataError("bad")
            assert (await h.send(traces_request(1).SerializeToString())).status == 400
            consumer.error = None
            assert (await h.send(b"garbage")).status == 400
            assert (await h.send(ROOMY)).status == 413
            assert (await h.send(PROTO, "text/plain")).status == 415
            assert (await h.send(method="GET")).status == 405  # not an export: not counted
            logs = logs_request().SerializeToString()
            consumer.error = RetryableError("later")
            assert (await h.send(logs, path="/v1/logs")).status == 503
            consumer.error = None
            assert (await h.send(logs, path="/v1/logs")).status == 200
            return ({reason: h.refused(Signal.TRACES, reason)
                     for reason in ("RetryableError", "RuntimeError", "InvalidDataError")},
                    {code: h.refused_requests(Signal.TRACES, code) for code in (400, 413, 415, 503)},
                    h.accepted(Signal.TRACES), h.refused(Signal.LOGS, "RetryableError"), h.accepted(Signal.LOGS),
                    h.refused_requests(Signal.LOGS, 503))

    items, requests, accepted, logs_refused, logs_accepted, logs_requests = asyncio.run(run())
    # Items are counted when the pipeline refused them; a body too broken to count adds none.
    assert items == {"RetryableError": 3, "RuntimeError": 2, "InvalidDataError": 1}
    assert requests == {400: 2, 413: 1, 415: 1, 503: 2}
    assert accepted == 0
    assert (logs_refused, logs_accepted, logs_requests) == (4, 4, 1)


def test_unexpected_exception_is_logged_with_its_traceback(component_log):
    consumer = FakeConsumer(RuntimeError("a bug in a processor"))

    async def run():
        async with Harness(all_signals(consumer)) as h:
            return await h.send(PROTO)

    answer = asyncio.run(run())
    assert answer.status == 503 and answer.rpc_status().message == GENERIC
    record = next(r for r in component_log.records if r.getMessage() == "pipeline failed unexpectedly")
    assert record.exc_info is not None and "a bug in a processor" in str(record.exc_info[1])
    assert record.fields == {"signal": "traces", "items": 3}


def test_include_metadata_binds_the_headers_and_the_peer():
    with_metadata, without = FakeConsumer(), FakeConsumer()

    async def run():
        async with Harness(all_signals(with_metadata), {"include_metadata": True}) as h:
            assert (await h.send(PROTO, headers={"X-Tenant": "acme", "X-Multi": "a"})).status == 200
        async with Harness(all_signals(without)) as h:
            assert (await h.send(PROTO, headers={"X-Tenant": "acme"})).status == 200
        return client.current()

    outside = asyncio.run(run())
    info = with_metadata.clients[0]
    assert info.get("X-Tenant") == ("acme",)
    assert info.metadata["content-type"] == (PROTOBUF,)
    assert info.address == "127.0.0.1"
    assert without.clients[0] == client.ClientInfo()
    assert outside == client.ClientInfo()


def test_received_bytes_are_the_inflated_protobuf_body():
    consumer = FakeConsumer()

    async def run():
        async with Harness(all_signals(consumer)) as h:
            assert (await h.send(gzip_of(PROTO), headers={"Content-Encoding": "gzip"})).status == 200
            assert (await h.send(as_json(traces_doc()), JSON)).status == 200

    asyncio.run(run())
    assert consumer.raw == [PROTO, None]


# --- paths, protocols, lifecycle ----------------------------------------------------------------------------

def test_url_paths_are_configurable_and_unserved_signals_are_not_found():
    traces, logs = FakeConsumer(), FakeConsumer()

    async def run():
        settings = {"traces_url_path": "custom/traces", "logs_url_path": "/otlp/logs"}
        async with Harness({Signal.TRACES: traces, Signal.LOGS: logs}, settings) as h:
            assert (await h.send(PROTO, path="/custom/traces")).status == 200
            assert (await h.send(logs_request().SerializeToString(), path="/otlp/logs")).status == 200
            assert (await h.send(PROTO, path="/v1/traces")).status == 404
            assert (await h.send(metrics_request().SerializeToString(), path="/v1/metrics")).status == 404

    asyncio.run(run())
    assert len(traces.received) == 1 and logs.received == [logs_request()]


def test_one_receiver_serves_grpc_and_http():
    consumer = FakeConsumer()

    async def run():
        async with Harness(all_signals(consumer), grpc_settings={}) as h:
            assert isinstance(h.receiver, otlp.OtlpReceiver)
            assert (await h.send(PROTO)).status == 200
            async with grpc.aio.insecure_channel(f"127.0.0.1:{h.receiver.grpc.port}") as channel:
                await channel.unary_unary(Signal.TRACES.method)(traces_request(2).SerializeToString(), timeout=10)
            counts = h.accepted(Signal.TRACES, "http"), h.accepted(Signal.TRACES, "grpc")
            ports = h.receiver.grpc.port, h.receiver.http.port
        return counts, ports

    counts, ports = asyncio.run(run())
    assert counts == (3, 2)
    assert len(consumer.received) == 2
    for port in ports:  # both stopped listening
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_http_that_cannot_listen_stops_grpc_too():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config, problems = decode(otlp.Config, {"protocols": {
            "grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": f"127.0.0.1:{port}"}}})
        assert problems == []
        receiver = otlp.create(Settings(ComponentID.parse(RECEIVER), SelfMetrics(CollectorRegistry())), config, all_signals(FakeConsumer()))

        async def run():
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
                await receiver.start()
            return receiver.grpc.port

        grpc_port = asyncio.run(run())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", grpc_port), timeout=2).close()


async def _refuses_connections(port: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return True
        writer.close()
        await asyncio.sleep(0.01)
    return False


def test_shutdown_stops_accepting_and_lets_requests_in_flight_finish():
    consumer = FakeConsumer()

    async def run():
        consumer.gate = asyncio.Event()
        async with Harness(all_signals(consumer)) as h:
            in_flight = asyncio.create_task(h.send(PROTO))
            await asyncio.wait_for(consumer.entered.wait(), 10)
            stopping = asyncio.create_task(h.receiver.shutdown(grace=10))
            assert await _refuses_connections(h.http.port)
            assert not stopping.done()  # still waiting for the request in flight
            consumer.gate.set()
            answer = await asyncio.wait_for(in_flight, 10)
            await asyncio.wait_for(stopping, 10)
            return answer, h.accepted(Signal.TRACES)

    answer, accepted = asyncio.run(run())
    assert answer.status == 200
    assert accepted == 3


def test_shutdown_grace_ends_requests_that_do_not_finish():
    consumer = FakeConsumer()

    async def run():
        consumer.gate = asyncio.Event()  # never set
        async with Harness(all_signals(consumer)) as h:
            in_flight = asyncio.create_task(h.send(PROTO))
            await asyncio.wait_for(consumer.entered.wait(), 10)
            # The grace is 0.2 s: a shutdown waiting on the stuck call would miss this deadline.
            await asyncio.wait_for(h.receiver.shutdown(grace=0.2), 5)
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(in_flight, 10)
            return h.accepted(Signal.TRACES)

    accepted = asyncio.run(run())
    assert accepted == 0


# --- configuration ------------------------------------------------------------------------------------------

def test_an_empty_http_section_means_on_with_defaults():
    config, problems = decode(otlp.Config, {"protocols": {"http": None}})
    assert problems == []
    http = config.protocols.http
    assert config.protocols.grpc is None
    assert (http.endpoint, http.max_request_body_size, http.include_metadata, http.cors) == (
        "0.0.0.0:4318", 20 * MIB, False, None)
    assert [http.url_path(s) for s in Signal] == ["/v1/traces", "/v1/metrics", "/v1/logs", "/v1development/profiles"]
    assert http.body_limit() == 20 * MIB
    text = ("receivers:\n  otlp:\n    protocols:\n      grpc:\n      http:\n"
            "exporters:\n  debug:\n"
            "service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n")
    loaded = load(text, Registry().add("receivers", otlp).add("exporters", debug), env={})
    protocols = loaded.components["receivers"][ComponentID("otlp")].protocols
    assert protocols.http == otlp.HttpConfig() and protocols.grpc == otlp.GrpcConfig()


def test_zero_body_size_means_the_default_and_cors_section_defaults():
    config, problems = decode(otlp.Config, {"protocols": {"http": {"max_request_body_size": 0, "cors": None}}})
    assert problems == []
    assert config.protocols.http.body_limit() == 20 * MIB
    assert config.protocols.http.cors == otlp.CorsConfig([], [], 0)


@pytest.mark.parametrize("protocols, expected", [
    ({"http": {"endpoint": "nowhere"}}, ['protocols::http::endpoint: "nowhere" is not a host:port endpoint']),
    ({"http": {"max_request_body_size": -1}}, ["protocols::http::max_request_body_size: must not be negative (0 means the default)"]),
    ({"http": {"logs_url_path": "/v1/traces"}},
     ['protocols::http::logs_url_path: "/v1/traces" is already the traces_url_path']),
    ({"http": {"metrics_url_path": "/v1/metrics?x=1"}},
     ['protocols::http::metrics_url_path: "/v1/metrics?x=1" is not a URL path']),
    ({"http": {"cors": {"allowed_origins": [""], "max_age": -5}}},
     ["protocols::http::cors::allowed_origins::0: must not be empty",
      "protocols::http::cors::max_age: must not be negative"]),
    ({"http": {"cors": {"allowed_origins": "*"}}},
     ["protocols::http::cors::allowed_origins: expected a list, got string"]),
    ({"http": {"compression": "zstd"}},
     [("protocols::http::compression: unknown key (valid keys: auth, cors, endpoint, idle_timeout, "
       "include_metadata, logs_url_path, max_connections, max_request_body_size, metrics_url_path, "
       "read_header_timeout, read_timeout, tls, traces_url_path, write_timeout)")]),
    ({"grpc": {"endpoint": "0.0.0.0:4317"}, "http": {"endpoint": "0.0.0.0:4317"}},
     ["protocols::http::endpoint: is the same as the grpc endpoint"]),
    ({}, ["protocols: at least one protocol must be configured (grpc, http)"]),
], ids=["endpoint", "body-size", "duplicate-path", "query-in-path", "cors", "cors-origins-not-a-list",
        "unknown-key", "same-endpoint-as-grpc", "no-protocol"])
def test_invalid_http_settings_are_reported_by_key_path(protocols, expected):
    _, problems = decode(otlp.Config, {"protocols": protocols})
    assert [str(p) for p in problems] == expected
