"""``service.telemetry.logs.processors``: the relay's own log lines also go out as OTLP log
records, to a real gRPC sink and a real HTTP one on loopback, in batches, off the logging call;
a full queue and a sink that is down cost dropped records (counted), never a blocked relay, and
configured secrets never leave in a record."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
import yaml
from aiohttp import web
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from prometheus_client import CollectorRegistry

from relay.config.load import load
from relay.errors import ConfigError
from relay.pipeline.registry import default_registry
from relay.selflogs import DROPPED_METRIC, OtlpLogHandler, ProcessorSettings, Redactor
from relay.service import serve
from relay.signals import Signal
from relay.telemetry import SelfMetrics, setup_logging
from tests.support import Sink, free_port

WAIT = 20.0
TOKEN = "tok-5f1c9a7e2b8d4e6f"
HEADER_SECRET = "hdr-0a1b2c3d4e5f6789"


@pytest.fixture
def stderr():
    """The relay's logging set up as the process sets it up, into a buffer; put back after."""
    names = ("relay", "aiohttp", "asyncio")
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in map(logging.getLogger, names)]
    buffer = io.StringIO()
    setup_logging("info", stream=buffer)
    yield buffer
    for logger, handlers, level, propagate in saved:
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


def config_text(processor: dict, extra_telemetry: dict | None = None) -> str:
    tree = {"extensions": {"bearertokenauth": {"token": TOKEN}},
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{free_port()}",
                                                          "auth": {"authenticator": "bearertokenauth"}}}}},
            "exporters": {"debug": {}},
            "service": {"extensions": ["bearertokenauth"],
                        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
                        "telemetry": {"logs": {"processors": [processor]},
                                      "metrics": {"level": "none"},
                                      "resource": {"deployment.environment": "test"},
                                      **(extra_telemetry or {})}}}
    return yaml.safe_dump(tree, sort_keys=False)


def load_text(text: str):
    return load(text, default_registry(), env={})


async def run_relay(config, telemetry, during) -> None:
    """serve() until ``during(task)`` returns, then stop it and wait (bounded) for it to end."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, telemetry, stop, shutdown_timeout=3))
    try:
        await during(task)
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT)


async def until(check, task=None, rounds: int = 2000):
    for _ in range(rounds):  # bounded
        if task is not None and task.done():
            task.result()
        value = check()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def records(requests) -> list:
    return [(rl, lr) for request in requests for rl in request.resource_logs
            for sl in rl.scope_logs for lr in sl.log_records]


def attribute_map(key_values) -> dict:
    def value(v):
        kind = v.WhichOneof("value")
        if kind == "array_value":
            return [value(x) for x in v.array_value.values]
        return getattr(v, kind)
    return {kv.key: value(kv.value) for kv in key_values}


def with_body(requests, body: str) -> list:
    return [(rl, lr) for rl, lr in records(requests) if lr.body.string_value == body]


def test_relay_started_arrives_at_a_grpc_sink_as_an_otlp_log_record(stderr):
    sink = Sink().start()
    telemetry = SelfMetrics(CollectorRegistry())
    config = load_text(config_text({"batch": {"schedule_delay": 50, "exporter": {"otlp": {
        "protocol": "grpc", "endpoint": f"http://{sink.endpoint}",
        "headers": [{"name": "authorization", "value": f"Bearer {HEADER_SECRET}"}]}}}}))
    # An effect, not a "no effect here" line.
    assert not [a for a in config.advisories if "processors" in str(a)]

    async def during(task):
        await until(lambda: with_body(sink.requests[Signal.LOGS], "relay started"), task)
        # A line that quotes both secrets (as an error message quoting a request might).
        logging.getLogger("relay.component").warning(f"odd header {TOKEN} / Bearer {HEADER_SECRET}",
                                                      extra={"fields": {"seen": f"Bearer {TOKEN}"}})
        await until(lambda: [r for r in records(sink.requests[Signal.LOGS]) if r[1].severity_number == 13], task)

    try:
        asyncio.run(run_relay(config, telemetry, during))
    finally:
        sink.stop()
    resource, started = with_body(sink.requests[Signal.LOGS], "relay started")[0]
    # The log data model's INFO; the resource is the relay's own, with the configured attribute.
    assert (started.severity_number, started.severity_text) == (9, "INFO")
    assert started.time_unix_nano > 0
    resource_attrs = attribute_map(resource.resource.attributes)
    assert resource_attrs["service.name"] == "genops-relay"
    assert resource_attrs["deployment.environment"] == "test"
    assert "service.instance.id" in resource_attrs
    assert attribute_map(started.attributes)["pipelines"] == ["traces"]
    # The configured header went with every export.
    assert all(m.get("authorization") == f"Bearer {HEADER_SECRET}" for m in sink.metadata)
    # Neither secret is anywhere in what was exported; the line that quoted them was redacted.
    exported = b"".join(r.SerializeToString() for r in sink.requests[Signal.LOGS])
    assert TOKEN.encode() not in exported and HEADER_SECRET.encode() not in exported
    odd = [lr for _, lr in records(sink.requests[Signal.LOGS]) if lr.body.string_value.startswith("odd header")]
    # The whole configured header value is the secret, so it goes whole.
    assert odd[0].body.string_value == "odd header [REDACTED] / [REDACTED]"
    assert attribute_map(odd[0].attributes)["seen"] == "Bearer [REDACTED]"
    # The stderr lines still carry every line as before, exported or not.
    lines = [json.loads(line) for line in stderr.getvalue().splitlines()]
    assert any(line["msg"] == "relay started" for line in lines)


def test_grpc_host_port_with_insecure_reaches_the_sink_gzipped(stderr):
    sink = Sink().start()
    telemetry = SelfMetrics(CollectorRegistry())
    config = load_text(config_text({"simple": {"exporter": {"otlp": {
        "protocol": "grpc", "endpoint": sink.endpoint, "insecure": True, "compression": "gzip"}}}}))

    async def during(task):
        await until(lambda: with_body(sink.requests[Signal.LOGS], "relay started"), task)

    try:
        asyncio.run(run_relay(config, telemetry, during))
    finally:
        sink.stop()
    # Plain text to a host:port endpoint, as insecure asks (a TLS attempt would fail every export).
    assert dropped(telemetry, "export_failed") == 0


class HttpSink:
    """An OTLP/HTTP logs endpoint that keeps every request it accepts."""

    def __init__(self):
        self.requests: list = []
        self.content_types: list[str] = []
        self.paths: list[str] = []

    async def start(self) -> int:
        async def handle(request: web.Request) -> web.Response:
            self.paths.append(request.path)
            self.content_types.append(request.headers.get("Content-Type", ""))
            self.requests.append(logs_service_pb2.ExportLogsServiceRequest.FromString(await request.read()))
            return web.Response(body=logs_service_pb2.ExportLogsServiceResponse().SerializeToString(),
                                content_type="application/x-protobuf")

        app = web.Application()
        app.router.add_post("/v1/logs", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]


def test_relay_started_arrives_at_an_http_sink_with_initial_fields(stderr):
    telemetry = SelfMetrics(CollectorRegistry())
    sink = HttpSink()

    async def scenario():
        port = await sink.start()
        try:
            config = load_text(config_text({"batch": {"schedule_delay": 50, "exporter": {"otlp": {
                "protocol": "http/protobuf", "endpoint": f"http://127.0.0.1:{port}/v1/logs"}}}},
                {"logs": {"initial_fields": {"cluster": "eu-1"}, "processors": [{"simple": {"exporter": {"otlp": {
                    "protocol": "http/protobuf", "endpoint": f"http://127.0.0.1:{port}"}}}}]}}))

            async def during(task):
                await until(lambda: with_body(sink.requests, "relay started"), task)

            await run_relay(config, telemetry, during)
        finally:
            await sink.runner.cleanup()

    asyncio.run(scenario())
    _, started = with_body(sink.requests, "relay started")[0]
    assert (started.severity_number, started.severity_text) == (9, "INFO")
    assert attribute_map(started.attributes)["cluster"] == "eu-1"
    assert set(sink.content_types) == {"application/x-protobuf"}
    # No path in the endpoint: OTLP/HTTP's /v1/logs.
    assert set(sink.paths) == {"/v1/logs"}
    # simple: one record per request.
    assert {len(records([r])) for r in sink.requests} == {1}


def settings(endpoint: str, **batching) -> ProcessorSettings:
    return ProcessorSettings(protocol="grpc", url=f"http://{endpoint}", insecure=True, headers={}, compression="",
                    timeout=5.0, **batching)


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("relay.component", level, __file__, 1, message, (), None)


def dropped(telemetry: SelfMetrics, reason: str) -> float:
    return telemetry.registry.get_sample_value(f"{DROPPED_METRIC}_total", {"processor": "0", "reason": reason}) or 0


def test_records_go_in_batches_of_max_export_batch_size_and_the_rest_at_shutdown():
    sink = Sink().start()
    telemetry = SelfMetrics(CollectorRegistry())
    counter = telemetry.counter(DROPPED_METRIC, "dropped", ["processor", "reason"])
    # A delay far past the test: only a full batch, or the shutdown, sends.
    handler = OtlpLogHandler(settings(sink.endpoint, schedule_delay=3600.0, max_export_batch_size=3),
                             {"service.name": "genops-relay"}, counter)
    try:
        handler.start()
        for i in range(7):
            handler.handle(record(f"line {i}", logging.WARNING if i == 0 else logging.DEBUG))
        assert sink.wait_for(Signal.LOGS, 6, timeout=WAIT)
        handler.shutdown(5.0)
    finally:
        sink.stop()
    sizes = [len(records([r])) for r in sink.requests[Signal.LOGS]]
    assert sizes == [3, 3, 1]
    bodies = [lr.body.string_value for _, lr in records(sink.requests[Signal.LOGS])]
    assert bodies == [f"line {i}" for i in range(7)]
    first, second = records(sink.requests[Signal.LOGS])[:2]
    assert (first[1].severity_number, first[1].severity_text) == (13, "WARN")
    assert (second[1].severity_number, second[1].severity_text) == (5, "DEBUG")
    assert dropped(telemetry, "shutdown") == 0


class Kept(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_full_queue_drops_and_counts_and_says_so_once():
    telemetry = SelfMetrics(CollectorRegistry())
    counter = telemetry.counter(DROPPED_METRIC, "dropped", ["processor", "reason"])
    # Not started: nothing takes records off the queue, so it fills.
    handler = OtlpLogHandler(settings(f"127.0.0.1:{free_port()}", max_queue_size=2, max_export_batch_size=2),
                             {}, counter)
    kept = Kept()
    notes_logger = logging.getLogger("relay.selflogs")
    notes_logger.addHandler(kept)
    try:
        for i in range(5):
            handler.handle(record(f"line {i}"))
        notes = list(kept.records)
        # Its own note is never queued (it would feed itself).
        for note in notes:
            handler.handle(note)
        assert len(handler._queue) == 2
    finally:
        notes_logger.removeHandler(kept)
    assert dropped(telemetry, "queue_full") == 3
    assert [r.getMessage() for r in notes] == ["self-log queue full, dropping the relay's own log records"]
    handler.shutdown(0.0)
    assert dropped(telemetry, "shutdown") == 2


def test_a_sink_that_is_down_neither_blocks_nor_crashes_the_relay(stderr):
    telemetry = SelfMetrics(CollectorRegistry())
    config = load_text(config_text({"batch": {"schedule_delay": 20, "max_export_batch_size": 2, "exporter": {
        "otlp": {"protocol": "grpc", "endpoint": f"http://127.0.0.1:{free_port()}", "timeout": 200}}}}))
    emitted = 50

    async def during(task):
        await until(lambda: "relay started" in stderr.getvalue(), task)
        for i in range(emitted):
            logging.getLogger("relay.component").info("busy", extra={"fields": {"i": i}})
        # Every line was written to stderr at once, the sink down or not.
        assert stderr.getvalue().count('"msg": "busy"') == emitted
        await until(lambda: dropped(telemetry, "export_failed") > 0, task)

    asyncio.run(run_relay(config, telemetry, during))
    assert "could not export the relay's own log records" in stderr.getvalue()
    assert "relay stopped" in stderr.getvalue()
    # Nothing was lost silently: every record that reached the handler is counted as dropped.
    lost = sum(dropped(telemetry, reason) for reason in ("export_failed", "shutdown", "queue_full"))
    assert lost >= emitted


@pytest.mark.parametrize("processor, expected", [
    ({"batch": {"exporter": {}}}, "service::telemetry::logs::processors::0::batch::exporter::otlp: "
                                  "required key is missing"),
    ({"batch": {"max_queue_size": 10, "max_export_batch_size": 20, "exporter": {"otlp": {"protocol": "grpc"}}}},
     "service::telemetry::logs::processors::0::batch::max_export_batch_size: must not be greater than "
     "max_queue_size"),
    ({}, "service::telemetry::logs::processors::0: give exactly one of batch or simple"),
    ({"simple": {"exporter": {"otlp": {"protocol": "http/protobuf", "endpoint": "localhost:4318"}}}},
     "service::telemetry::logs::processors::0::simple::exporter::otlp::endpoint: must be a URL"),
])
def test_bad_processor_settings_name_the_key(processor, expected):
    with pytest.raises(ConfigError) as caught:
        load_text(config_text(processor))
    assert any(str(p).startswith(expected) for p in caught.value.problems), caught.value.problems


def test_batch_defaults_are_the_sdks():
    config = load_text(config_text({"batch": {"exporter": {"otlp": {"protocol": "grpc"}}}}))
    batch = config.telemetry.logs.processors[0].batch
    assert (batch.schedule_delay, batch.export_timeout, batch.max_queue_size, batch.max_export_batch_size) == (
        1000, 30000, 2048, 512)
    assert batch.exporter.otlp.url == "http://localhost:4317"
    assert batch.exporter.otlp.timeout == 10000


def test_redactor_replaces_longest_secret_first():
    redactor = Redactor(["abcd-secret", "abcd-secret-longer"])
    assert redactor.text("x abcd-secret-longer y abcd-secret") == "x [REDACTED] y [REDACTED]"
