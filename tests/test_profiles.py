"""Profiles, the collector's development signal, carried through the relay end to end.

A real OTLP client sends ``ExportProfilesServiceRequest``s (over gRPC to the ProfilesService,
over HTTP to ``/v1development/profiles``) into the otlp receiver; a ``profiles`` pipeline passes
them through memory_limiter, resourcedetection and filter to the otlp or otlphttp exporter,
which delivers them to a recording server on 127.0.0.1. Expected values follow the
collector: its service and path names, its counting in samples
(``otelcol_receiver_accepted_profile_samples``), hex profile ids in OTLP/JSON.
"""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
import grpc
import pytest
import yaml
from aiohttp import web
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from prometheus_client import CollectorRegistry

from relay import otlpjson
from relay.config.load import load
from relay.errors import ConfigError
from relay.pipeline.graph import Graph
from relay.pipeline.registry import default_registry
from relay.signals import Signal
from relay.telemetry import SelfMetrics, setup_logging
from tests.support import PROFILE_ID, free_port, profiles_request

SERVICE = "opentelemetry.proto.collector.profiles.v1development.ProfilesService"
METHOD = f"/{SERVICE}/Export"
PATH = "/v1development/profiles"
DETECTED = ("deployment.environment.name", "profiling-test")
WAIT = 10.0


# --- requests --------------------------------------------------------------------------------

def samples(request) -> int:
    return sum(len(p.samples) for rp in request.resource_profiles for sp in rp.scope_profiles for p in sp.profiles)


def with_detected(request):
    """``request`` as resourcedetection's env detector leaves it (override: true appends a missing key)."""
    expected = type(request)()
    expected.CopyFrom(request)
    for rp in expected.resource_profiles:
        rp.resource.attributes.add(key=DETECTED[0]).value.string_value = DETECTED[1]
    return expected


# --- downstreams -----------------------------------------------------------------------------

class GrpcRecorder:
    """A downstream ProfilesService that keeps the bytes of every request it is sent."""

    def __init__(self):
        self.bodies: list[bytes] = []
        self.arrived: asyncio.Event | None = None
        self.server: grpc.aio.Server | None = None

    async def start(self) -> str:
        # Made here, in the running loop, which grpc.aio binds them to.
        self.arrived, self.server = asyncio.Event(), grpc.aio.server()

        async def export(data: bytes, context) -> bytes:
            self.bodies.append(data)
            self.arrived.set()
            return profiles_service_pb2.ExportProfilesServiceResponse().SerializeToString()

        handler = grpc.unary_unary_rpc_method_handler(export)  # no (de)serializers: raw bytes
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)


class HttpRecorder:
    """A downstream OTLP/HTTP server that keeps the (inflated) body and headers of each POST."""

    def __init__(self):
        self.posts: list[tuple[str, dict, bytes]] = []
        self.arrived: asyncio.Event | None = None
        self.runner: web.AppRunner | None = None

    async def start(self) -> str:
        self.arrived = asyncio.Event()

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()  # aiohttp inflates a gzip body itself
            self.posts.append((request.path, dict(request.headers), body))
            self.arrived.set()
            answer = profiles_service_pb2.ExportProfilesServiceResponse().SerializeToString()
            return web.Response(body=answer, content_type="application/x-protobuf")

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


# --- the relay -------------------------------------------------------------------------------

def relay_yaml(exporter: dict, processors: dict, names: list[str], grpc_port: int, http_port: int) -> str:
    return yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                             "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        "processors": processors,
        "exporters": exporter,
        "service": {"pipelines": {"profiles": {"receivers": ["otlp"], "processors": names,
                                               "exporters": list(exporter)}}},
    })


PROCESSORS = {
    "memory_limiter": {"check_interval": "1s", "limit_percentage": 99, "spike_limit_percentage": 1},
    "resourcedetection": {"detectors": ["env"]},
    # The otel-demo's condition, as its collector config writes it, and one on the profile's own attributes.
    "filter/sanitize_profiles": {"error_mode": "ignore", "profiles": {"profile": [
        'IsMatch(resource.attributes["service.name"], "containerd-shim-.*")',
        'attributes["thread.name"] == "gc-worker"']}},
}
NO_QUEUE = {"sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}}


async def run_relay(text: str, telemetry: SelfMetrics, send):
    graph = Graph(load(text, default_registry(), env={}), telemetry)
    await asyncio.wait_for(graph.start(), WAIT)
    try:
        return await send()
    finally:
        await asyncio.wait_for(graph.shutdown(5.0), WAIT)


async def grpc_export(port: int, data: bytes) -> profiles_service_pb2.ExportProfilesServiceResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = await channel.unary_unary(METHOD)(data, timeout=WAIT)
    return profiles_service_pb2.ExportProfilesServiceResponse.FromString(answer)


def metric(telemetry: SelfMetrics, name: str, **labels) -> float:
    return telemetry.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def detected_env(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "=".join(DETECTED))


# --- tests -----------------------------------------------------------------------------------

def through_memory_limiter_to_otlp(data: bytes, telemetry):
    """(the client's answer, the recording sink) for ``data`` sent over gRPC through a profiles
    pipeline of memory_limiter into the otlp exporter."""
    sink = GrpcRecorder()

    async def scenario():
        endpoint = await sink.start()
        try:
            exporter = {"otlp/profiles": {"endpoint": endpoint, "tls": {"insecure": True}, **NO_QUEUE}}
            grpc_port = free_port()
            text = relay_yaml(exporter, {"memory_limiter": PROCESSORS["memory_limiter"]}, ["memory_limiter"],
                              grpc_port, free_port())

            async def send():
                response = await grpc_export(grpc_port, data)
                await asyncio.wait_for(sink.arrived.wait(), WAIT)
                return response

            return await run_relay(text, telemetry, send)
        finally:
            await sink.stop()

    return asyncio.run(scenario()), sink


def test_a_grpc_profiles_request_passes_through_to_the_otlp_exporter_unchanged():
    request = profiles_request()
    data = request.SerializeToString()
    telemetry = SelfMetrics(CollectorRegistry())
    response, sink = through_memory_limiter_to_otlp(data, telemetry)
    assert not response.HasField("partial_success")
    # Nothing in the pipeline changes data, so the exporter forwards the bytes the client sent.
    assert sink.bodies == [data]
    assert metric(telemetry, "otelcol_receiver_accepted_profile_samples_total",
                  receiver="otlp", transport="grpc") == samples(request) == 4
    assert metric(telemetry, "otelcol_exporter_sent_profile_samples_total", exporter="otlp/profiles") == 4


def test_resourcedetection_and_filter_change_profiles_as_the_collector_would(detected_env):
    request = profiles_request(("checkout", "containerd-shim-runc-v2"))
    telemetry = SelfMetrics(CollectorRegistry())
    sink = GrpcRecorder()
    names = ["resourcedetection", "filter/sanitize_profiles", "memory_limiter"]  # the otel-demo's order

    async def scenario():
        endpoint = await sink.start()
        try:
            exporter = {"otlp_grpc/profiles": {"endpoint": endpoint, "tls": {"insecure": True}, **NO_QUEUE}}
            grpc_port = free_port()
            text = relay_yaml(exporter, PROCESSORS, names, grpc_port, free_port())

            async def send():
                await grpc_export(grpc_port, request.SerializeToString())
                await asyncio.wait_for(sink.arrived.wait(), WAIT)

            await run_relay(text, telemetry, send)
        finally:
            await sink.stop()

    asyncio.run(scenario())
    (body,) = sink.bodies
    # The containerd-shim resource is dropped whole; of checkout's two profiles the gc-worker one goes.
    expected = with_detected(request)
    del expected.resource_profiles[1]
    del expected.resource_profiles[0].scope_profiles[0].profiles[1]
    got = profiles_service_pb2.ExportProfilesServiceRequest.FromString(body)
    assert got == expected
    # The dictionary is kept whole: the profile left still points into it by index.
    assert got.dictionary == request.dictionary
    assert metric(telemetry, "otelcol_processor_filter_profiles_filtered_total", filter="filter/sanitize_profiles") == 3


def test_otlp_http_protobuf_and_json_pass_through_to_the_otlphttp_exporter(detected_env):
    request = profiles_request()
    telemetry = SelfMetrics(CollectorRegistry())
    sink = HttpRecorder()

    async def scenario():
        base = await sink.start()
        try:
            exporter = {"otlphttp/profiles": {"endpoint": base, **NO_QUEUE}}
            http_port = free_port()
            text = relay_yaml(exporter, {"resourcedetection": PROCESSORS["resourcedetection"]}, ["resourcedetection"],
                              free_port(), http_port)

            async def send():
                answers = []
                url = f"http://127.0.0.1:{http_port}{PATH}"
                async with aiohttp.ClientSession() as session:
                    for media, body in (("application/x-protobuf", request.SerializeToString()),
                                        ("application/json", otlpjson.encode(request))):
                        sink.arrived.clear()
                        async with session.post(url, data=body, headers={"Content-Type": media}) as answer:
                            answers.append((answer.status, answer.content_type, await answer.read()))
                        await asyncio.wait_for(sink.arrived.wait(), WAIT)
                return answers

            return await run_relay(text, telemetry, send)
        finally:
            await sink.stop()

    answers = asyncio.run(scenario())
    assert [(code, media) for code, media, _ in answers] == [(200, "application/x-protobuf"),
                                                             (200, "application/json")]
    assert json.loads(answers[1][2]) == {}  # an empty ExportProfilesServiceResponse
    expected = with_detected(request).SerializeToString()
    assert [(path, body) for path, _, body in sink.posts] == [(PATH, expected), (PATH, expected)]
    assert {headers["Content-Type"] for _, headers, _ in sink.posts} == {"application/x-protobuf"}
    assert {headers["Content-Encoding"] for _, headers, _ in sink.posts} == {"gzip"}  # otlphttp's default
    assert metric(telemetry, "otelcol_receiver_accepted_profile_samples_total",
                  receiver="otlp", transport="http") == 2 * samples(request)


def test_profile_ids_travel_in_hex_in_otlp_json():
    request = profiles_request()
    tree = json.loads(otlpjson.encode(request))
    assert tree["resourceProfiles"][0]["scopeProfiles"][0]["profiles"][0]["profileId"] == PROFILE_ID.hex()
    assert otlpjson.decode(json.dumps(tree), type(request)) == request
    tree["resourceProfiles"][0]["scopeProfiles"][0]["profiles"][0]["profileId"] = "0102"
    with pytest.raises(ValueError, match="profileId: expected 32 hex characters"):
        otlpjson.decode(json.dumps(tree), type(request))


def test_a_profile_id_of_the_wrong_length_is_refused_as_invalid_argument():
    request = profiles_request()
    request.resource_profiles[0].scope_profiles[0].profiles[0].profile_id = b"\x01\x02"
    telemetry = SelfMetrics(CollectorRegistry())
    sink = GrpcRecorder()

    async def scenario():
        endpoint = await sink.start()
        try:
            exporter = {"otlp": {"endpoint": endpoint, "tls": {"insecure": True}, **NO_QUEUE}}
            grpc_port = free_port()
            text = relay_yaml(exporter, {}, [], grpc_port, free_port())

            async def send():
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await grpc_export(grpc_port, request.SerializeToString())
                return refused.value

            return await run_relay(text, telemetry, send)
        finally:
            await sink.stop()

    error = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "profile_id must be empty or 16 bytes" in error.details()
    assert sink.bodies == []


def test_the_debug_exporter_logs_profiles():
    request = profiles_request(("checkout", "cart"))
    stream = io.StringIO()
    setup_logging("info", stream)
    grpc_port = free_port()
    text = relay_yaml({"debug": {"verbosity": "normal"}}, {}, [], grpc_port, free_port())

    async def send():
        await grpc_export(grpc_port, request.SerializeToString())

    asyncio.run(run_relay(text, SelfMetrics(CollectorRegistry()), send))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (summary,) = [line for line in lines if line.get("component") == "debug" and line.get("signal") == "profiles"
                  and "resources" in line]
    assert (summary["resources"], summary["profiles"], summary["profile_samples"]) == (2, 4, samples(request))
    services = [line["attributes"]["service.name"] for line in lines
                if line.get("component") == "debug" and "attributes" in line]
    assert services == ["checkout", "cart"]


@pytest.mark.parametrize("kind, name, settings", [
    ("processors", "batch", {}),
    ("processors", "transform", {"log_statements": [{"context": "log", "statements": ['set(body, "x")']}]}),
    ("exporters", "prometheus", {"endpoint": "127.0.0.1:0"}),
])
def test_a_component_without_profiles_is_refused_in_a_profiles_pipeline(kind, name, settings):
    tree = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
            "exporters": {"debug": {}}, "service": {"pipelines": {"profiles": {
                "receivers": ["otlp"], "processors": [], "exporters": ["debug"]}}}}
    tree.setdefault(kind, {})[name] = settings
    tree["service"]["pipelines"]["profiles"][kind] = [name]
    with pytest.raises(ConfigError) as refused:
        load(yaml.safe_dump(tree), default_registry(), env={})
    singular = kind[:-1]
    assert [str(p) for p in refused.value.problems] == [
        f'service::pipelines::profiles::{kind}::0: {singular} "{name}" does not support profiles']


def test_profiles_pipelines_load_without_a_feature_gate():
    # The collector refuses them unless service.profilesSupport is on; the relay, which only
    # passes profiles through, takes them as the other signals.
    tree = {"receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
            "processors": {"resource": {"attributes": [{"key": "env", "value": "ci", "action": "upsert"}]}},
            "exporters": {"otlphttp": {"profiles_endpoint": "http://127.0.0.1:1/p"}},
            "service": {"pipelines": {"profiles/in": {"receivers": ["otlp"], "processors": ["resource"],
                                                      "exporters": ["otlphttp"]}}}}
    config = load(yaml.safe_dump(tree), default_registry(), env={})
    (pipeline,) = config.pipelines
    assert pipeline.signal is Signal.PROFILES


def test_a_large_profiles_request_is_split_with_its_dictionary():
    from relay import split

    request = profiles_request(("a", "b", "c"))
    parts = split.split(request, 5)
    assert [samples(part) for part in parts] == [5, 5, 2]
    assert all(part.dictionary == request.dictionary for part in parts)
    with pytest.raises(ValueError, match="cannot be merged"):
        split.merge([request, request])


def test_a_profile_pointing_outside_the_dictionary_fails_its_condition_and_is_kept():
    from relay.component import ComponentID
    from relay.config.decode import decode
    from relay.processors.filter import Config
    from relay.processors.filter.processor import Filter

    request = profiles_request()
    broken = request.resource_profiles[0].scope_profiles[0].profiles[1]
    broken.attribute_indices[:] = [len(request.dictionary.attribute_table)]  # one past the table
    config, problems = decode(Config, PROCESSORS["filter/sanitize_profiles"])
    assert problems == []
    telemetry = SelfMetrics(CollectorRegistry())
    kept = Filter(ComponentID.parse("filter/p"), config.compiled(), telemetry)(request)
    # The "main" thread's profile matches no condition; the broken one's attribute condition fails,
    # which error_mode ignore counts as false: both are kept, and the failure is counted.
    assert [len(sp.profiles) for rp in kept.resource_profiles for sp in rp.scope_profiles] == [2]
    assert metric(telemetry, "otelcol_processor_filter_errors_total", filter="filter/p", signal="profiles") == 1


def profiles_of(request) -> list:
    return [p for rp in request.resource_profiles for sp in rp.scope_profiles for p in sp.profiles]


def with_sampleless_profiles(request, at: tuple[int, ...]):
    """``request`` with the profiles at positions ``at`` (in request order) emptied of samples."""
    for position, profile in enumerate(profiles_of(request)):
        if position in at:
            del profile.samples[:]
    return request


def test_profiles_without_samples_reach_the_exporter():
    # A profile without samples still carries its time, attributes and counts: the receiver must
    # forward it rather than acknowledge and forget it.
    request = with_sampleless_profiles(profiles_request(), at=(0, 1))
    assert samples(request) == 0 and len(profiles_of(request)) == 2
    data = request.SerializeToString()
    telemetry = SelfMetrics(CollectorRegistry())
    response, sink = through_memory_limiter_to_otlp(data, telemetry)
    assert not response.HasField("partial_success")
    assert sink.bodies == [data]


def test_splitting_keeps_profiles_without_samples_in_the_chunk_that_reaches_them():
    from relay import split

    # Six profiles, two samples each; the first and the fourth lose theirs: 8 samples in all.
    request = with_sampleless_profiles(profiles_request(("a", "b", "c")), at=(0, 3))
    parts = split.split(request, 3)
    assert [samples(part) for part in parts] == [3, 3, 2]
    assert [len(profiles_of(part)) for part in parts] == [3, 3, 1]
    # Every profile arrives once, in order, the sample-less ones with their own fields intact.
    shells = [(p.time_unix_nano, tuple(p.attribute_indices)) for p in profiles_of(request)]
    arrived = [(p.time_unix_nano, tuple(p.attribute_indices)) for part in parts for p in profiles_of(part)]
    assert list(dict.fromkeys(arrived)) == shells
    assert [len(p.samples) for p in profiles_of(parts[0])] == [0, 2, 1]
    # A request of sample-less profiles only is one chunk holding them all.
    empty = with_sampleless_profiles(profiles_request(("a",)), at=(0, 1))
    (part,) = split.split(empty, 3)
    assert part == empty


def test_a_profiles_request_is_not_cut_by_size():
    from relay import split

    # Cutting would copy the whole dictionary into every part, so the request travels whole.
    request = profiles_request(("a", "b", "c"))
    assert request.dictionary.ByteSize() > 64
    assert split.by_size(request, 64) == [request]
