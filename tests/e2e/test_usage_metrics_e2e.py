"""Cost from GenAI usage metrics, with the real openai-v2 instrumentation and the built-in config.

Metrics alone (traces sampled out): a real Prometheus scrapes the cost counters, and the
reference dashboard's cost panel has data. Spans and metrics of the same calls: whatever
``cost_from`` says, each call is charged once."""

from __future__ import annotations

import time

import pytest

from tests import promtools
from tests.e2e.test_default_config import default_config_on_free_ports, scrape
from tests.e2e.test_llm_libraries import require_venv
from tests.e2e.test_prometheus_e2e import Prometheus
from tests.llm_libraries.libraries import BY_NAME
from tests.llm_libraries.run import drive
from tests.llm_libraries.standin import USAGE, StandIn
from tests.support import RelayProcess

# openai/gpt-4o-mini at list price (OpenRouter's listing, as in the built-in database): USD per
# million tokens. The usage histogram does not tell cached input apart, so all input is at the input rate.
LIST_INPUT, LIST_OUTPUT = 0.15, 0.60
TEAM = BY_NAME["otel-openai-v2"].team


def test_metrics_only_usage_is_costed_per_team_through_the_built_in_config(tmp_path):
    library = BY_NAME["otel-openai-v2"]
    require_venv(library)
    config, ports = default_config_on_free_ports()
    # Prometheus first: without its binary the test skips before the relay has started.
    prometheus = Prometheus(tmp_path, ports["prometheus"], ports["telemetry"])
    try:
        relay = RelayProcess(config, tmp_path, ports["health"]).start()
    except BaseException:
        prometheus.stop()
        raise
    try:
        with StandIn() as stand_in:
            drive(library, stand_in.base_url, f"http://127.0.0.1:{ports['otlp_http']}/v1/traces",
                  mode="otel-openai-v2-metrics",
                  env={"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{ports['otlp_http']}/v1/metrics",
                       "OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "always_off"})
        assert [call.kind for call in stand_in.calls] == ["plain", "stream", "cached"]
        want = sum(USAGE[kind].prompt_tokens * LIST_INPUT + USAGE[kind].completion_tokens * LIST_OUTPUT
                   for kind in ("plain", "stream", "cached")) / 1_000_000

        def cost_by_team():
            found = {r["metric"].get("genops_team"): float(r["value"][1])
                     for r in prometheus.query("sum by (genops_team) (genops_openrouter_cost_total)")}
            return found if found.get(TEAM, 0) > 0 else None

        found = prometheus.wait_for(cost_by_team, "the team's cost in Prometheus")
        assert found == {TEAM: pytest.approx(want, rel=1e-9)}
        requests = prometheus.query("sum(genops_openrouter_requests_total)")
        assert float(requests[0]["value"][1]) == 3
        cost_panel = next(e for e in promtools.dashboard_expressions(promtools.DASHBOARD)
                          if e.startswith("sum by (genops_team) (increase(genops_openrouter_cost_total[1h]"))
        panel = prometheus.wait_for(lambda: [r for r in prometheus.query(cost_panel) if float(r["value"][1]) > 0],
                                    "data in the dashboard's cost panel")
        assert {r["metric"]["genops_team"] for r in panel} == {TEAM}
    finally:
        prometheus.stop()
        assert relay.stop() == 0, relay.log_text()


@pytest.mark.parametrize("cost_from", ["auto", "traces", "metrics"])
def test_an_app_sending_spans_and_usage_metrics_is_charged_once(tmp_path, cost_from):
    """The real instrumentation sends spans and usage metrics of the same three calls."""
    library = BY_NAME["otel-openai-v2"]
    require_venv(library)
    config, ports = default_config_on_free_ports()
    config = config.replace("    cost_from: auto\n", f"    cost_from: {cost_from}\n    metrics_flush_interval: 200ms\n")
    relay = RelayProcess(config, tmp_path, ports["health"]).start()
    try:
        endpoint = f"http://127.0.0.1:{ports['otlp_http']}"
        with StandIn() as stand_in:
            # Both signals are acknowledged, so counted, before the driver exits.
            drive(library, stand_in.base_url, f"{endpoint}/v1/traces", mode="otel-openai-v2-both",
                  env={"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{endpoint}/v1/metrics",
                       "OTEL_METRICS_EXPORTER": "otlp"})
        # This instrumentation reports no cached tokens on its spans, so spans and usage
        # metrics price the calls alike: one copy at list price.
        one_copy = sum(USAGE[kind].prompt_tokens * LIST_INPUT + USAGE[kind].completion_tokens * LIST_OUTPUT
                       for kind in ("plain", "stream", "cached")) / 1_000_000
        totals: dict[str, float] = {}
        for _ in range(50):  # flushes every 200 ms: up to 10 s for the final counts to show
            time.sleep(0.2)
            totals = {}
            for (name, labels), value in scrape(ports["prometheus"]).items():
                if dict(labels).get("genops_team") == TEAM:
                    totals[name] = totals.get(name, 0.0) + value
            if totals.get("genops_openrouter_requests_total", 0) >= 3:
                break
        time.sleep(1.0)  # five more flushes: a second copy would have shown by now
        totals = {}
        for (name, labels), value in scrape(ports["prometheus"]).items():
            if dict(labels).get("genops_team") == TEAM:
                totals[name] = totals.get(name, 0.0) + value
        assert totals.get("genops_openrouter_requests_total") == 3, totals
        assert totals["genops_openrouter_cost_total"] == pytest.approx(one_copy, rel=1e-9)
    finally:
        assert relay.stop() == 0, relay.log_text()
