"""The reference collector config, run as written, and an OTLP/HTTP chain of two relays.

Only its endpoints and keys are pointed at local test servers, and the
vendor-specific ``datadog`` exporter is taken out (the README routes Datadog
through the Datadog Agent's OTLP intake instead). Every pipeline must deliver:
traces to OTLP and Jaeger, metrics to OTLP and Prometheus, logs to OTLP.
"""

from __future__ import annotations

import random
import re
import time
import urllib.request

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client import CollectorRegistry, Counter, start_http_server

from relay.signals import Signal
from tests.support import (
    JaegerSink,
    RelayProcess,
    Sink,
    free_port,
    logs_request,
    metrics_request,
    reference_config,
    traces_request,
)

SECRET = "hc-test-key-7d1c"


def local_reference_config(ports: dict, honeycomb: str, jaeger: str) -> str:
    text = reference_config()
    datadog = re.compile(r"  # Datadog\n  datadog:\n(    .*\n)+  \n")
    assert datadog.search(text)
    text = datadog.sub("", text).replace("exporters: [otlp/honeycomb, datadog, prometheus]",
                                         "exporters: [otlp/honeycomb, prometheus]")
    for old, new in {"0.0.0.0:4317": f"127.0.0.1:{ports['grpc']}",
                     "0.0.0.0:4318": f"127.0.0.1:{ports['http']}",
                     "openrouter-service:8000": f"127.0.0.1:{ports['target']}",
                     "https://api.honeycomb.io:443": f"http://{honeycomb}",
                     "0.0.0.0:8889": f"127.0.0.1:{ports['prometheus']}",
                     "jaeger-collector:14250": jaeger,
                     "0.0.0.0:13133": f"127.0.0.1:{ports['health']}",
                     "0.0.0.0:1777": f"127.0.0.1:{ports['pprof']}",
                     "0.0.0.0:55679": f"127.0.0.1:{ports['zpages']}"}.items():
        assert old in text, old
        text = text.replace(old, new)
    assert "0.0.0.0" not in text and "datadog" not in text
    # The relay's own metrics default to 0.0.0.0:8888 like the collector's; that endpoint moves too.
    return text.replace("service:\n", "service:\n  telemetry:\n    metrics:\n"
                                        f"      address: 127.0.0.1:{ports['telemetry']}\n", 1)


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def metrics_by_name(sink: Sink) -> dict:
    return {m.name: (rm.resource, m) for r in sink.requests[Signal.METRICS] for rm in r.resource_metrics
            for sm in rm.scope_metrics for m in sm.metrics}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()


def resource_of(resource) -> dict:
    return {kv.key: kv.value.string_value for kv in resource.attributes}


def test_the_reference_config_runs_as_written_and_every_pipeline_delivers(tmp_path, sink):
    jaeger = JaegerSink().start()
    target_registry = CollectorRegistry()
    Counter("openrouter_requests", "Requests the service made", ["model"], registry=target_registry
            ).labels("openai/gpt-4o").inc(42)
    ports = {name: free_port() for name in ("grpc", "http", "target", "prometheus", "health", "pprof", "zpages",
                                           "telemetry")}
    target, _ = start_http_server(ports["target"], addr="127.0.0.1", registry=target_registry)
    config = local_reference_config(ports, sink.endpoint, jaeger.endpoint)
    # The reference lists no service.extensions, so (as in the collector) no health check runs:
    # readiness is the OTLP port accepting a call.
    relay = RelayProcess(config, tmp_path, env={"HONEYCOMB_API_KEY": SECRET}).start()
    try:
        assert wait_for(lambda: relay.process.poll() is None and port_open(ports["grpc"]), 20), relay.log_text()
        resource = Resource.create({"service.name": "chat-api", "service_version": "1.4.2",
                                    "deployment_environment": "prod"})

        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"127.0.0.1:{ports['grpc']}", insecure=True)))
        with tracer_provider.get_tracer("genops.openrouter").start_as_current_span("chat openai/gpt-4o"):
            pass
        tracer_provider.shutdown()

        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"http://127.0.0.1:{ports['http']}/v1/metrics"),
            export_interval_millis=3_600_000)
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter_provider.get_meter("genops.openrouter").create_counter("genops.cost.total").add(
            0.25, {"genops.team": "search"})
        meter_provider.shutdown()

        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(
            OTLPLogExporter(endpoint=f"127.0.0.1:{ports['grpc']}", insecure=True)))
        logger_provider.get_logger("genops.openrouter").emit(body="budget 80% used")
        logger_provider.shutdown()

        # traces -> otlp/honeycomb and jaeger, through batch, resource and attributes/genops
        assert sink.wait_for(Signal.TRACES, 1, timeout=30)
        assert jaeger.wait_for_batches(1, timeout=30)
        spans = sink.requests[Signal.TRACES][0].resource_spans[0]
        assert resource_of(spans.resource).items() >= {"service.name": "genops-openrouter",
                                                       "service.version": "1.4.2", "environment": "prod"}.items()
        span_attrs = {kv.key: kv.value.string_value for kv in spans.scope_spans[0].spans[0].attributes}
        assert span_attrs == {"genops.cost.currency": "USD", "genops.provider": "openrouter"}
        batch = jaeger.batches[0]
        assert batch.process.service_name == "genops-openrouter"
        assert batch.spans[0].operation_name == "chat openai/gpt-4o"
        assert batch.spans[0].span_id == spans.scope_spans[0].spans[0].span_id

        # metrics -> otlp/honeycomb and prometheus, from OTLP/HTTP and from the prometheus receiver
        assert wait_for(lambda: {"genops.cost.total", "openrouter_requests_total", "up"} <= metrics_by_name(sink).keys())
        found = metrics_by_name(sink)
        cost_resource, cost = found["genops.cost.total"]
        assert (cost.description, cost.unit) == ("OpenRouter request cost in USD", "USD")
        assert cost.sum.data_points[0].as_double == 0.25
        assert resource_of(cost_resource)["service.name"] == "genops-openrouter"
        assert found["openrouter_requests_total"][1].sum.data_points[0].as_double == 42
        exposed = scrape(ports["prometheus"])
        assert re.search(r'^genops_openrouter_genops_cost_USD_total\{[^}]*service="openrouter"[^}]*\} 0\.25$',
                         exposed, re.M), exposed
        assert re.search(r'^genops_openrouter_openrouter_requests_total\{[^}]*model="openai/gpt-4o"[^}]*\} 42\.0$',
                         exposed, re.M), exposed

        # logs -> otlp/honeycomb, through batch and resource
        assert sink.wait_for(Signal.LOGS, 1, timeout=30)
        logs = sink.requests[Signal.LOGS][0].resource_logs[0]
        assert logs.scope_logs[0].log_records[0].body.string_value == "budget 80% used"
        assert resource_of(logs.resource)["service.name"] == "genops-openrouter"

        assert {m["x-honeycomb-team"] for m in sink.metadata} == {SECRET}
    finally:
        assert relay.stop() == 0
        jaeger.stop()
        target.shutdown()
    assert SECRET not in relay.log_text()


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- OTLP/HTTP from one relay to another -------------------------------------------------

def chain_configs(ports: dict, sink: str, encoding: str) -> tuple[str, str]:
    first = f"""\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{ports['first']}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{ports['second']}
    encoding: {encoding}
extensions:
  health_check:
    endpoint: 127.0.0.1:{ports['first_health']}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
""" + "".join(f"    {s}: {{receivers: [otlp], exporters: [otlphttp]}}\n" for s in ("traces", "metrics", "logs"))
    second = f"""\
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{ports['second']}
exporters:
  otlp:
    endpoint: {sink}
    tls: {{insecure: true}}
extensions:
  health_check:
    endpoint: 127.0.0.1:{ports['second_health']}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
""" + "".join(f"    {s}: {{receivers: [otlp], exporters: [otlp]}}\n" for s in ("traces", "metrics", "logs"))
    return first, second


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_otlphttp_to_a_second_relay_delivers_the_data_identical(tmp_path, sink, encoding):
    ports = {name: free_port() for name in ("first", "second", "first_health", "second_health")}
    first_config, second_config = chain_configs(ports, sink.endpoint, encoding)
    (tmp_path / "second").mkdir()
    (tmp_path / "first").mkdir()
    second = RelayProcess(second_config, tmp_path / "second", ports["second_health"]).start()
    first = RelayProcess(first_config, tmp_path / "first", ports["first_health"]).start()
    rng = random.Random(9)
    sent = {Signal.TRACES: [traces_request(5, rng=rng) for _ in range(3)],
            Signal.METRICS: [metrics_request()], Signal.LOGS: [logs_request()]}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{ports['first']}") as channel:
            for signal, requests in sent.items():
                export = channel.unary_unary(signal.method)
                for request in requests:
                    export(request.SerializeToString(), timeout=10)
        for signal, requests in sent.items():
            assert sink.wait_for(signal, sum(signal.count(r) for r in requests), timeout=30), signal
    finally:
        assert first.stop() == 0
        assert second.stop() == 0
    for signal, requests in sent.items():
        # Identical requests, in any order (each relay's queue delivers concurrently).
        assert sorted(r.SerializeToString() for r in sink.requests[signal]) == sorted(
            r.SerializeToString() for r in requests), signal
