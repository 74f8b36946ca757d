"""A relay process scrapes a prometheus_client endpoint and a real Prometheus server's own
/metrics with its ``prometheus`` receiver, and exports what it read over OTLP/gRPC to a sink."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from relay.signals import Signal
from tests import promtools
from tests.support import RelayProcess, free_port, wait_for_answer

CONFIG = """
receivers:
  prometheus:
    config:
      global:
        scrape_interval: 1m
      scrape_configs:
        - job_name: app
          scrape_interval: 300ms
          static_configs:
            - targets: ["127.0.0.1:{app}"]
              labels: {{env: e2e}}
        - job_name: prometheus
          scrape_interval: 300ms
          metrics_path: /metrics
          static_configs:
            - targets: ["127.0.0.1:{prometheus}"]
exporters:
  otlp:
    endpoint: {sink}
    tls:
      insecure: true
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [otlp]
  telemetry:
    metrics:
      address: 127.0.0.1:{telemetry}
"""

# Prometheus' own settings barely matter: the relay scrapes Prometheus, not the other way round.
PROMETHEUS_CONFIG = "global:\n  scrape_interval: 1m\nscrape_configs: []\n"


def attrs(kvs) -> dict:
    return {kv.key: kv.value.string_value for kv in kvs}


def by_job(sink) -> dict[str, dict]:
    """job -> metric name -> the latest Metric that arrived for that job."""
    found: dict[str, dict] = {}
    for request in list(sink.requests[Signal.METRICS]):
        for rm in request.resource_metrics:
            job = attrs(rm.resource.attributes).get("service.name")
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    found.setdefault(job, {})[metric.name] = metric
    return found


@pytest.fixture
def app_endpoint():
    registry = CollectorRegistry()
    requests = Counter("e2e_requests", "Requests handled", ["path"], registry=registry)
    requests.labels("/chat").inc(42)
    Gauge("e2e_queue_depth", "Queued items", registry=registry).set(3)
    latency = Histogram("e2e_latency_seconds", "Latency", buckets=(0.5,), registry=registry)
    latency.observe(0.2)
    latency.observe(0.7)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield port
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def prometheus_server(tmp_path):
    binary = promtools.binary("prometheus")  # under CI a missing binary fails, never skips
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(PROMETHEUS_CONFIG)
    log = open(tmp_path / "prometheus.log", "wb")
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    yield port
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    log.close()


def test_scraped_values_arrive_at_the_sink_as_otlp(tmp_path, sink, app_endpoint, prometheus_server):
    ports = {"app": app_endpoint, "prometheus": prometheus_server, "sink": sink.endpoint,
             "health": free_port(), "telemetry": free_port()}
    relay = RelayProcess(CONFIG.format(**ports), tmp_path, ports["health"]).start()
    try:
        def both_up():
            found = by_job(sink)
            ups = {job: metrics["up"].gauge.data_points[0].as_double
                   for job, metrics in found.items() if "up" in metrics}
            return found if ups == {"app": 1.0, "prometheus": 1.0} and "prometheus_build_info" in found.get(
                "prometheus", {}) else None

        found = wait_for_answer(both_up, "both targets up, Prometheus' build info included")

        app = found["app"]
        (counter,) = app["e2e_requests_total"].sum.data_points
        assert app["e2e_requests_total"].sum.is_monotonic
        assert counter.as_double == 42.0
        assert attrs(counter.attributes) == {"path": "/chat", "env": "e2e"}
        assert app["e2e_queue_depth"].gauge.data_points[0].as_double == 3.0
        (histogram,) = app["e2e_latency_seconds"].histogram.data_points
        assert (list(histogram.explicit_bounds), list(histogram.bucket_counts), histogram.count) == (
            [0.5], [1, 1], 2)
        assert histogram.sum == pytest.approx(0.9)

        (build,) = found["prometheus"]["prometheus_build_info"].gauge.data_points
        assert build.as_double == 1.0
        assert attrs(build.attributes)["version"]  # e.g. "2.45.3+ds"
        assert found["prometheus"]["process_cpu_seconds_total"].sum.is_monotonic
        gc_pauses = found["prometheus"]["go_gc_duration_seconds"].summary.data_points[0]
        assert gc_pauses.quantile_values and all(0 <= q.quantile <= 1 for q in gc_pauses.quantile_values)

        resources = {attrs(rm.resource.attributes)["service.name"]: attrs(rm.resource.attributes)
                     for request in list(sink.requests[Signal.METRICS]) for rm in request.resource_metrics}
        for job in ("app", "prometheus"):
            assert resources[job] == {"service.name": job, "service.instance.id": f"127.0.0.1:{ports[job]}",
                                      "server.port": str(ports[job]), "url.scheme": "http"}

        with urllib.request.urlopen(f"http://127.0.0.1:{ports['telemetry']}/metrics", timeout=5) as answer:
            telemetry = answer.read().decode()
        assert 'otelcol_receiver_accepted_metric_points_total{receiver="prometheus",transport="http"}' in telemetry
        assert any(line.get("msg") == "scraping targets" and line.get("targets") == 2 for line in relay.log_lines())
    finally:
        assert relay.stop() == 0, relay.log_text()
