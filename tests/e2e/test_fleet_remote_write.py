"""Two relays of the shipped DaemonSet remote-write one team's cost into one real Prometheus.

Each relay runs the ``prometheusremotewrite`` exporter exactly as deploy/kubernetes/configmap.yaml
ships it (endpoint and replica label from the environment, as the DaemonSet sets them), in
place of its other exporters. Both count the same team, under the same resource
(``service.name: genops-relay``, no instance): only the replica label keeps their series apart.
Prometheus must then hold one series per replica, each with that replica's share, refuse
nothing, and sum to the total computed here from the rates written here.
"""

from __future__ import annotations

import contextlib
import copy
import urllib.request
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_remote_write_prometheus import Prometheus
from tests.support import RelayProcess, free_port, wait_for_answer

CONFIGMAP = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "configmap.yaml"
RATES = {"openai/gpt-4o": (2.5, 10.0), "anthropic/claude-3.5-sonnet": (3.0, 15.0)}
# (model, input tokens, output tokens) per replica, all for team "search".
CALLS = {
    "node-a": [("openai/gpt-4o", 1200, 300), ("anthropic/claude-3.5-sonnet", 800, 150)],
    "node-b": [("openai/gpt-4o", 5000, 1000), ("openai/gpt-4o", 250, 50), ("anthropic/claude-3.5-sonnet", 40, 9)],
}
# Prometheus' own counters of samples it refused (by sample type; a type appears once counted,
# too_old only in newer releases): any above 0 means two writers collided.
REFUSED = ("prometheus_tsdb_out_of_order_samples_total", "prometheus_tsdb_out_of_bound_samples_total",
           "prometheus_tsdb_too_old_samples_total")


def cost(calls) -> float:
    return sum((tokens_in * RATES[model][0] + tokens_out * RATES[model][1]) / 1_000_000
               for model, tokens_in, tokens_out in calls)


def shipped_remote_write() -> dict:
    configmap = yaml.safe_load(CONFIGMAP.read_text(encoding="utf-8"))
    return yaml.safe_load(configmap["data"]["relay.yaml"])["exporters"]["prometheusremotewrite"]


def relay_config(ports: dict) -> str:
    overrides = [{"model": model, "input": rate_in, "output": rate_out} for model, (rate_in, rate_out) in RATES.items()]
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{ports['otlp']}"}}}},
        "processors": {"genops": {"pricing": {"overrides": overrides}}},
        "connectors": {"genops_metrics": {"metrics_flush_interval": "1s"}},
        "exporters": {"prometheusremotewrite": copy.deepcopy(shipped_remote_write())},
        "extensions": {"health_check": {"endpoint": f"127.0.0.1:{ports['health']}"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["genops"], "exporters": ["genops_metrics"]},
                "metrics": {"receivers": ["otlp", "genops_metrics"], "exporters": ["prometheusremotewrite"]},
            },
            "telemetry": {"metrics": {"address": f"127.0.0.1:{ports['telemetry']}"}},
        },
    }
    return yaml.safe_dump(config, sort_keys=False)


def send(port: int, replica: str, calls) -> None:
    """LLM spans for team search, and one app counter (its resource has an instance: a target_info)."""
    resource = Resource.create({"service.name": "chat-api", "service.instance.id": f"chat-api-{replica}"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for model, tokens_in, tokens_out in calls:
        with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes={
                "gen_ai.request.model": model, "gen_ai.system": "openai", "genops.team": "search",
                "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out}):
            pass
    provider.shutdown()
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"127.0.0.1:{port}", insecure=True),
                                           export_interval_millis=60_000)
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    meters.get_meter("chat-api").create_counter("chat.requests").add(len(calls))
    meters.shutdown()  # exports once on the way out


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@contextlib.contextmanager
def running_fleet(tmp_path, labels: dict[str, str]):
    """One relay per entry of CALLS, each with RELAY_REPLICA from ``labels``, into one Prometheus."""
    prometheus = Prometheus(tmp_path)  # first: without its binary the test skips before a relay starts
    relays = {}
    try:
        prometheus.wait_ready()
        for replica in CALLS:
            ports = {name: free_port() for name in ("otlp", "health", "telemetry")}
            directory = tmp_path / replica
            directory.mkdir()
            env = {"RELAY_REPLICA": labels[replica], "RELAY_REMOTE_WRITE_ENDPOINT": prometheus.write_url}
            relays[replica] = (RelayProcess(relay_config(ports), directory, ports["health"], env=env).start(), ports)
        yield prometheus, relays
    finally:
        stopped = {replica: relay.stop() for replica, (relay, _) in relays.items()}
        prometheus.stop()
    assert stopped == {replica: 0 for replica in relays}


@pytest.fixture
def fleet(tmp_path):
    with running_fleet(tmp_path, {replica: replica for replica in CALLS}) as running:
        yield running


def test_two_replicas_write_disjoint_series_that_sum_to_the_fleet_total(fleet):
    prometheus, relays = fleet
    for replica, (_, ports) in relays.items():
        send(ports["otlp"], replica, CALLS[replica])
    want = {replica: cost(calls) for replica, calls in CALLS.items()}

    def per_replica():
        got = {r["metric"]["relay_replica"]: float(r["value"][1])
               for r in prometheus.query('sum by (relay_replica) (genops_openrouter_cost_total{genops_team="search"})')}
        return got if got.keys() == want.keys() and all(abs(got[r] - want[r]) <= 1e-9 for r in want) else None

    got = wait_for_answer(per_replica, "each replica's cost")
    assert got == pytest.approx(want, abs=1e-9)
    # The same team's counter, once per replica: the two differ in relay_replica alone.
    series = prometheus.query('genops_openrouter_cost_total{genops_team="search", genops_model="openai/gpt-4o"}')
    assert sorted(s["metric"]["relay_replica"] for s in series) == ["node-a", "node-b"]
    first, second = ({k: v for k, v in s["metric"].items() if k != "relay_replica"} for s in series)
    assert first == second
    assert prometheus.value('sum(genops_openrouter_cost_total{genops_team="search"})') == pytest.approx(
        cost(CALLS["node-a"] + CALLS["node-b"]), abs=1e-9)

    # Every series carries the shipped external labels, target_info of the app's resource included.
    wait_for_answer(lambda: len(prometheus.query("genops_openrouter_target_info")) == 2, "both apps' target_info")
    info = {s["metric"]["instance"]: s["metric"]["relay_replica"]
            for s in prometheus.query("genops_openrouter_target_info")}
    assert info == {"chat-api-node-a": "node-a", "chat-api-node-b": "node-b"}
    written = prometheus.query('{__name__=~"genops_openrouter_.+"}')
    assert len(written) > len(series)
    assert [s["metric"] for s in written if s["metric"].get("relay_replica") not in CALLS] == []
    assert [s["metric"] for s in written if s["metric"].get("service") != "openrouter"] == []

    # A few more flushes of both relays land too: the replicas keep writing without colliding.
    stamp = prometheus.value('max(timestamp(genops_openrouter_cost_total{relay_replica="node-b"}))')
    wait_for_answer(lambda: prometheus.value('min(timestamp(genops_openrouter_cost_total))') > stamp + 1,
             "later flushes of both replicas")
    own = scrape(f"http://127.0.0.1:{prometheus.port}/metrics")
    assert {(name, labels): v for (name, labels), v in own.items() if name in REFUSED and v} == {}
    writes = {dict(labels)["code"]: value for (name, labels), value in own.items()
              if name == "prometheus_http_requests_total" and dict(labels)["handler"] == "/api/v1/write"}
    assert writes.get("204", 0) > 0 and set(writes) == {"204"}, writes
    for replica, (_, ports) in relays.items():
        telemetry = scrape(f"http://127.0.0.1:{ports['telemetry']}/metrics")
        failed = [v for (name, _), v in telemetry.items() if name == "otelcol_exporter_send_failed_metric_points_total"]
        assert sum(failed) == 0, replica
        sent = [v for (name, _), v in telemetry.items() if name == "otelcol_exporter_sent_metric_points_total"]
        assert sum(sent) > 0, replica


def test_without_distinct_replica_labels_the_fleet_total_is_lost(tmp_path):
    # The control: both relays with one label write one series per model, so Prometheus
    # keeps one relay's value of it (or refuses samples), never the sum of both.
    with running_fleet(tmp_path, {replica: "same" for replica in CALLS}) as (prometheus, relays):
        for replica, (_, ports) in relays.items():
            send(ports["otlp"], replica, CALLS[replica])
        want = {model for calls in CALLS.values() for model, _, _ in calls}
        wait_for_answer(lambda: {r["metric"]["genops_model"] for r in prometheus.query("genops_openrouter_cost_total")}
                 == want, "both models' cost")
        per_model = {r["metric"]["genops_model"]: float(r["value"][1])
                     for r in prometheus.query('genops_openrouter_cost_total{genops_team="search"}')}
        assert len(per_model) == len(want)  # one series per model, not one per relay
        for model in want:
            shares = {replica: cost([c for c in calls if c[0] == model]) for replica, calls in CALLS.items()}
            assert per_model[model] != pytest.approx(sum(shares.values()), abs=1e-9), model
