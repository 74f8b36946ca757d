"""Conformance of the ``zipkin`` receiver, on a real listener on a free loopback port.

Expected values are the facts of Zipkin's API (the v2 example span of Zipkin's README and API
spec, and the same span in Zipkin's v1 model) and of the collector's zipkin translator
(``pkg/translator/zipkin``): which tag becomes which OTLP field. The real OpenTelemetry Zipkin
exporters (``opentelemetry-exporter-zipkin-json`` v1 and v2, ``-proto-http``) send SDK spans,
and what the pipeline got is checked against what the SDK recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import importlib.util
import json
import os
import sys
import threading
import zlib
from dataclasses import dataclass, field

import aiohttp
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from relay.component import ComponentID
from relay.config.decode import decode
from relay.errors import ConfigError, InvalidDataError, PermanentError, RetryableError
from relay.net import body
from relay.receivers import zipkin
from relay.receivers.zipkin import proto, translate
from relay.receivers.zipkin.server import ZipkinReceiver
from relay.telemetry import SelfMetrics
from tests.support import ROOT

Span = trace_pb2.Span
Status = trace_pb2.Status
V2, V1 = "/api/v2/spans", "/api/v1/spans"
JSON, PROTOBUF = "application/json", "application/x-protobuf"

# The span of Zipkin's README ("curl -X POST localhost:9411/api/v2/spans") and of the example in
# its API spec (zipkin2-api.yaml).
README_SPAN = {
    "id": "352bff9a74ca9ad2", "traceId": "5af7183fb1d4cf5f", "parentId": "6b221d5bc9e6496c",
    "name": "get /api", "timestamp": 1556604172355737, "duration": 1431, "kind": "SERVER",
    "localEndpoint": {"serviceName": "backend", "ipv4": "192.168.99.1", "port": 3306},
    "remoteEndpoint": {"ipv4": "172.19.0.2", "port": 58648},
    "tags": {"http.method": "GET", "http.path": "/api"},
}
BACKEND = {"serviceName": "backend", "ipv4": "192.168.99.1", "port": 3306}
# The same span in Zipkin's v1 model: a server span is its "sr" and "ss" core annotations on the
# local endpoint, and the client's address a "ca" address annotation.
README_SPAN_V1 = {
    "traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "parentId": "6b221d5bc9e6496c", "name": "get /api",
    "timestamp": 1556604172355737, "duration": 1431,
    "annotations": [{"timestamp": 1556604172355737, "value": "sr", "endpoint": BACKEND},
                    {"timestamp": 1556604172357168, "value": "ss", "endpoint": BACKEND}],
    "binaryAnnotations": [{"key": "http.method", "value": "GET", "endpoint": BACKEND},
                          {"key": "http.path", "value": "/api", "endpoint": BACKEND},
                          {"key": "ca", "value": True, "endpoint": {"ipv4": "172.19.0.2", "port": 58648}}],
}


# --- harness ----------------------------------------------------------------------------------

class Recorder:
    """The pipeline: records each request, or raises ``error``."""

    def __init__(self, error: BaseException | None = None):
        self.requests = []
        self.error = error

    async def consume(self, request) -> None:
        if self.error is not None:
            raise self.error
        self.requests.append(request)


@dataclass
class Answer:
    status: int
    text: str
    headers: dict = field(default_factory=dict)


@contextlib.asynccontextmanager
async def running(recorder: Recorder, tls_context=None, **settings):
    config, problems = decode(zipkin.Config, {"endpoint": "127.0.0.1:0", **settings})
    assert problems == []
    metrics = SelfMetrics()
    receiver = ZipkinReceiver(ComponentID("zipkin"), config, recorder, metrics)
    await receiver.start()
    try:
        yield Client(receiver.port, tls_context), metrics
    finally:
        await receiver.shutdown()


class Client:
    def __init__(self, port: int, tls_context=None):
        scheme = "https" if tls_context is not None else "http"
        self.base = f"{scheme}://{'localhost' if tls_context is not None else '127.0.0.1'}:{port}"
        self.tls = tls_context

    async def post(self, path: str, data, content_type: str | None = JSON, method: str = "POST",
                   **headers) -> Answer:
        if isinstance(data, (list, dict)):
            data = json.dumps(data).encode()
        if content_type is not None:
            headers["Content-Type"] = content_type
        async with aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("Content-Type",)) as session:
            async with session.request(method, self.base + path, data=data, headers=headers,
                                       ssl=self.tls if self.tls is not None else None,
                                       timeout=aiohttp.ClientTimeout(total=20)) as response:
                return Answer(response.status, await response.text(), dict(response.headers))


def post_once(path: str, data, content_type: str | None = JSON, recorder: Recorder | None = None, settings=None,
              **headers) -> tuple[Answer, Recorder, SelfMetrics]:
    recorder = recorder or Recorder()

    async def run():
        async with running(recorder, **(settings or {})) as (client, metrics):
            return await client.post(path, data, content_type, **headers), metrics

    answer, metrics = asyncio.run(run())
    return answer, recorder, metrics


def value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def attributes(key_values) -> dict:
    return {kv.key: value(kv.value) for kv in key_values}


def only_span(recorder: Recorder) -> Span:
    [request] = recorder.requests
    [resource_spans] = request.resource_spans
    [scope_spans] = resource_spans.scope_spans
    [span] = scope_spans.spans
    return span


def sample(metrics: SelfMetrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# --- (a) Zipkin's published examples ------------------------------------------------------------

def check_readme_span(recorder: Recorder, answer: Answer) -> None:
    assert (answer.status, answer.text) == (202, "")
    [request] = recorder.requests
    [resource_spans] = request.resource_spans
    assert attributes(resource_spans.resource.attributes) == {"service.name": "backend"}
    [scope_spans] = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("", "")
    [span] = scope_spans.spans
    # A 64-bit Zipkin trace id is the low half of the 128-bit OTLP one.
    assert span.trace_id == bytes(8) + bytes.fromhex("5af7183fb1d4cf5f")
    assert span.span_id == bytes.fromhex("352bff9a74ca9ad2")
    assert span.parent_span_id == bytes.fromhex("6b221d5bc9e6496c")
    assert span.name == "get /api"
    assert span.kind == Span.SPAN_KIND_SERVER
    assert span.start_time_unix_nano == 1556604172355737 * 1000
    assert span.end_time_unix_nano == (1556604172355737 + 1431) * 1000
    assert attributes(span.attributes) == {
        "http.method": "GET", "http.path": "/api",
        "net.host.ip": "192.168.99.1", "net.host.port": 3306, "net.peer.ip": "172.19.0.2", "net.peer.port": 58648}
    assert span.status.code == Status.STATUS_CODE_UNSET and span.status.message == ""
    assert (span.trace_state, len(span.events), len(span.links)) == ("", 0, 0)


def test_the_readme_span_as_zipkin_v2_json():
    answer, recorder, metrics = post_once(V2, [README_SPAN])
    check_readme_span(recorder, answer)
    assert sample(metrics, "otelcol_receiver_accepted_spans_total", receiver="zipkin", transport="http_v2_json") == 1


def test_the_readme_span_in_zipkin_v1_json():
    answer, recorder, metrics = post_once(V1, [README_SPAN_V1])
    check_readme_span(recorder, answer)
    assert sample(metrics, "otelcol_receiver_accepted_spans_total", receiver="zipkin", transport="http_v1_json") == 1


def test_the_readme_span_as_zipkin_protobuf():
    span = proto.Span(
        trace_id=bytes.fromhex("5af7183fb1d4cf5f"), parent_id=bytes.fromhex("6b221d5bc9e6496c"),
        id=bytes.fromhex("352bff9a74ca9ad2"), kind=2, name="get /api", timestamp=1556604172355737, duration=1431,
        local_endpoint=proto.Endpoint(service_name="backend", ipv4=bytes([192, 168, 99, 1]), port=3306),
        remote_endpoint=proto.Endpoint(ipv4=bytes([172, 19, 0, 2]), port=58648),
        tags={"http.method": "GET", "http.path": "/api"})
    body = proto.ListOfSpans(spans=[span]).SerializeToString()
    answer, recorder, metrics = post_once(V2, body, PROTOBUF)
    check_readme_span(recorder, answer)
    assert sample(metrics, "otelcol_receiver_accepted_spans_total", receiver="zipkin", transport="http_v2_proto") == 1


def test_a_v1_span_without_a_timestamp_spans_its_annotations_and_keeps_the_others_as_events():
    span = {"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "name": "query",
            "annotations": [{"timestamp": 100, "value": "cs", "endpoint": {"serviceName": "frontend"}},
                            {"timestamp": 150, "value": "wire.send", "endpoint": {"serviceName": "frontend"}},
                            {"timestamp": 400, "value": "cr", "endpoint": {"serviceName": "frontend"}}],
            "binaryAnnotations": [{"key": "lc", "value": "jdbc"},
                                  {"key": "sa", "value": True, "endpoint": {"serviceName": "mysql", "port": 3306}}]}
    answer, recorder, _ = post_once(V1, [span])
    assert answer.status == 202
    [resource_spans] = recorder.requests[0].resource_spans
    assert attributes(resource_spans.resource.attributes) == {"service.name": "frontend"}
    span = only_span(recorder)
    assert span.kind == Span.SPAN_KIND_CLIENT
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (100_000, 400_000)
    assert [(e.name, e.time_unix_nano) for e in span.events] == [("wire.send", 150_000)]
    assert attributes(span.attributes) == {"component": "jdbc", "peer.service": "mysql", "net.peer.port": 3306}


# What each Zipkin field and tag becomes, by the collector's zipkinv2 translator.
TRANSLATIONS = [
    pytest.param({"traceId": "463ac35c9f6413ad48485a3953bb6124"},
                 lambda s: s.trace_id == bytes.fromhex("463ac35c9f6413ad48485a3953bb6124"), id="128-bit trace id"),
    pytest.param({"kind": "CLIENT"}, lambda s: s.kind == Span.SPAN_KIND_CLIENT, id="client"),
    pytest.param({"kind": "PRODUCER"}, lambda s: s.kind == Span.SPAN_KIND_PRODUCER, id="producer"),
    pytest.param({"kind": "CONSUMER"}, lambda s: s.kind == Span.SPAN_KIND_CONSUMER, id="consumer"),
    pytest.param({"kind": None, "tags": {"span.kind": "internal"}},
                 lambda s: s.kind == Span.SPAN_KIND_INTERNAL and attributes(s.attributes) == {}, id="internal"),
    pytest.param({"kind": None}, lambda s: s.kind == Span.SPAN_KIND_UNSPECIFIED, id="no kind"),
    pytest.param({"parentId": "352bff9a74ca9ad2"}, lambda s: s.parent_span_id == b"", id="parent is itself"),
    pytest.param({"parentId": None}, lambda s: s.parent_span_id == b"", id="root"),
    pytest.param({"parentId": "0000000000000000"}, lambda s: s.parent_span_id == b"", id="zero parent is a root"),
    pytest.param({"timestamp": None, "duration": 20},
                 lambda s: (s.start_time_unix_nano, s.end_time_unix_nano) == (0, 20_000)
                 and attributes(s.attributes) == {"otel.zipkin.absentField.startTime": True}, id="no timestamp"),
    pytest.param({"localEndpoint": {"serviceName": "db", "ipv6": "2001:db8::c001"},
                  "remoteEndpoint": {"serviceName": "mysql", "ipv6": "2001:db8::1", "port": 3306}},
                 lambda s: attributes(s.attributes) == {"net.host.ip": "2001:db8::c001", "peer.service": "mysql",
                                                        "net.peer.ip": "2001:db8::1", "net.peer.port": 3306},
                 id="ipv6 and remote service"),
    pytest.param({"tags": {"otel.status_code": "STATUS_CODE_ERROR", "otel.status_description": "boom"}},
                 lambda s: (s.status.code, s.status.message) == (Status.STATUS_CODE_ERROR, "boom")
                 and attributes(s.attributes) == {}, id="otel.status_code"),
    pytest.param({"tags": {"otel.status_code": "Ok"}},
                 lambda s: s.status.code == Status.STATUS_CODE_OK, id="otel.status_code Ok"),
    pytest.param({"tags": {"error": "true"}},
                 lambda s: s.status.code == Status.STATUS_CODE_ERROR and attributes(s.attributes) == {},
                 id="error tag"),
    pytest.param({"tags": {"error": "connection reset"}},
                 lambda s: s.status.code == Status.STATUS_CODE_UNSET
                 and attributes(s.attributes) == {"error": "connection reset"}, id="error tag not true"),
    pytest.param({"tags": {"w3c.tracestate": "rojo=00f067aa0ba902b7"}},
                 lambda s: s.trace_state == "rojo=00f067aa0ba902b7" and attributes(s.attributes) == {},
                 id="tracestate"),
    pytest.param({"annotations": [{"timestamp": 1556604172355800, "value": "wire send"}]},
                 lambda s: [(e.name, e.time_unix_nano, len(e.attributes)) for e in s.events]
                 == [("wire send", 1556604172355800000, 0)], id="annotation"),
    pytest.param({"annotations": [{"timestamp": 5, "value": 'retry|{"attempt":2,"why":"timeout"}|1'}]},
                 lambda s: [(e.name, attributes(e.attributes), e.dropped_attributes_count) for e in s.events]
                 == [("retry", {"attempt": 2, "why": "timeout"}, 1)], id="collector event form"),
    pytest.param({"annotations": [{"timestamp": 5, "value": "a|b"}]},
                 lambda s: [e.name for e in s.events] == ["a|b"], id="annotation with a pipe"),
    pytest.param({"tags": {"otlp.link.0": '463ac35c9f6413ad48485a3953bb6124|b7ad6b7169203331|k=v|{"a":"b"}|3'}},
                 lambda s: [(link.trace_id.hex(), link.span_id.hex(), link.trace_state, attributes(link.attributes),
                             link.dropped_attributes_count) for link in s.links]
                 == [("463ac35c9f6413ad48485a3953bb6124", "b7ad6b7169203331", "k=v", {"a": "b"}, 3)]
                 and attributes(s.attributes) == {}, id="link"),
    pytest.param({"tags": {"n": "42", "d": "1.5", "b": "true", "s": "4x"}},
                 lambda s: attributes(s.attributes) == {"n": "42", "d": "1.5", "b": "true", "s": "4x"},
                 id="tags stay strings"),
    pytest.param({"shared": True, "debug": True}, lambda s: attributes(s.attributes) == {}, id="shared and debug"),
    # Hostile packed forms are no packed form: the value stays the event's name, whole.
    pytest.param({"annotations": [{"timestamp": 5, "value": "e|{}|" + "1" * 5000}]},
                 lambda s: [e.name for e in s.events] == ["e|{}|" + "1" * 5000], id="5000-digit dropped count"),
    pytest.param({"annotations": [{"timestamp": 5, "value": 'e|{"a":1' + "0" * 400 + "}|0"}]},
                 lambda s: [e.name for e in s.events] == ['e|{"a":1' + "0" * 400 + "}|0"],
                 id="integer past a double"),
    pytest.param({"annotations": [{"timestamp": 5, "value": '{"a":' + "[" * 100_000}]},
                 lambda s: [len(e.name) for e in s.events] == [5 + 100_000], id="deep packed json"),
]


@pytest.mark.parametrize("changes, holds", TRANSLATIONS)
def test_each_field_translates_as_the_collector_translates_it(changes, holds):
    span = {"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "name": "op", "timestamp": 10, "duration": 5,
            "kind": "SERVER", **changes}
    span = {key: v for key, v in span.items() if v is not None}
    answer, recorder, _ = post_once(V2, [span])
    assert answer.status == 202, answer.text
    assert holds(only_span(recorder))


def test_parse_string_tags_types_numbers_and_booleans():
    span = {**README_SPAN, "tags": {"n": "42", "neg": "-7", "d": "1.5", "b": "false", "s": "4x", "big": "9" * 30}}
    answer, recorder, _ = post_once(V2, [span], settings={"parse_string_tags": True})
    assert answer.status == 202
    got = attributes(only_span(recorder).attributes)
    assert {k: got[k] for k in span["tags"]} == {"n": 42, "neg": -7, "d": 1.5, "b": False, "s": "4x", "big": "9" * 30}


def test_parse_string_tags_keeps_a_number_of_thousands_of_digits_a_string():
    # Past Python's 4300-digit limit int() raises, where Go's ParseInt says "out of range".
    span = {**README_SPAN, "tags": {"huge": "9" * 5000, "plus": "+5", "padded": "0" * 5000 + "7"}}
    answer, recorder, _ = post_once(V2, [span], settings={"parse_string_tags": True})
    assert answer.status == 202, answer.text
    got = attributes(only_span(recorder).attributes)
    assert {k: got[k] for k in span["tags"]} == {"huge": "9" * 5000, "plus": "+5", "padded": 7}


def test_spans_are_grouped_by_service_and_resource_tags_and_then_by_scope():
    def span(i: int, service: str | None, **tags):
        out = {"traceId": "5af7183fb1d4cf5f", "id": f"{i:016x}", "name": f"s{i}", "timestamp": 10, "tags": tags}
        if service is not None:
            out["localEndpoint"] = {"serviceName": service}
        return out

    spans = [span(1, "api", **{"otel.library.name": "http", "otel.library.version": "1.0"}),
             span(2, "db"),
             span(3, "api", **{"otel.scope.name": "grpc", "otel.library.name": "old-name"}),
             span(4, "api", **{"otel.library.name": "http", "otel.library.version": "1.0"}),
             span(5, "api", **{"host.name": "web-2", "otlp.service.name.source": "peer.service"}),
             span(6, None, **{"custom": "x"})]
    answer, recorder, metrics = post_once(V2, spans)
    assert answer.status == 202
    [request] = recorder.requests
    layout = [(attributes(rs.resource.attributes),
               [((ss.scope.name, ss.scope.version), [s.name for s in ss.spans]) for ss in rs.scope_spans])
              for rs in request.resource_spans]
    assert layout == [
        ({"service.name": "api"}, [(("http", "1.0"), ["s1", "s4"]), (("grpc", ""), ["s3"])]),
        ({"service.name": "db"}, [(("", ""), ["s2"])]),
        ({"peer.service": "api", "host.name": "web-2"}, [(("", ""), ["s5"])]),
        ({}, [(("", ""), ["s6"])]),
    ]
    spans_out = {s.name: s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}
    assert attributes(spans_out["s3"].attributes) == {} and attributes(spans_out["s6"].attributes) == {"custom": "x"}
    assert sample(metrics, "otelcol_receiver_accepted_spans_total", receiver="zipkin", transport="http_v2_json") == 6


@pytest.mark.parametrize("encoding, pack", [("gzip", gzip.compress), ("deflate", zlib.compress),
                                            ("deflate", lambda b: zlib.compress(b)[2:-4])],
                         ids=["gzip", "deflate", "raw deflate"])
def test_compressed_bodies_are_inflated(encoding, pack):
    answer, recorder, _ = post_once(V2, pack(json.dumps([README_SPAN]).encode()), **{"Content-Encoding": encoding})
    check_readme_span(recorder, answer)


def test_a_request_without_a_content_type_is_read_as_json():
    answer, recorder, _ = post_once(V2, [README_SPAN], content_type=None)
    check_readme_span(recorder, answer)


def test_an_empty_array_is_accepted_and_nothing_is_passed_on():
    answer, recorder, _ = post_once(V2, [])
    assert (answer.status, recorder.requests) == (202, [])


# --- (b) the real OpenTelemetry Zipkin exporters --------------------------------------------------

# Resource attributes the SDK sets that are resource semantic conventions: the exporters send
# them as tags, and the translator moves them back to the resource. Others stay span attributes.
RESOURCE_CONVENTIONS = {"service.name", "service.version", "service.instance.id", "deployment.environment",
                        "telemetry.sdk.language", "telemetry.sdk.name", "telemetry.sdk.version"}
EXPORTERS = [pytest.param("json-v2", V2, "opentelemetry.exporter.zipkin.json", id="json v2"),
             pytest.param("json-v1", V1, "opentelemetry.exporter.zipkin.json", id="json v1"),
             pytest.param("proto", V2, "opentelemetry.exporter.zipkin.proto.http", id="protobuf")]


def micros(nanos: int) -> int:
    """Zipkin's unit: the exporters round nanoseconds to the nearest microsecond."""
    return (nanos + 500) // 1000


def tag(value) -> str:
    """An attribute as a Zipkin string tag (OpenTelemetry's Zipkin mapping: arrays as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"))
    return str(value)


async def run_exporter(protocol: str, url: str) -> dict:
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.zipkin_sdk_client", protocol, url, cwd=str(ROOT), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()[-3000:]
    return json.loads(out)


@pytest.mark.parametrize("protocol, path, package", EXPORTERS)
def test_the_opentelemetry_zipkin_exporters_deliver_what_the_sdk_recorded(protocol, path, package):
    if importlib.util.find_spec(package) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{package} is not installed: .ci/run installs it", pytrace=False)
        pytest.skip(f"{package} is not installed")
    recorder = Recorder()

    async def run():
        async with running(recorder) as (client, metrics):
            return await run_exporter(protocol, client.base + path), metrics

    sent, metrics = asyncio.run(run())
    assert sent["result"] == "SUCCESS"
    [request] = recorder.requests
    [resource_spans] = request.resource_spans
    resource = sent["resource"]
    assert attributes(resource_spans.resource.attributes) == {
        key: tag(v) for key, v in resource.items() if key in RESOURCE_CONVENTIONS}
    [scope_spans] = resource_spans.scope_spans
    got = {span.span_id.hex(): span for span in scope_spans.spans}
    assert len(got) == len(sent["spans"]) == 3
    v2_kinds = {"SERVER": Span.SPAN_KIND_SERVER, "CLIENT": Span.SPAN_KIND_CLIENT,
                "INTERNAL": Span.SPAN_KIND_UNSPECIFIED}  # Zipkin has no internal kind: the exporters send none
    for expected in sent["spans"]:
        span = got[expected["span_id"]]
        assert [scope_spans.scope.name, scope_spans.scope.version] == expected["scope"]
        assert span.trace_id.hex() == expected["trace_id"]
        assert span.parent_span_id.hex() == (expected["parent_id"] or "")
        assert span.name == expected["name"]
        # The v1 exporter writes no core annotations, so a v1 span has no kind.
        assert span.kind == (Span.SPAN_KIND_UNSPECIFIED if protocol == "json-v1" else v2_kinds[expected["kind"]])
        start = micros(expected["start"]) * 1000
        assert (span.start_time_unix_nano, span.end_time_unix_nano) == (
            start, start + micros(expected["end"] - expected["start"]) * 1000)
        assert attributes(span.attributes) == {
            **{key: tag(v) for key, v in expected["attributes"].items()},
            **{key: tag(v) for key, v in resource.items() if key not in RESOURCE_CONVENTIONS},
            "net.host.ip": "10.1.2.3", "net.host.port": 31313}
        code, description = expected["status"]
        assert span.status.code == {"UNSET": Status.STATUS_CODE_UNSET, "OK": Status.STATUS_CODE_OK,
                                    "ERROR": Status.STATUS_CODE_ERROR}[code]
        assert span.status.message == (description or "")
        assert [(e.name, e.time_unix_nano, attributes(e.attributes)) for e in span.events] == [
            (e["name"], micros(e["time"]) * 1000, e["attributes"]) for e in expected["events"]]
    transport = {"json-v2": "http_v2_json", "json-v1": "http_v1_json", "proto": "http_v2_proto"}[protocol]
    assert sample(metrics, "otelcol_receiver_accepted_spans_total", receiver="zipkin", transport=transport) == 3


# --- (c) bad input ----------------------------------------------------------------------------------

def with_span(**changes) -> list:
    span = {**README_SPAN, **changes}
    return [{key: v for key, v in span.items() if v is not None}]


BAD = [
    # (path, content type, body, headers, status, transport counted, words the answer must hold)
    pytest.param(V2, JSON, b"[{", {}, 400, "http_v2_json", "not JSON", id="malformed json"),
    pytest.param(V2, JSON, b"\xff\xfe", {}, 400, "http_v2_json", "not JSON", id="not utf-8"),
    pytest.param(V2, JSON, README_SPAN, {}, 400, "http_v2_json", "must be an array of spans, not an object",
                 id="object, not array"),
    pytest.param(V2, JSON, [1], {}, 400, "http_v2_json", "span 0 must be an object, not a number", id="span a number"),
    pytest.param(V2, JSON, with_span(traceId=None), {}, 400, "http_v2_json", "span 0: traceId is required",
                 id="no trace id"),
    pytest.param(V2, JSON, [README_SPAN, {**README_SPAN, "id": None}], {}, 400, "http_v2_json",
                 "span 1: id is required", id="no span id"),
    pytest.param(V2, JSON, with_span(traceId="xyz"), {}, 400, "http_v2_json",
                 'span 0: traceId "xyz" is not 1 to 32 hex digits', id="trace id not hex"),
    pytest.param(V2, JSON, with_span(traceId="1" * 33), {}, 400, "http_v2_json", "is not 1 to 32 hex digits",
                 id="trace id too long"),
    pytest.param(V2, JSON, with_span(id="1" * 17), {}, 400, "http_v2_json", "span 0: id", id="span id too long"),
    pytest.param(V2, JSON, with_span(id="0000000000000000"), {}, 400, "http_v2_json", "span 0: id is zero",
                 id="zero span id"),
    pytest.param(V2, JSON, with_span(traceId="0" * 32), {}, 400, "http_v2_json", "traceId is zero",
                 id="zero trace id"),
    pytest.param(V2, JSON, with_span(parentId=12), {}, 400, "http_v2_json", "parentId must be a hex string",
                 id="parent id a number"),
    pytest.param(V2, JSON, with_span(tags={"a": 1}), {}, 400, "http_v2_json", 'tag "a" must be a string',
                 id="tag not a string"),
    pytest.param(V2, JSON, with_span(timestamp="now"), {}, 400, "http_v2_json", "timestamp must not be a string",
                 id="timestamp a string"),
    pytest.param(V2, JSON, with_span(duration=-1), {}, 400, "http_v2_json", "duration must not be negative",
                 id="negative duration"),
    pytest.param(V2, JSON, with_span(timestamp=2 ** 62), {}, 400, "http_v2_json",
                 "span 0: timestamp is past what OTLP can hold", id="timestamp past uint64 nanoseconds"),
    pytest.param(V2, JSON, with_span(kind="SIDEWAYS"), {}, 400, "http_v2_json", 'kind "SIDEWAYS" is not one of',
                 id="unknown kind"),
    pytest.param(V2, JSON, with_span(localEndpoint={"ipv4": "300.1.1.1"}), {}, 400, "http_v2_json",
                 'localEndpoint: ipv4 "300.1.1.1" is not an IPv4 address', id="bad ipv4"),
    pytest.param(V2, JSON, with_span(remoteEndpoint={"port": 70000}), {}, 400, "http_v2_json",
                 "remoteEndpoint: port 70000 is not between 0 and 65535", id="bad port"),
    pytest.param(V2, JSON, with_span(tags={"otlp.link.0": "zz|b7ad6b7169203331|k=v|{}|0"}), {}, 400,
                 "http_v2_json", "otlp.link.0: trace id", id="bad link"),
    pytest.param(V2, PROTOBUF, b"\xff\xff\xff", {}, 400, "http_v2_proto", "cannot parse zipkin.proto3.ListOfSpans",
                 id="protobuf garbage"),
    pytest.param(V2, PROTOBUF, proto.ListOfSpans(spans=[proto.Span(trace_id=b"abc", id=b"12345678")])
                 .SerializeToString(), {}, 400, "http_v2_proto", "span 0: trace_id has 3 bytes (expected 8 or 16)",
                 id="protobuf trace id length"),
    pytest.param(V2, PROTOBUF, proto.ListOfSpans(spans=[proto.Span(trace_id=b"abcdefgh", id=b"1234")])
                 .SerializeToString(), {}, 400, "http_v2_proto", "span 0: id has 4 bytes (expected 8)",
                 id="protobuf span id length"),
    pytest.param(V1, JSON, [{"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2",
                             "binaryAnnotations": [{"key": "k", "value": {"nested": 1}}]}], {}, 400, "http_v1_json",
                 'binaryAnnotations[0]: value of "k" must be a string', id="v1 binary annotation an object"),
    pytest.param(V1, JSON, {"spans": []}, {}, 400, "http_v1_json", "Zipkin v1 JSON must be an array",
                 id="v1 not an array"),
    pytest.param(V2, "text/plain", b"[]", {}, 415, "http_v2_json",
                 "unsupported media type, supported: [application/json, application/x-protobuf]", id="text/plain"),
    pytest.param(V1, "application/x-thrift", b"\x0c\x00", {}, 415, "http_v1_json", "Thrift is not supported",
                 id="v1 thrift"),
    pytest.param(V1, PROTOBUF, b"", {}, 415, "http_v1_json", "supported: [application/json]", id="v1 protobuf"),
    pytest.param(V2, JSON, b"[]", {"Content-Encoding": "br"}, 400, "http_v2_json",
                 'unsupported Content-Encoding "br" (supported: gzip, deflate)', id="brotli"),
    pytest.param(V2, JSON, b"[]", {"Content-Encoding": "gzip"}, 400, "http_v2_json",
                 "cannot inflate the gzip request body", id="gzip header, plain body"),
    pytest.param(V2, JSON, gzip.compress(b"[]")[:-6], {"Content-Encoding": "gzip"}, 400, "http_v2_json",
                 "truncated", id="truncated gzip"),
    pytest.param(V2, JSON, gzip.compress(b"[{]"), {"Content-Encoding": "gzip"}, 400, "http_v2_json", "not JSON",
                 id="gzip of malformed json"),
    pytest.param(V2, JSON, b"[" * 100_000, {}, 400, "http_v2_json", "the JSON nests too deep", id="deep json"),
    pytest.param(V1, JSON, b"[" * 100_000, {}, 400, "http_v1_json", "the JSON nests too deep", id="v1 deep json"),
    pytest.param(V2, JSON, with_span(tags={"otlp.link.0": "463ac35c9f6413ad48485a3953bb6124|b7ad6b7169203331||{}|"
                                                          + "7" * 5000}), {}, 400, "http_v2_json",
                 "otlp.link.0: expected trace id|span id|trace state|JSON attributes|dropped count",
                 id="link with a 5000-digit dropped count"),
]


@pytest.mark.parametrize("path, content_type, body, headers, status, transport, words", BAD)
def test_bad_input_is_refused_in_zipkin_terms_and_counted(path, content_type, body, headers, status, transport,
                                                          words):
    answer, recorder, metrics = post_once(path, body, content_type, **headers)
    assert answer.status == status
    assert words in answer.text
    assert recorder.requests == []
    assert sample(metrics, "otelcol_receiver_refused_requests_total", receiver="zipkin", transport=transport,
                  signal="traces", status=str(status)) == 1


def test_a_translator_failure_of_another_kind_is_still_a_counted_400(monkeypatch):
    # The safety net under the decoders: whatever gap is left answers in Zipkin's terms, never a bare 500.
    def broken(spans, parse_string_tags):
        raise OverflowError("a gap in the translator")

    monkeypatch.setattr(translate, "to_otlp", broken)
    answer, recorder, metrics = post_once(V2, [README_SPAN])
    assert answer.status == 400
    assert "cannot read the http_v2_json body: OverflowError: a gap in the translator" in answer.text
    assert recorder.requests == []
    assert sample(metrics, "otelcol_receiver_refused_requests_total", receiver="zipkin", transport="http_v2_json",
                  signal="traces", status="400") == 1


def test_a_large_body_is_decoded_and_delivered():
    # Past relay.net.body.OFF_LOOP_SIZE the decoding runs in a thread; what it delivers is the same.
    spans = [{**README_SPAN, "id": f"{i + 1:016x}"} for i in range(2000)]
    data = json.dumps(spans).encode()
    assert len(data) > body.OFF_LOOP_SIZE
    answer, recorder, metrics = post_once(V2, data)
    assert answer.status == 202, answer.text
    assert sum(len(ss.spans) for r in recorder.requests for rs in r.resource_spans for ss in rs.scope_spans) == 2000
    assert sample(metrics, "otelcol_receiver_accepted_spans_total", receiver="zipkin",
                  transport="http_v2_json") == 2000


def test_decoding_past_the_off_loop_size_runs_in_a_thread():
    def thread(data: bytes) -> int:
        return threading.get_ident()

    async def run():
        return await body.decode(b"[]", thread), await body.decode(b" " * (body.OFF_LOOP_SIZE + 1), thread)

    small, large = asyncio.run(run())
    assert small == threading.get_ident() and large != threading.get_ident()


def test_a_body_over_the_limit_is_413_on_the_wire_and_once_inflated():
    big = json.dumps([README_SPAN] * 20).encode()
    answer, recorder, _ = post_once(V2, big, settings={"max_request_body_size": 1000})
    assert answer.status == 413 and "limit of 1000 bytes" in answer.text
    answer, recorder, _ = post_once(V2, gzip.compress(big), settings={"max_request_body_size": 1000},
                                    **{"Content-Encoding": "gzip"})
    assert answer.status == 413 and "inflates to more than the limit of 1000 bytes" in answer.text
    assert recorder.requests == []


def test_other_methods_and_paths():
    async def run():
        async with running(Recorder()) as (client, _):
            return (await client.post(V2, b"", method="GET"), await client.post("/api/v2/trace", b"[]"))

    method, path = asyncio.run(run())
    assert method.status == 405 and "POST" in method.headers.get("Allow", "")
    assert path.status == 404


# What the pipeline's refusal becomes: the OTLP/HTTP receiver's table (relay.status).
REFUSALS = [
    pytest.param(RetryableError("sending queue is full", retry_after=2.5), 503, "3", "sending queue is full",
                 id="retryable with a delay"),
    pytest.param(RetryableError("memory limit"), 503, None, "memory limit", id="retryable"),
    pytest.param(InvalidDataError("span too big for the backend"), 400, None, "span too big", id="invalid"),
    pytest.param(PermanentError("downstream answered 400", status="400"), 400, None, "downstream answered 400",
                 id="downstream called it malformed"),
    pytest.param(PermanentError("downstream answered 401", status="401"), 500, None, "downstream answered 401",
                 id="permanent"),
    pytest.param(RuntimeError("bug"), 503, None, "internal error in the relay; retry later", id="a bug"),
]


@pytest.mark.parametrize("error, status, retry_after, words", REFUSALS)
def test_a_pipeline_refusal_maps_to_the_otlp_http_status(error, status, retry_after, words):
    answer, _, metrics = post_once(V2, [README_SPAN, {**README_SPAN, "id": "352bff9a74ca9ad3"}],
                                   recorder=Recorder(error))
    assert answer.status == status
    assert answer.headers.get("Retry-After") == retry_after
    assert words in answer.text and "bug" not in answer.text
    assert sample(metrics, "otelcol_receiver_refused_spans_total", receiver="zipkin", transport="http_v2_json",
                  reason=type(error).__name__) == 2
    assert sample(metrics, "otelcol_receiver_accepted_spans_total", receiver="zipkin", transport="http_v2_json") == 0


# --- config and TLS -----------------------------------------------------------------------------

def test_config_defaults_are_the_collectors():
    config, problems = decode(zipkin.Config, {})
    assert problems == []
    assert (config.endpoint, config.parse_string_tags, config.body_limit(), config.tls) == (
        "localhost:9411", False, 20 * 1024 * 1024, None)


@pytest.mark.parametrize("settings, key", [({"endpoint": "9411"}, "endpoint"),
                                           ({"max_request_body_size": -1}, "max_request_body_size")])
def test_invalid_config_names_the_key(settings, key):
    _, problems = decode(zipkin.Config, settings)
    assert [p.path for p in problems] == [(key,)]


def test_tls_serves_https_to_a_client_that_trusts_the_ca(tmp_path):
    from tests.test_receiver_tls import Pki, client_context

    pki = Pki(tmp_path)
    cert, key, _ = pki.issue("server")
    recorder = Recorder()

    async def run():
        tls = {"cert_file": str(cert), "key_file": str(key)}
        async with running(recorder, client_context(pki.ca_file), tls=tls) as (client, _):
            return await client.post(V2, [README_SPAN])

    check_readme_span(recorder, asyncio.run(run()))


def test_tls_with_a_missing_key_file_stops_the_start_naming_it(tmp_path):
    async def run():
        async with running(Recorder(), tls={"cert_file": str(tmp_path / "no.pem"), "key_file": str(tmp_path / "k")}):
            pass

    with pytest.raises(ConfigError) as raised:
        asyncio.run(run())
    assert raised.value.problems[0].path == ("receivers", "zipkin", "tls", "cert_file")
    assert "no.pem" in raised.value.problems[0].message
