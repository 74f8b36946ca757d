"""``service.telemetry.metrics.readers[].periodic``: self-metrics pushed over OTLP, as the collector
pushes its own (OTLP-native names: a counter is a Sum without Prometheus' ``_total``)."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
import yaml
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from relay.config.decode import decode, noting_advisories
from relay.config.load import load
from relay.config.telemetry import PeriodicReader
from relay.errors import ConfigError
from relay.pipeline.registry import default_registry
from relay.selfmetrics_push import GrpcPush, HttpPush, SelfMetricsPush, to_otlp
from relay.service import serve
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import Sink, free_port, traces_request

CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
START, NOW = 1_700_000_000_000_000_000, 1_700_000_060_000_000_000


def attrs(point) -> dict:
    return {a.key: a.value.string_value for a in point.attributes}


def by_name(request) -> dict:
    return {m.name: m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def demo_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_requests", "Requests handled", registry=registry).inc(3)
    labelled = Counter("demo_refused", "Requests refused", ["reason"], registry=registry)
    labelled.labels("full").inc(2)
    labelled.labels("bad").inc(1)
    Counter("demo_untouched", "A labelled counter nothing counted into", ["reason"], registry=registry)
    Gauge("demo_queue_size", "Items queued", registry=registry).set(7)
    latency = Histogram("demo_latency", "Latency", buckets=(1, 5), unit="seconds", registry=registry)
    for value in (0.5, 3, 3, 10):
        latency.observe(value)
    return registry


def demo_request():
    return to_otlp(list(demo_registry().collect()), {"service.name": "genops-relay"}, START, NOW)


@pytest.mark.parametrize("name, kind, points", [
    # A Prometheus counter is exposed as demo_requests_total; over OTLP it is the Sum demo_requests.
    ("demo_requests", "sum", [({}, 3.0)]),
    ("demo_refused", "sum", [({"reason": "full"}, 2.0), ({"reason": "bad"}, 1.0)]),
    ("demo_queue_size", "gauge", [({}, 7.0)]),
])
def test_counters_and_gauges_become_sums_and_gauges(name, kind, points):
    metric = by_name(demo_request())[name]
    assert metric.WhichOneof("data") == kind
    data = getattr(metric, kind)
    assert sorted(((attrs(p), p.as_double) for p in data.data_points), key=repr) == sorted(points, key=repr)
    if kind == "sum":
        assert data.is_monotonic and data.aggregation_temporality == CUMULATIVE
        assert {p.start_time_unix_nano for p in data.data_points} == {START}
    assert {p.time_unix_nano for p in data.data_points} == {NOW}


def test_a_histogram_gets_per_bucket_counts():
    metric = by_name(demo_request())["demo_latency"]
    # Prometheus names it demo_latency_seconds; OTLP gives the unit apart, in UCUM.
    assert metric.WhichOneof("data") == "histogram" and metric.unit == "s"
    assert metric.histogram.aggregation_temporality == CUMULATIVE
    (point,) = metric.histogram.data_points
    # 0.5 in (-inf, 1], two 3s in (1, 5], 10 in (5, +inf): cumulative 1, 3, 4 in Prometheus.
    assert list(point.explicit_bounds) == [1.0, 5.0]
    assert list(point.bucket_counts) == [1, 2, 1]
    assert (point.count, point.sum, point.start_time_unix_nano) == (4, 16.5, START)


def test_no_name_keeps_a_prometheus_suffix_and_empty_series_are_left_out():
    names = set(by_name(demo_request()))
    assert names == {"demo_requests", "demo_refused", "demo_queue_size", "demo_latency"}
    request = demo_request()
    assert attrs(request.resource_metrics[0].resource) == {"service.name": "genops-relay"}


def test_the_relays_own_metrics_are_named_as_the_collector_names_them_over_otlp():
    telemetry = SelfMetrics(CollectorRegistry())
    telemetry.receiver_accepted[Signal.TRACES].labels("otlp", "grpc").inc(4)
    metrics = by_name(to_otlp(list(telemetry.registry.collect()), {}, START, NOW))
    accepted = metrics["otelcol_receiver_accepted_spans"]
    assert accepted.WhichOneof("data") == "sum" and accepted.sum.is_monotonic
    assert [(attrs(p), p.as_double) for p in accepted.sum.data_points] == [
        ({"receiver": "otlp", "transport": "grpc"}, 4.0)]
    # otelcol_process_uptime_seconds_total on /metrics; the collector's OTLP name and unit.
    assert metrics["otelcol_process_uptime"].WhichOneof("data") == "sum"
    assert metrics["otelcol_process_uptime"].unit == "s"
    assert not any(name.endswith("_total") for name in metrics)


def reader(**otlp) -> PeriodicReader:
    value, problems = decode(PeriodicReader, {"interval": 5000, "exporter": {"otlp": otlp}})
    assert problems == []
    return value


class Ticks:
    """An injected sleep: each call waits until the test lets one interval pass."""

    def __init__(self):
        self.asked: list[float] = []
        self.gate = asyncio.Semaphore(0)

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self.gate.acquire()


async def until(check, rounds: int = 500):
    for _ in range(rounds):  # bounded; each round yields to the loop and the sink's threads
        if check():
            return True
        await asyncio.sleep(0.01)
    return False


def test_each_interval_pushes_one_request_over_grpc_with_the_headers():
    sink = Sink().start()

    async def scenario():
        registry = demo_registry()
        ticks = Ticks()
        push = SelfMetricsPush(registry, reader(protocol="grpc", endpoint=f"http://{sink.endpoint}",
                                                headers=[{"name": "api-key", "value": "k1"}]),
                               {"service.name": "genops-relay"}, sleep=ticks.sleep)
        push.start()
        assert await until(lambda: ticks.asked)
        assert sink.requests[Signal.METRICS] == []          # nothing before the first interval
        ticks.gate.release()
        assert await until(lambda: len(sink.requests[Signal.METRICS]) == 1)
        ticks.gate.release()
        assert await until(lambda: len(sink.requests[Signal.METRICS]) == 2)
        await push.shutdown(2)
        return ticks.asked

    try:
        asked = asyncio.run(scenario())
    finally:
        sink.stop()
    assert set(asked) == {5.0}                               # interval 5000 ms
    assert len(sink.requests[Signal.METRICS]) == 3           # two intervals, then once more at shutdown
    assert by_name(sink.requests[Signal.METRICS][0])["demo_requests"].sum.data_points[0].as_double == 3
    assert sink.metadata[0]["api-key"] == "k1"


class HttpSink:
    """OTLP/HTTP on 127.0.0.1: records each POST, answers ``status``."""

    def __init__(self):
        self.posts: list[tuple[str, dict, bytes]] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append((request.path, dict(request.headers), body))
        return web.Response(status=self.status, body=metrics_service_pb2.ExportMetricsServiceResponse()
                            .SerializeToString(), content_type="application/x-protobuf")

    async def start(self) -> int:
        app = web.Application()
        app.router.add_post("/{path:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self.port

    def requests(self) -> list:
        # aiohttp's server has already undone Content-Encoding: gzip (a body it could not inflate fails).
        return [metrics_service_pb2.ExportMetricsServiceRequest.FromString(body) for _, _, body in self.posts]


class Failures(logging.Handler):
    """The push's failure lines (relay loggers may not propagate, so the handler goes on the logger)."""

    def __enter__(self) -> "Failures":
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger("relay.service")
        self.saved = self.logger.level
        self.logger.addHandler(self)
        self.logger.setLevel(logging.INFO)
        return self

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "self-metrics push failed":
            self.records.append(record)

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.saved)


def test_http_protobuf_posts_to_v1_metrics_and_a_failure_is_logged_once_per_push():
    http = HttpSink()

    async def scenario():
        port = await http.start()
        push = SelfMetricsPush(demo_registry(), reader(protocol="http/protobuf", endpoint=f"http://127.0.0.1:{port}",
                                                       compression="gzip", headers={"x-team": "edge"}), {})
        try:
            assert await push.push()
            http.status = 503
            with Failures() as failures:
                assert not await push.push()
            http.status = 200
            assert await push.push()
        finally:
            await push.shutdown(2)
            await http.runner.cleanup()
        return failures

    failures = asyncio.run(scenario())
    path, headers, _ = http.posts[0]
    assert path == "/v1/metrics" and headers["Content-Type"] == "application/x-protobuf"
    assert headers["x-team"] == "edge" and headers["Content-Encoding"] == "gzip"
    assert "demo_latency" in by_name(http.requests()[0])
    assert len(failures.records) == 1 and "503" in failures.records[0].fields["error"]
    assert len(http.posts) == 3                 # never started, so shutdown pushes nothing more


def relay_config(otlp: dict, receiver_port: int, interval: int = 50):
    tree = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{receiver_port}"}}}},
            "exporters": {"debug": {}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
                        "telemetry": {"resource": {"deployment.environment": "test"},
                                      "metrics": {"readers": [{"periodic": {"interval": interval,
                                                                            "exporter": {"otlp": otlp}}}]}}}}
    return load(yaml.safe_dump(tree), default_registry(), env={})


async def run_relay(config, scenario):
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, SelfMetrics(CollectorRegistry()), stop, shutdown_timeout=2))
    try:
        return await scenario()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def accepted_spans(request) -> float:
    metric = by_name(request).get("otelcol_receiver_accepted_spans")
    if metric is None or metric.WhichOneof("data") != "sum":
        return 0
    return sum(p.as_double for p in metric.sum.data_points if attrs(p).get("receiver") == "otlp")


def test_serve_pushes_the_relays_own_counts_to_a_grpc_sink():
    sink = Sink().start()
    receiver_port = free_port()
    config = relay_config({"protocol": "grpc", "endpoint": f"http://{sink.endpoint}"}, receiver_port)
    assert not any("periodic" in str(note) for note in config.advisories)

    async def scenario():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver_port}") as channel:
            export = channel.unary_unary(Signal.TRACES.method,
                                         request_serializer=lambda r: r.SerializeToString(),
                                         response_deserializer=Signal.TRACES.response_type.FromString)
            await export(traces_request(2), timeout=10, wait_for_ready=True)
        return await until(lambda: any(accepted_spans(r) == 2 for r in list(sink.requests[Signal.METRICS])),
                           rounds=1000)

    try:
        arrived = asyncio.run(run_relay(config, scenario))
    finally:
        sink.stop()
    assert arrived
    resource = attrs(sink.requests[Signal.METRICS][-1].resource_metrics[0].resource)
    assert resource["service.name"] == "genops-relay" and resource["deployment.environment"] == "test"
    assert resource["service.instance.id"]


async def silent_server():
    """Accepts connections and never answers: a sink that hangs."""
    held = []

    async def hold(reader, writer):
        held.append(writer)
        await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], held


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("hanging", [False, True])
def test_a_sink_down_or_hanging_does_not_hold_up_shutdown(protocol, hanging):
    async def scenario():
        server, port, held = await silent_server()
        if not hanging:
            server.close()                      # nothing listens there any more: the sink is down
            await server.wait_closed()
        config = relay_config({"protocol": protocol, "endpoint": f"http://127.0.0.1:{port}"}, free_port(),
                              interval=60000)
        try:
            with Failures() as failures:
                await run_relay(config, lambda: asyncio.sleep(0))   # bounded by run_relay's wait_for
        finally:
            for writer in held:
                writer.close()
            server.close()
            await server.wait_closed()
        return failures

    failures = asyncio.run(scenario())
    assert len(failures.records) == 1                   # the final push, given up within the shutdown bound


def telemetry_problems(periodic: dict) -> list[str]:
    tree = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
            "exporters": {"debug": {}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
                        "telemetry": {"metrics": {"readers": [{"periodic": periodic}]}}}}
    with pytest.raises(ConfigError) as caught:
        load(yaml.safe_dump(tree), default_registry(), env={})
    return [str(p) for p in caught.value.problems]


AT = "service::telemetry::metrics::readers::0::periodic"


@pytest.mark.parametrize("periodic, expected", [
    ({"interval": 0, "exporter": {"otlp": {"endpoint": "http://127.0.0.1:1"}}},
     f"{AT}::interval: must be positive (milliseconds)"),
    ({"exporter": {}}, f"{AT}::exporter::otlp: required key is missing"),
    ({"exporter": {"otlp": {"protocol": "http/json", "endpoint": "127.0.0.1:1"}}},
     f'{AT}::exporter::otlp::protocol: "http/json" is not one of: grpc, http/protobuf'),
    ({"exporter": {"otlp": {"endpoint": "http://127.0.0.1:1", "compression": "zstd"}}},
     f'{AT}::exporter::otlp::compression: "zstd" is not one of: none, gzip'),
    ({"exporter": {"otlp": {"endpoint": "http://127.0.0.1:1", "headers": [{"name": "a"}]}}},
     f"{AT}::exporter::otlp::headers::0: expected {{name: ..., value: ...}}"),
])
def test_bad_periodic_settings_name_the_key(periodic, expected):
    assert expected in telemetry_problems(periodic)


def test_the_declarative_defaults_apply_and_delta_is_noted_as_advisory():
    value = reader(endpoint="http://127.0.0.1:1")
    # OpenTelemetry's declarative configuration: interval 5000 given here, timeout 30000 ms, http/protobuf.
    assert (value.timeout, value.exporter.otlp.protocol) == (30000, "http/protobuf")
    assert value.exporter.otlp.temporality_preference == "cumulative"
    assert decode(PeriodicReader, {"exporter": {"otlp": {"endpoint": "x"}}})[0].interval == 60000
    with noting_advisories() as notes:
        decode(PeriodicReader, {"exporter": {"otlp": {"endpoint": "x", "temporality_preference": "delta"}}})
    assert [str(note) for note in notes] == ["exporter::otlp::temporality_preference"]


@pytest.mark.parametrize("endpoint, insecure, url", [
    ("http://127.0.0.1:4318", False, "http://127.0.0.1:4318/v1/metrics"),      # the OTLP/HTTP metrics path
    ("http://127.0.0.1:4318/v1/metrics", False, "http://127.0.0.1:4318/v1/metrics"),
    ("https://otlp.example/otlp/v1/metrics", False, "https://otlp.example/otlp/v1/metrics"),
    ("127.0.0.1:4318", True, "http://127.0.0.1:4318/v1/metrics"),
])
def test_where_an_http_push_goes(endpoint, insecure, url):
    assert HttpPush(reader(endpoint=endpoint, insecure=insecure).exporter.otlp).url == url


@pytest.mark.parametrize("endpoint, insecure, target, plain", [
    ("http://127.0.0.1:4317", False, "127.0.0.1:4317", True),
    ("https://otlp.example:4317", True, "otlp.example:4317", False),     # the scheme decides
    ("127.0.0.1:4317", True, "127.0.0.1:4317", True),
    ("otlp.example:4317", False, "otlp.example:4317", False),             # no scheme: insecure decides
])
def test_where_a_grpc_push_goes(endpoint, insecure, target, plain):
    push = GrpcPush(reader(protocol="grpc", endpoint=endpoint, insecure=insecure).exporter.otlp)
    assert (push.target, push.tls.insecure) == (target, plain)
