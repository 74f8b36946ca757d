"""The production monitoring guide's Prometheus rules and Grafana queries, pasted unchanged,
return data against a relay running its built-in default config.

The rules file and the dashboard JSON are taken from the guide's fenced code blocks here, in
the test (the blocks under "Prometheus Rules" and "OpenRouter Dashboard JSON"), and the rules
file is written byte for byte as printed. A real Prometheus scrapes the relay every second and
evaluates the rules every second; the real OpenTelemetry SDK sends LLM spans, some answered 503.

deploy/prometheus/openrouter-rules.yaml holds corrected rules (tests/e2e/test_prometheus_e2e.py);
this test holds the relay to the guide as printed: every expression must at least match series.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests import promtools
from tests.e2e.test_default_config import GPT4O_IN, GPT4O_OUT, default_config_on_free_ports
from tests.e2e.test_prometheus_e2e import Prometheus
from tests.support import TESTDATA, RelayProcess

# The reference document, copied unchanged (the whole guide, so the blocks are found as a reader finds them).
GUIDE = TESTDATA / "production-monitoring-guide.md"

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
HEADING = re.compile(r"^#+ (.+)$", re.M)


def fenced_blocks(markdown: str) -> list[tuple[str, str, str]]:
    """(nearest heading above, language, text exactly as between the fences) of every block."""
    blocks = []
    for match in FENCE.finditer(markdown):
        headings = HEADING.findall(markdown[:match.start()])
        blocks.append((headings[-1].strip() if headings else "", match.group(1), match.group(2)))
    return blocks


def guide_block(heading: str, language: str) -> str:
    found = [text for under, lang, text in fenced_blocks(GUIDE.read_text(encoding="utf-8"))
             if under == heading and lang == language]
    assert len(found) == 1, f"expected one {language} block under {heading!r}, found {len(found)}"
    return found[0]


# How Grafana fills in a query for the dashboard's default selection, with a Prometheus data
# source left at Grafana's default scrape interval (15s) and the guide's time range (6h):
# - $__interval is the time range over the panel's data points, rounded to a step Grafana
#   likes: 6h / 1000 points is 21.6s, shown as 20s;
# - $__rate_interval is max($__interval + scrape interval, 4 x scrape interval) = 1m;
# - $__range is the time range, 6h;
# - a template variable takes its saved current value; "All" ($__all) takes the variable's
#   allValue, else Grafana's regex of every value, which .* stands for with =~ matchers.
# The guide's dashboard uses none of these today; a later edition that adds $team or
# $__rate_interval is filled in the same way, and anything left over fails the test.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "20s", "__range": "6h"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def grafana_expr(expr: str, dashboard: dict) -> str:
    values = dict(GRAFANA_BUILTINS)
    for variable in dashboard.get("templating", {}).get("list", []):
        current = variable.get("current", {}).get("value", "")
        if isinstance(current, list):
            current = current[0] if len(current) == 1 else "$__all"
        if current in ("$__all", "All", ["$__all"]) or (variable.get("includeAll") and not current):
            current = variable.get("allValue") or ".*"
        values[variable["name"]] = str(current)

    def fill(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        assert name in values, f"Grafana variable {name!r} in {expr!r} has no default selection"
        return values[name]

    filled = VARIABLE.sub(fill, expr)
    assert "$" not in filled, filled
    return filled


def send(port: int) -> dict[str, float]:
    """LLM spans from the real SDK: two teams, each call of a series alike; ads' calls answered 503.
    Returns what one call of each team costs at the built-in gpt-4o price."""
    calls = {"search": (1200, 300, None), "ads": (400, 80, 503)}
    provider = TracerProvider(resource=Resource.create({"service.name": "chat-api"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    for _ in range(3):
        for team, (tokens_in, tokens_out, status) in calls.items():
            with tracer.start_as_current_span("chat openai/gpt-4o", kind=SpanKind.CLIENT, attributes={
                    "gen_ai.request.model": "openai/gpt-4o", "gen_ai.system": "openai", "genops.team": team,
                    "genops.project": "assist", "genops.openrouter.actual_provider": "OpenAI",
                    "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out}) as span:
                if status is not None:
                    span.set_attribute("http.response.status_code", status)
                    span.set_status(Status(StatusCode.ERROR, "upstream unavailable"))
    provider.shutdown()
    return {team: tokens_in * GPT4O_IN + tokens_out * GPT4O_OUT for team, (tokens_in, tokens_out, _) in calls.items()}


@pytest.fixture
def guide_stack(tmp_path):
    rules_text = guide_block("Prometheus Rules", "yaml")
    dashboard_text = guide_block("OpenRouter Dashboard JSON", "json")
    config, ports = default_config_on_free_ports()
    # Prometheus first: without its binary the test skips before any process has started.
    prometheus = Prometheus(tmp_path, ports["prometheus"], ports["telemetry"], rules=rules_text)
    try:
        relay = RelayProcess(config, tmp_path, ports["health"]).start()
    except BaseException:
        prometheus.stop()
        raise
    try:
        yield relay, prometheus, ports, rules_text, dashboard_text
    finally:
        prometheus.stop()
        assert relay.stop() == 0, relay.log_text()


def test_the_guides_rules_and_dashboard_queries_return_data_as_printed(guide_stack, tmp_path):
    relay, prometheus, ports, rules_text, dashboard_text = guide_stack
    assert (tmp_path / "rules.yaml").read_text() == rules_text  # the file Prometheus loads, as printed
    records = [rule["record"] for group in yaml.safe_load(rules_text)["groups"] for rule in group["rules"]
               if "record" in rule]
    assert records == ["genops_openrouter:request_rate", "genops_openrouter:error_rate",
                       "genops_openrouter:cost_per_request", "genops_openrouter:provider_success_rate",
                       "genops_openrouter:daily_cost_by_team"]

    loaded = prometheus.wait_for(lambda: [r for g in prometheus.api("rules")["groups"] for r in g["rules"]],
                                 "the guide's rules loaded")
    assert {r["name"] for r in loaded if r["type"] == "recording"} == set(records)
    prometheus.wait_for(lambda: prometheus.query('up{job="genops-relay"} == 1'), "the first scrape of the relay")

    per_call = send(ports["otlp"])

    def finite(expr: str) -> list[dict]:
        return [r for r in prometheus.query(expr) if math.isfinite(float(r["value"][1]))]

    def by_team(expr: str) -> dict[str, float] | None:
        """A record's finite samples by team, once both teams have one above zero (a new series is
        first reported at zero, so the first rates are 0 until the next flush is scraped)."""
        got = {r["metric"].get("genops_team", ""): float(r["value"][1]) for r in finite(expr)}
        return got if set(got) == {"search", "ads"} and all(v > 0 for v in got.values()) else None

    # Each recording rule returns data. The values are what the expressions mean as printed.
    rate = prometheus.wait_for(lambda: by_team("genops_openrouter:request_rate"), "genops_openrouter:request_rate")
    assert rate.keys() == {"search", "ads"}

    # Each call of a series costs the same, so cost over requests is one call's cost.
    cost = prometheus.wait_for(lambda: by_team("genops_openrouter:cost_per_request"),
                               "genops_openrouter:cost_per_request")
    for team, value in cost.items():
        assert value == pytest.approx(per_call[team], rel=1e-6), team

    # As printed, a 5xx series is divided by itself: 1 (and the success rate 0), only for ads.
    errors = prometheus.wait_for(lambda: finite("genops_openrouter:error_rate"), "genops_openrouter:error_rate")
    assert {(r["metric"]["genops_team"], r["metric"]["http_status_code"]) for r in errors} == {("ads", "503")}
    assert [float(r["value"][1]) for r in errors] == [1.0]
    success = prometheus.wait_for(lambda: finite("genops_openrouter:provider_success_rate"),
                                  "genops_openrouter:provider_success_rate")
    assert [(r["metric"]["genops_team"], float(r["value"][1])) for r in success] == [("ads", 0.0)]

    daily = prometheus.wait_for(lambda: by_team("genops_openrouter:daily_cost_by_team"),
                                "genops_openrouter:daily_cost_by_team")
    assert daily.keys() == {"search", "ads"}

    # Every query of the guide's dashboard returns data, filled in as Grafana would.
    dashboard_file = tmp_path / "openrouter-dashboard.json"
    dashboard_file.write_text(dashboard_text)
    dashboard = json.loads(dashboard_text)
    dashboard = dashboard.get("dashboard", dashboard)
    expressions = promtools.dashboard_expressions(dashboard_file)
    assert len(expressions) == len(dashboard["panels"]) == 5
    for expr in expressions:
        query = grafana_expr(expr, dashboard)
        assert prometheus.wait_for(lambda q=query: finite(q), f"dashboard query {query}"), query


def test_grafana_variables_are_filled_in_as_for_the_default_selection():
    dashboard = {"templating": {"list": [
        {"name": "team", "includeAll": True, "allValue": ".+", "current": {"text": "All", "value": ["$__all"]}},
        {"name": "model", "current": {"text": "openai/gpt-4o", "value": "openai/gpt-4o"}},
        {"name": "provider", "includeAll": True, "current": {"text": "All", "value": "$__all"}},
    ]}}
    expr = ('sum(rate(x{genops_team=~"$team", genops_model="${model}", p=~"[[provider]]"}[$__rate_interval]))'
            " / $__range")
    assert grafana_expr(expr, dashboard) == ('sum(rate(x{genops_team=~".+", genops_model="openai/gpt-4o", '
                                             'p=~".*"}[1m])) / 6h')
    with pytest.raises(AssertionError, match="no default selection"):
        grafana_expr('x{a="$unknown"}', dashboard)


def test_fenced_blocks_keep_their_text_exactly():
    markdown = "# A\n\n#### Rules\n\n```yaml\ngroups: []\n  # kept  \n```\n\n```json\n{}\n```\n"
    assert fenced_blocks(markdown) == [("Rules", "yaml", "groups: []\n  # kept  \n"), ("Rules", "json", "{}\n")]
