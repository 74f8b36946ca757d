"""A real Prometheus scrapes a relay that prices LLM spans from the real SDK.

It loads the shipped rules, with the daily-cost alert's threshold lowered so
that it fires. Costs are computed here from rates written here; the relay's
answer must match them to 1e-9 through Prometheus' own HTTP API.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests import promtools
from tests.support import RelayProcess, free_port

# Per million tokens, configured as overrides below so the expected costs are independent of the database.
RATES = {"openai/gpt-4o": (2.5, 10.0), "anthropic/claude-3.5-sonnet": (3.0, 15.0)}

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
processors:
  genops:
    pricing:
      overrides:
        - {{model: openai/gpt-4o, input: 2.5, output: 10.0}}
        - {{model: anthropic/claude-3.5-sonnet, input: 3.0, output: 15.0}}
connectors:
  genops_metrics:
    metrics_flush_interval: 1s
exporters:
  prometheus:
    endpoint: 127.0.0.1:{prom_port}
    namespace: genops_openrouter
    const_labels: {{service: openrouter}}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [genops]
      exporters: [genops_metrics]
    metrics:
      receivers: [genops_metrics]
      exporters: [prometheus]
  telemetry:
    metrics:
      address: 127.0.0.1:{telemetry}
"""

PROMETHEUS_CONFIG = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: genops-relay
    static_configs: [{{targets: ["127.0.0.1:{prom_port}"]}}]
  - job_name: genops-relay-telemetry
    static_configs: [{{targets: ["127.0.0.1:{telemetry}"]}}]
"""

# (team, model, input tokens, output tokens, error) — three teams, some errors, one unpriced model.
CALLS = [
    ("search", "openai/gpt-4o", 1200, 300, False),
    ("search", "anthropic/claude-3.5-sonnet", 800, 150, False),
    ("ads", "openai/gpt-4o", 5000, 1000, True),
    ("ads", "openai/gpt-4o", 250, 50, False),
    ("support", "anthropic/claude-3.5-sonnet", 4000, 900, False),
    ("support", "openai/gpt-4o", 100, 20, True),
    ("support", "acme/unpriced-model", 10, 10, False),
]


def expected_costs(calls) -> dict[str, float]:
    costs: dict[str, float] = {}
    for team, model, tokens_in, tokens_out, _ in calls:
        if model in RATES:
            rate_in, rate_out = RATES[model]
            costs[team] = costs.get(team, 0.0) + (tokens_in * rate_in + tokens_out * rate_out) / 1_000_000
    return costs


def send(port: int, calls) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "chat-api"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for team, model, tokens_in, tokens_out, error in calls:
        with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes={
                "gen_ai.request.model": model, "gen_ai.system": "openai", "genops.team": team,
                "genops.openrouter.actual_provider": "OpenAI" if "gpt" in model else "Anthropic",
                "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out}) as span:
            if error:
                span.set_status(Status(StatusCode.ERROR, "upstream failed"))
                span.set_attribute("http.response.status_code", 502)
    provider.shutdown()


class Prometheus:
    def __init__(self, tmp_path, relay_port: int, telemetry_port: int, rules: str | None = None):
        self.port = free_port()
        (tmp_path / "prometheus.yml").write_text(PROMETHEUS_CONFIG.format(prom_port=relay_port,
                                                                           telemetry=telemetry_port))
        if rules is None:
            rules = promtools.rules_with_threshold(promtools.RULES, "OpenRouterHighDailyCost", 0.001)
        (tmp_path / "rules.yaml").write_text(rules)
        self.log = open(tmp_path / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [promtools.binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list:
        return self.api("query", query=expr)["result"]

    def wait_for(self, check, what: str, timeout: float = 60.0):
        """Polls ``check`` until it returns something truthy; Prometheus works on its own clock."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return last
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; last answer: {last}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture
def stack(tmp_path):
    ports = {name: free_port() for name in ("port", "prom_port", "health", "telemetry")}
    # Prometheus first: without its binary the test skips before any process has started.
    prometheus = Prometheus(tmp_path, ports["prom_port"], ports["telemetry"])
    try:
        relay = RelayProcess(CONFIG.format(**ports), tmp_path, ports["health"]).start()
    except BaseException:
        prometheus.stop()
        raise
    try:
        yield relay, prometheus, ports
    finally:
        prometheus.stop()
        assert relay.stop() == 0


def test_cost_counters_rules_alerts_and_dashboard_through_a_real_prometheus(stack):
    relay, prometheus, ports = stack
    prometheus.wait_for(lambda: prometheus.query('up{job="genops-relay"} == 1'), "the first scrape")

    # Two rounds: increase() ignores a counter's first sample, so the first round creates the
    # series and the second is what rate-based rules and the daily-cost alert see grow.
    first, second = CALLS[:3] + CALLS[6:], CALLS[3:6]
    send(ports["port"], first)
    prometheus.wait_for(lambda: len(prometheus.query("genops_openrouter_cost_total")) >= 2, "the first costs")
    send(ports["port"], second)

    want = expected_costs(CALLS)

    def per_team() -> dict[str, float] | None:
        got = {r["metric"]["genops_team"]: float(r["value"][1])
               for r in prometheus.query("sum by (genops_team) (genops_openrouter_cost_total)")}
        return got if set(got) == set(want) and all(abs(got[t] - want[t]) <= 1e-9 for t in want) else None

    got = prometheus.wait_for(per_team, "the per-team costs")
    assert got.keys() == {"search", "ads", "support"}
    for team, cost in want.items():
        assert got[team] == pytest.approx(cost, abs=1e-9)

    every_series = prometheus.query('{__name__=~"genops_openrouter_.*", service!="openrouter"}')
    assert every_series == []  # const_labels reach every series of the exporter

    def numbers(expr: str) -> list[float]:
        # Series idle over the window are 0/0 = NaN by Prometheus' rules; the rest must be numbers.
        return [v for v in (float(r["value"][1]) for r in prometheus.query(expr)) if v == v]

    for expr in ("genops_openrouter:cost_per_request", "genops_openrouter:error_rate",
                 "histogram_quantile(0.95, sum by (le) (rate(genops_openrouter_request_duration_seconds_bucket[1m])))"):
        assert all(v >= 0 for v in prometheus.wait_for(lambda e=expr: numbers(e), expr))

    errors = prometheus.query('sum by (genops_team) (genops_openrouter_requests_total{http_status_code="502"})')
    assert {r["metric"]["genops_team"]: float(r["value"][1]) for r in errors} == {"ads": 1.0, "support": 1.0}

    firing = prometheus.wait_for(
        lambda: [a for a in prometheus.api("alerts")["alerts"]
                 if a["labels"]["alertname"] == "OpenRouterHighDailyCost" and a["state"] == "firing"],
        "the lowered daily-cost alert")
    assert {a["labels"]["genops_team"] for a in firing} <= {"search", "ads", "support"}

    for expr in promtools.dashboard_expressions(promtools.DASHBOARD):
        assert prometheus.wait_for(lambda e=expr: prometheus.query(e), f"dashboard query {expr}"), expr
