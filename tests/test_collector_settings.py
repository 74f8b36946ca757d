"""Collector settings real configs carry, each with the collector's documented behaviour as the
expected value: service telemetry (readers, levels in any case, resource, traces and log
processors), the exporter queue's block_on_overflow and batch, the debug exporter's sampling
and its old ``logging`` name, the prometheus receiver's external labels, gRPC header keys in
upper case, a prometheus namespace with a dash, and the one-time "no effect here" line."""

from __future__ import annotations

import asyncio
import logging
import textwrap

import aiohttp
import grpc
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import ConfigError, QueueFullError, ShutdownError
from relay.exporters import debug, otlp_grpc
from relay.pipeline.graph import Graph
from relay.pipeline.registry import default_registry
from relay.receivers import prometheus as prometheus_receiver
from relay.service import log_filters, serve
from relay.signals import Signal
from relay.telemetry import LEVELS, SelfMetrics, install_filters, remove_filters
from tests.support import Recorder, free_port, traces_request
from tests.test_exporter_helper import GatedTransport, Harness, until
from tests.test_prometheus_exporter import get
from tests.test_prometheus_exporter import serve as serve_exporter
from tests.test_receiver_prometheus import Endpoint, metrics_of, wait_until


def relay_yaml(telemetry: dict | None = None, exporters: dict | None = None) -> str:
    """A small valid config on loopback: OTLP/gRPC in, the given exporters (default debug) out."""
    exporters = exporters or {"debug": {}}
    tree = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{free_port()}"}}}},
            "exporters": exporters,
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": list(exporters)}},
                        "telemetry": telemetry or {}}}
    return yaml.safe_dump(tree, sort_keys=False)


def load_yaml(text: str):
    return load(text, default_registry(), env={})


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_yaml(text)
    return [str(p) for p in caught.value.problems]


class Lines(logging.Handler):
    """Keeps the messages a logger writes (relay loggers stop propagating once logging is set up)."""

    def __init__(self, *names: str):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.loggers = [logging.getLogger(name) for name in names]

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def __enter__(self) -> "Lines":
        self.saved = [(lg.level, lg.propagate) for lg in self.loggers]
        for logger in self.loggers:
            logger.addHandler(self)
            logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc) -> None:
        for logger, (level, propagate) in zip(self.loggers, self.saved):
            logger.removeHandler(self)
            logger.setLevel(level)
            logger.propagate = propagate


async def run_relay(config, scenario):
    """``serve`` the config, run ``scenario()`` once it is up, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, SelfMetrics(CollectorRegistry()), stop, shutdown_timeout=2))
    try:
        return await scenario()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def scrape_when_up(port: int) -> str:
    async def attempt():
        try:
            return (await get(port))[2]
        except aiohttp.ClientConnectionError:
            return None
    body = None

    async def ready():
        nonlocal body
        body = await attempt()
        return body is not None

    for _ in range(500):  # bounded: the listener starts before any component
        if await ready():
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"nothing served on port {port}")


def families(body: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(body)}


# --- service::telemetry -------------------------------------------------------------------------

def test_a_pull_reader_moves_the_self_metrics_listener_and_target_info_carries_the_resource():
    port = free_port()
    config = load_yaml(relay_yaml({
        "metrics": {"readers": [{"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": port}}}}]},
        "resource": {"service.name": "edge-relay", "deployment.environment": "prod", "service.instance.id": None}}))
    # The collector serves where the reader says, not on the default 8888.
    assert config.telemetry.metrics.listen_addresses() == [f"127.0.0.1:{port}"]
    body = asyncio.run(run_relay(config, lambda: scrape_when_up(port)))
    found = families(body)
    assert "otelcol_receiver_accepted_spans" in found
    (info,) = found["target_info"].samples
    # Configured attributes win; a null removes the default service.instance.id.
    assert info.labels["service_name"] == "edge-relay"
    assert info.labels["deployment_environment"] == "prod"
    assert "service_instance_id" not in info.labels
    assert info.value == 1.0


def test_the_declarative_resource_form_is_read_too():
    port = free_port()
    config = load_yaml(relay_yaml({
        "metrics": {"readers": [{"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": port}}}}]},
        "resource": {"schema_url": "https://opentelemetry.io/schemas/1.26.0",
                     "attributes": [{"name": "service.name", "value": "edge"}, {"name": "k8s.pod.name", "value": "p-1"}]}}))
    assert [str(a) for a in config.advisories] == ["service::telemetry::resource::schema_url"]
    body = asyncio.run(run_relay(config, lambda: scrape_when_up(port)))
    (info,) = families(body)["target_info"].samples
    assert (info.labels["service_name"], info.labels["k8s_pod_name"]) == ("edge", "p-1")
    assert info.labels["service_instance_id"]            # the default stays unless removed


@pytest.mark.parametrize("metrics, addresses", [
    ({}, ["0.0.0.0:8888"]),                                    # the collector's default
    ({"address": "127.0.0.1:9999"}, ["127.0.0.1:9999"]),
    ({"readers": [{"pull": {"exporter": {"prometheus": {"host": "0.0.0.0", "port": 8889}}}}]}, ["0.0.0.0:8889"]),
    ({"readers": [{"pull": {"exporter": {"prometheus": {}}}}]}, ["localhost:9464"]),   # OpenTelemetry's defaults
    # The deprecated address became one more pull reader in the collector.
    ({"address": "127.0.0.1:9999", "readers": [{"pull": {"exporter": {"prometheus": {"host": "::1", "port": 1}}}}]},
     ["[::1]:1", "127.0.0.1:9999"]),
    ({"readers": [{"periodic": {"exporter": {"otlp": {"endpoint": "http://127.0.0.1:4318"}}}}]}, []),
])
def test_where_self_metrics_are_served(metrics, addresses):
    config = load_yaml(relay_yaml({"metrics": metrics}))
    assert config.telemetry.metrics.listen_addresses() == addresses


def test_without_target_info_leaves_it_out():
    port = free_port()
    config = load_yaml(relay_yaml({"metrics": {"readers": [{"pull": {"exporter": {"prometheus": {
        "host": "127.0.0.1", "port": port, "without_target_info": True}}}}]}}))
    body = asyncio.run(run_relay(config, lambda: scrape_when_up(port)))
    assert "target_info" not in families(body) and "otelcol_receiver_accepted_spans" in families(body)


@pytest.mark.parametrize("section, written, expected", [
    ("logs", "INFO", "info"),
    ("logs", "DEBUG", "debug"),
    ("logs", "Warn", "warn"),
    ("logs", "ERROR", "error"),
    ("logs", "FATAL", "fatal"),
    ("metrics", "Detailed", "detailed"),
    ("metrics", "NONE", "none"),
    ("metrics", "BASIC", "basic"),
])
def test_levels_are_read_in_any_case_as_the_collector_reads_them(section, written, expected):
    config = load_yaml(relay_yaml({section: {"level": written}}))
    assert getattr(config.telemetry, section).level == expected
    if section == "logs":
        assert expected in LEVELS


@pytest.mark.parametrize("telemetry, expected", [
    ({"logs": {"level": "LOUD"}},
     'service::telemetry::logs::level: "LOUD" is not one of: debug, info, warn, error, dpanic, panic, fatal'),
    ({"metrics": {"level": "Verbose"}},
     'service::telemetry::metrics::level: "Verbose" is not one of: none, basic, normal, detailed'),
    # The collector's rule: a level other than none needs a reader.
    ({"metrics": {"readers": []}},
     'service::telemetry::metrics::readers: at least one reader is needed unless level is "none"'),
    ({"metrics": {"readers": [{}]}}, "service::telemetry::metrics::readers::0: give exactly one of pull or periodic"),
    ({"metrics": {"readers": [{"pull": {"exporter": {"prometheus": {"port": 70000}}}}]}},
     "service::telemetry::metrics::readers::0::pull::exporter::prometheus::port: must be a port number (0-65535)"),
    ({"resource": {"team": ["a", "b"]}},
     "service::telemetry::resource::team: must be a string, number, boolean or null"),
])
def test_bad_telemetry_settings_name_the_key(telemetry, expected):
    assert expected in problems_of(relay_yaml(telemetry))


ADVISORY_TELEMETRY = {
    # Exports the relay's own lines (tests/test_self_logs.py), so it is no advisory; a port nothing listens on.
    "logs": {"level": "INFO", "processors": [{"batch": {"exporter": {"otlp": {
        "protocol": "grpc", "endpoint": f"http://127.0.0.1:{free_port()}"}}}}]},
    "metrics": {"level": "detailed", "readers": [
        {"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": 0}}}},
        # Pushes (tests/test_self_metrics_push.py), so it is no advisory; a port nothing listens on.
        {"periodic": {"interval": 30000, "exporter": {"otlp": {"protocol": "http/protobuf",
                                                               "endpoint": f"http://127.0.0.1:{free_port()}"}}}}]},
    "traces": {"propagators": ["tracecontext", "b3"], "processors": [{"batch": {"exporter": {"otlp": {
        "protocol": "grpc", "endpoint": "http://127.0.0.1:4317"}}}}]},
}


def test_otlp_self_telemetry_settings_are_accepted_as_advisory():
    config = load_yaml(relay_yaml(ADVISORY_TELEMETRY))
    assert [str(a) for a in config.advisories] == [
        "service::telemetry::traces::propagators",
        "service::telemetry::traces::processors",
    ]
    # The pull reader (port 0 here) is the only listener; the periodic one pushes, serving nothing.
    assert config.telemetry.metrics.listen_addresses() == ["127.0.0.1:0"]


def test_each_advisory_setting_is_logged_exactly_once_at_start():
    config = load_yaml(relay_yaml(ADVISORY_TELEMETRY, exporters={"otlp": {
        "endpoint": "127.0.0.1:1", "tls": {"insecure": True}, "sending_queue": {"batch": {}}}}))

    async def nothing():
        return None

    with Lines("relay.service") as lines:
        asyncio.run(run_relay(config, nothing))
    said = [m for m in lines.messages() if m.startswith("accepted, has no effect here: ")]
    assert sorted(said) == sorted(f"accepted, has no effect here: {path}" for path in (
        "service::telemetry::traces::propagators",
        "service::telemetry::traces::processors"))
    assert len(said) == len(set(said))
    # sending_queue.batch has an effect (the queue batches), so it is not among them.
    assert not any("sending_queue" in line for line in said)


def test_logs_sampling_and_initial_fields_apply_to_the_relays_own_lines():
    config = load_yaml(relay_yaml({"logs": {"level": "INFO", "encoding": "console",
                                            "sampling": {"initial": 2, "thereafter": 3, "tick": "1h"},
                                            "initial_fields": {"cluster": "eu-1"}}}))
    assert [str(a) for a in config.advisories] == ["service::telemetry::logs::encoding"]
    logs = config.telemetry.logs
    assert (logs.sampling.enabled, logs.sampling.tick, logs.sampling.initial, logs.sampling.thereafter) == (
        True, 3600.0, 2, 3)
    handler = Lines()
    logger = logging.getLogger("relay.test-sampling")
    relay_root = logging.getLogger("relay")
    saved = relay_root.handlers[:], relay_root.level, relay_root.propagate
    relay_root.handlers[:] = [handler]
    relay_root.setLevel(logging.INFO)
    installed = install_filters(log_filters(logs))
    try:
        for _ in range(10):
            logger.warning("queue full")
        logger.info("another message")
    finally:
        remove_filters(installed)
        relay_root.handlers[:], relay_root.level, relay_root.propagate = saved
    # zap's sampler within one tick: lines 1, 2, then 5 and 8 of a message; another message counts apart.
    assert handler.messages() == ["queue full"] * 4 + ["another message"]
    assert all(record.fields == {"cluster": "eu-1"} for record in handler.records)


def test_unset_sampling_keeps_every_line():
    config = load_yaml(relay_yaml({"logs": {"level": "info"}}))
    assert config.telemetry.logs.sampling is None and log_filters(config.telemetry.logs) == []


# --- exporter helper: sending_queue ---------------------------------------------------------------

def test_sending_queue_batch_takes_the_collectors_defaults_and_checks():
    config, problems = decode(otlp_grpc.Config, {"endpoint": "127.0.0.1:1", "sending_queue": {"batch": {}}})
    assert problems == []
    batch = config.sending_queue.batch
    assert (batch.flush_timeout, batch.min_size, batch.max_size, batch.sizer) == (0.2, 8192, 0, None)
    assert config.sending_queue.block_on_overflow is False
    _, problems = decode(otlp_grpc.Config, {"endpoint": "127.0.0.1:1", "sending_queue": {"batch": {
        "flush_timeout": "0s", "min_size": 100, "max_size": 10, "sizer": "requests"}}})
    assert [str(p) for p in problems] == [
        'sending_queue::batch::sizer: "requests" is not one of: items, bytes']
    _, problems = decode(otlp_grpc.Config, {"endpoint": "127.0.0.1:1", "sending_queue": {"batch": {
        "flush_timeout": "0s", "min_size": 100, "max_size": 10}}})
    assert [str(p) for p in problems] == [
        "sending_queue::batch::flush_timeout: must be positive",
        "sending_queue::batch::max_size: must be at least min_size (or 0, no maximum)"]


@pytest.mark.parametrize("block", [False, True])
def test_a_full_queue_refuses_or_with_block_on_overflow_waits_for_room(block):
    transport = GatedTransport()
    h = Harness(transport=transport, sending_queue={"queue_size": 1, "num_consumers": 1,
                                                    "block_on_overflow": block})

    async def run():
        async with h:
            assert await h.consume(traces_request(spans=2)) is None
            assert await until(lambda: transport.calls == 1)   # in flight, still holding the room
            second = asyncio.create_task(h.consume(traces_request(spans=3)))
            if not block:
                refused = await second
                transport.gate.set()
                return refused
            assert await until(lambda: len(h.exporter.queue._waiters) == 1)
            assert not second.done() and h.queue_size() == 1
            transport.gate.set()                                 # the first is delivered: room
            result = await second
            assert await until(lambda: h.sent(Signal.TRACES) == 5)
            return result

    result = asyncio.run(asyncio.wait_for(run(), 10))
    if block:
        assert result is None and h.enqueue_failed(Signal.TRACES) == 0
    else:
        assert isinstance(result, QueueFullError) and h.enqueue_failed(Signal.TRACES) == 3


def test_a_blocked_sender_whose_caller_gives_up_leaves_the_room_to_the_next():
    transport = GatedTransport()
    h = Harness(transport=transport, sending_queue={"queue_size": 1, "num_consumers": 1,
                                                    "block_on_overflow": True})

    async def run():
        async with h:
            assert await h.consume(traces_request(spans=1)) is None
            assert await until(lambda: transport.calls == 1)
            cancelled = asyncio.create_task(h.consume(traces_request(spans=7)))
            waiting = asyncio.create_task(h.consume(traces_request(spans=2)))
            assert await until(lambda: len(h.exporter.queue._waiters) == 2)
            cancelled.cancel()                                   # its client's deadline passed
            assert await until(lambda: len(h.exporter.queue._waiters) == 1)
            transport.gate.set()
            outcome = await waiting
            assert await until(lambda: h.sent(Signal.TRACES) == 3)
            return cancelled, outcome

    cancelled, outcome = asyncio.run(asyncio.wait_for(run(), 10))
    assert cancelled.cancelled() and outcome is None
    # The one given up on was never queued, so never delivered.
    assert sorted(Signal.TRACES.count(r) for r in transport.delivered) == [1, 2]


def test_a_blocked_grpc_export_ends_at_its_clients_deadline_and_queues_nothing():
    receiver_port = free_port()
    text = yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{receiver_port}"}}}},
        # Nothing listens downstream: the first request backs off in its consumer, holding the only room.
        "exporters": {"otlp": {"endpoint": f"127.0.0.1:{free_port()}", "tls": {"insecure": True},
                               "retry_on_failure": {"initial_interval": "1h", "max_interval": "1h",
                                                    "max_elapsed_time": 0},
                               "sending_queue": {"queue_size": 1, "num_consumers": 1, "block_on_overflow": True}}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}}}})
    config = load_yaml(text)

    async def run():
        graph = Graph(config, SelfMetrics(CollectorRegistry()))
        await graph.start()
        queue = graph.exporters[ComponentID("otlp")].queue
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver_port}") as channel:
                export = channel.unary_unary(Signal.TRACES.method)
                await export(traces_request(spans=1).SerializeToString(), timeout=5)
                assert await until(lambda: queue.used == 1 and not queue.pending)   # taken, backing off
                try:
                    await export(traces_request(spans=2).SerializeToString(), timeout=0.5)
                except grpc.aio.AioRpcError as error:
                    code = error.code()
                else:
                    code = grpc.StatusCode.OK
                assert await until(lambda: not queue._waiters)
                return code, queue.used
        finally:
            await graph.shutdown(2)

    code, used = asyncio.run(asyncio.wait_for(run(), 20))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert used == 1            # the one given up on took no room


def test_shutdown_refuses_a_sender_still_waiting_for_room():
    transport = GatedTransport()
    h = Harness(transport=transport, sending_queue={"queue_size": 1, "num_consumers": 1,
                                                    "block_on_overflow": True})

    async def run():
        await h.exporter.start()
        assert await h.consume(traces_request(spans=1)) is None
        assert await until(lambda: transport.calls == 1)
        waiting = asyncio.create_task(h.consume(traces_request(spans=4)))
        assert await until(lambda: len(h.exporter.queue._waiters) == 1)
        closing = asyncio.create_task(h.exporter.shutdown())
        outcome = await waiting
        transport.gate.set()
        await closing
        return outcome

    outcome = asyncio.run(asyncio.wait_for(run(), 10))
    assert isinstance(outcome, ShutdownError)
    assert h.enqueue_failed(Signal.TRACES) == 4


# --- debug exporter -------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def logged_per_burst(settings: dict, bursts: list[int], type_: str = "debug") -> list[int]:
    """How many of each burst of requests (one burst per second) the exporter logs, at normal
    verbosity (basic writes sums once a minute, see tests/test_exporter_debug.py)."""
    config, problems = decode(debug.Config, {"verbosity": "normal", **settings})
    assert problems == []
    clock = Clock()
    exporter = debug.create(Settings(ComponentID(type_, "x"), SelfMetrics(CollectorRegistry())), config,
                            clock=clock)
    counts = []
    with Lines("relay.component") as lines:
        for size in bursts:
            before = len(lines.messages())
            for _ in range(size):
                asyncio.run(exporter.consume(traces_request(spans=1)))
                clock.now += 0.001
            counts.append(sum(m == "traces received" for m in lines.messages()[before:]))
            clock.now += 1.0
    return counts


@pytest.mark.parametrize("settings, bursts, expected", [
    ({}, [5, 5], [5, 5]),                                              # defaults 2 then every 1st: all
    ({"sampling_initial": 2, "sampling_thereafter": 3}, [10, 10], [4, 4]),  # 1, 2, 5, 8 each second
    ({"sampling_initial": 1, "sampling_thereafter": 0}, [6, 3], [1, 1]),    # 0: none after the first
    ({"sampling_initial": 0, "sampling_thereafter": 2}, [6], [3]),          # 2, 4, 6
])
def test_debug_sampling_is_zaps_per_second_initial_then_every_mth(settings, bursts, expected):
    assert logged_per_burst(settings, bursts) == expected


@pytest.mark.parametrize("type_, settings, verbosity", [
    ("logging", {}, "normal"),                  # the logging exporter's own default
    ("logging", {"loglevel": "debug"}, "detailed"),
    ("logging", {"loglevel": "INFO"}, "normal"),
    ("logging", {"loglevel": "warn"}, "basic"),
    ("logging", {"loglevel": "error"}, "basic"),
    ("logging", {"verbosity": "detailed"}, "detailed"),
    ("debug", {}, "basic"),
])
def test_the_logging_alias_maps_loglevel_to_verbosity(type_, settings, verbosity):
    config, problems = decode(debug.Config, settings)
    assert problems == []
    assert config.effective_verbosity(type_) == verbosity


def test_a_logging_exporter_loads_and_warns_once_naming_debug():
    config = load_yaml(relay_yaml(exporters={"logging": {"loglevel": "debug", "sampling_initial": 5,
                                                         "sampling_thereafter": 200}}))
    (id_,) = config.components["exporters"]
    assert id_ == ComponentID("logging")
    with Lines("relay.component") as lines:
        exporter = debug.create(Settings(id_, SelfMetrics(CollectorRegistry())), config.components["exporters"][id_])
        asyncio.run(exporter.consume(traces_request(spans=1)))
    warnings = [r for r in lines.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and '"debug"' in warnings[0].getMessage()
    assert exporter.transport.verbosity == "detailed"


def test_loglevel_and_verbosity_together_is_a_problem():
    _, problems = decode(debug.Config, {"loglevel": "debug", "verbosity": "basic"})
    assert [str(p) for p in problems] == [
        "loglevel: give verbosity or loglevel, not both (loglevel is the logging exporter's old name for it)"]


def test_the_default_config_does_not_log_the_cost_counters_at_every_flush():
    from relay.defaults import DEFAULT_CONFIG

    config = load(DEFAULT_CONFIG, default_registry(), env={"GENOPS_RELAY_DATA": "/data"})
    (genops,) = [p for p in config.pipelines if p.id == "metrics/genops"]
    assert ComponentID("debug") not in genops.exporters


# --- prometheus receiver: global ------------------------------------------------------------------

def test_external_labels_are_set_on_every_scraped_series_over_a_scraped_label():
    registry = CollectorRegistry()
    requests = Counter("requests", "Requests", ["cluster", "path"], registry=registry)
    requests.labels("scraped", "/a").inc(4)

    async def run():
        recorder = Recorder()
        async with Endpoint(registry) as endpoint:
            config, problems = decode(prometheus_receiver.Config, {"config": {
                "global": {"scrape_interval": "1h", "evaluation_interval": "30s",
                           "external_labels": {"cluster": "eu-1", "replica": "a"}},
                "scrape_configs": [{"job_name": "app", "scrape_interval": "200ms",
                                    "static_configs": [{"targets": [endpoint.address]}]}]}})
            assert problems == []
            receiver = prometheus_receiver.create(Settings(ComponentID.parse("prometheus"),
                                                           SelfMetrics(CollectorRegistry())),
                                                  config, {Signal.METRICS: recorder})
            await receiver.start()
            try:
                await wait_until(lambda: recorder.requests, "the first scrape")
            finally:
                await receiver.shutdown()
        return recorder.requests[0]

    request = asyncio.run(run())
    found = metrics_of(request)
    (point,) = found["requests_total"].sum.data_points
    labels = {kv.key: kv.value.string_value for kv in point.attributes}
    # As the collector does: external labels are data point attributes and win a clash.
    assert labels == {"cluster": "eu-1", "replica": "a", "path": "/a"}
    (up,) = found["up"].gauge.data_points
    assert {kv.key: kv.value.string_value for kv in up.attributes} == {"cluster": "eu-1", "replica": "a"}


def test_rule_settings_of_global_are_advisory():
    text = textwrap.dedent("""\
        receivers:
          prometheus:
            config:
              global:
                evaluation_interval: 15s
                external_labels: {cluster: eu-1}
              scrape_configs:
                - job_name: app
                  static_configs: [{targets: ["127.0.0.1:9100"]}]
        exporters:
          debug: {}
        service:
          pipelines:
            metrics: {receivers: [prometheus], exporters: [debug]}
        """)
    config = load_yaml(text)
    assert [str(a) for a in config.advisories] == ["receivers::prometheus::config::global::evaluation_interval"]


# --- otlp exporter headers, prometheus namespace --------------------------------------------------

def test_upper_case_grpc_header_keys_are_sent_lower_cased(sink):
    config, problems = decode(otlp_grpc.Config, {"endpoint": sink.endpoint, "tls": {"insecure": True},
                                                 "sending_queue": {"enabled": False},
                                                 "headers": {"X-Api-Key": "secret", "X-Scope-OrgID": "t1"}})
    assert problems == []
    exporter = otlp_grpc.create(Settings(ComponentID.parse("otlp"), SelfMetrics(CollectorRegistry())), config)

    async def run():
        await exporter.start()
        try:
            await exporter.consume(traces_request(spans=1))
        finally:
            await exporter.shutdown()

    asyncio.run(asyncio.wait_for(run(), 10))
    (metadata,) = sink.metadata
    assert (metadata.get("x-api-key"), metadata.get("x-scope-orgid")) == ("secret", "t1")
    assert "X-Api-Key" not in metadata


@pytest.mark.parametrize("namespace, prefix", [
    ("genops-relay", "genops_relay_"),
    ("a-b", "a_b_"),
    ("team.cost", "team_cost_"),
    ("genops_openrouter", "genops_openrouter_"),
])
def test_a_namespace_is_sanitised_into_a_metric_name_prefix(namespace, prefix):
    async def scenario(port):
        return (await get(port))[2]

    body = serve_exporter(scenario, namespace=namespace)
    names = set(families(body))
    assert f"{prefix}requests" in names          # the counter family "<prefix>requests", _total samples
    assert f"{prefix}target_info" in names
