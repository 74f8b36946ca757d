"""The built-in default config, as a user runs it: send spans to 4317 and 4318, scrape 8889, get cost per team.

The config is the built-in one with only its listen ports moved to free ones.
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client.parser import text_string_to_metric_families

from relay.defaults import DEFAULT_CONFIG
from tests.support import RelayProcess, free_port

# openai/gpt-4o in the built-in database (genai-prices 0.2.3's OpenRouter listing): $2.50 / $10 per million.
GPT4O_IN, GPT4O_OUT = 2.5e-6, 10e-6


def scrape(port: int) -> dict[tuple, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


DEFAULT_PORTS = {"otlp": "4317", "otlp_http": "4318", "prometheus": "8889", "health": "13133", "telemetry": "8888"}


def default_config_on_free_ports() -> tuple[str, dict[str, int]]:
    """The built-in default config with only its listen addresses moved to free loopback ports."""
    ports = {name: free_port() for name in DEFAULT_PORTS}
    config = DEFAULT_CONFIG
    for name, port in DEFAULT_PORTS.items():
        config = config.replace(f"0.0.0.0:{port}", f"127.0.0.1:{ports[name]}")
    assert "0.0.0.0" not in config
    return config, ports


def test_run_with_no_config_serves_per_team_cost_counters(tmp_path):
    config, ports = default_config_on_free_ports()
    relay = RelayProcess(config, tmp_path, ports["health"]).start()
    try:
        # One span over OTLP/gRPC (4317), one over OTLP/HTTP (4318).
        exporters = (OTLPSpanExporter(endpoint=f"127.0.0.1:{ports['otlp']}", insecure=True),
                     HttpSpanExporter(endpoint=f"http://127.0.0.1:{ports['otlp_http']}/v1/traces"))
        for exporter, (tokens_in, tokens_out) in zip(exporters, ((1000, 100), (3000, 700))):
            provider = TracerProvider(resource=Resource.create({"service.name": "chat-api", "genops.team": "search"}))
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
            with tracer.start_as_current_span("chat openai/gpt-4o", attributes={
                    "gen_ai.request.model": "openai/gpt-4o", "gen_ai.system": "openai",
                    "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out}):
                pass
            provider.shutdown()

        want = (4000 * GPT4O_IN + 800 * GPT4O_OUT)
        deadline = time.monotonic() + 30  # two flushes of the default 5 s interval, with room
        found = {}
        while time.monotonic() < deadline:
            found = {labels: value for (name, labels), value in scrape(ports["prometheus"]).items()
                     if name == "genops_openrouter_cost_total"}
            if found and sum(found.values()) > 0:
                break
            time.sleep(0.5)
        assert len(found) == 1, found
        labels, value = next(iter(found.items()))
        labels = dict(labels)
        assert (labels["genops_team"], labels["genops_project"], labels["genops_model"], labels["service"]) == (
            "search", "unassigned", "openai/gpt-4o", "openrouter")
        assert value == pytest.approx(want, rel=1e-9)
    finally:
        assert relay.stop() == 0


def test_application_metrics_leave_with_team_and_project_labels(tmp_path):
    """The SDK's metrics through the built-in config: genops attributes every data point, and
    the prometheus exporter turns the attribution into labels."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    config, ports = default_config_on_free_ports()
    relay = RelayProcess(config, tmp_path, ports["health"]).start()
    try:
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"127.0.0.1:{ports['otlp']}", insecure=True),
            export_interval_millis=60_000)
        provider = MeterProvider(resource=Resource.create({"service.name": "checkout", "genops.team": "payments"}),
                                 metric_readers=[reader])
        orders = provider.get_meter("checkout").create_counter("orders", unit="{order}")
        orders.add(3, {"region": "eu"})
        orders.add(4, {"region": "us", "genops.project": "cart"})
        provider.force_flush()
        provider.shutdown()
        deadline = time.monotonic() + 20
        found = {}
        while time.monotonic() < deadline and len(found) < 2:
            found = {dict(labels)["region"]: (dict(labels), value)
                     for (name, labels), value in scrape(ports["prometheus"]).items()
                     if name == "genops_openrouter_orders_total"}
            time.sleep(0.2)
        assert set(found) == {"eu", "us"}, found
        eu, us = found["eu"], found["us"]
        assert (eu[0]["genops_team"], eu[0]["genops_project"], eu[1]) == ("payments", "unassigned", 3)
        assert (us[0]["genops_team"], us[0]["genops_project"], us[1]) == ("payments", "cart", 4)
    finally:
        assert relay.stop() == 0
