"""The Prometheus rules and config, Alertmanager config and Grafana dashboard under deploy/.

Checked offline with the real tools: promtool validates the rules and the Prometheus config,
parses every dashboard query (as recording rules) and unit-tests the rules on synthetic
series (``promtool test rules``); amtool validates the Alertmanager config and its routing.
The binaries come from tests/promtools.py: missing ones skip these tests, or fail them when
CI is set.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import promtools
from tests.promtools import ALERTMANAGER_CONFIG, BUDGET_RULES, DASHBOARD, PROMETHEUS_CONFIG, RULES

# The production monitoring guide's record and alert names: dashboards and queries written
# against the guide use them, so the deployed rules keep every one.
GUIDE_RECORDS = {
    "genops_openrouter:request_rate",
    "genops_openrouter:error_rate",
    "genops_openrouter:cost_per_request",
    "genops_openrouter:provider_success_rate",
    "genops_openrouter:daily_cost_by_team",
}
GUIDE_ALERTS = {
    "OpenRouterHighErrorRate",
    "OpenRouterHighLatency",
    "OpenRouterHighDailyCost",
    "OpenRouterServiceDown",
}
GUIDE_PANELS = {"Request Rate", "Cost Tracking", "Provider Distribution", "Error Rate",
                "Response Time Distribution"}
ADDED_PANELS = {"Cost by Team", "Cost by Model", "Unpriced Requests"}


def run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{output}"
    return output


def rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def rule(name: str) -> dict:
    (found,) = [r for r in rules() if name in (r.get("record"), r.get("alert"))]
    return found


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels() -> dict[str, dict]:
    return {panel["title"]: panel for panel in dashboard()["panels"]}


def same_query(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


# --- the files pass their own tools' checks ---------------------------------------------


def test_promtool_check_rules():
    output = run(promtools.binary("promtool"), "check", "rules", str(RULES))
    assert f"SUCCESS: {len(rules())} rules found" in output


def test_promtool_check_config_loads_the_rules_file():
    # promtool also checks the rule files the config names, resolved next to the config.
    output = run(promtools.binary("promtool"), "check", "config", str(PROMETHEUS_CONFIG))
    assert "SUCCESS: 2 rule files found" in output
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert [PROMETHEUS_CONFIG.parent / f for f in config["rule_files"]] == [RULES, BUDGET_RULES]


def test_amtool_check_config():
    run(promtools.binary("amtool"), "check-config", str(ALERTMANAGER_CONFIG))


@pytest.mark.parametrize("labels, receiver", [
    (["severity=critical", "service=openrouter"], "critical"),
    (["severity=warning", "service=openrouter"], "openrouter-alerts"),
    (["severity=info", "service=openrouter"], "openrouter-alerts"),
    (["severity=warning", "service=other"], "default"),
])
def test_alertmanager_routes_by_severity_then_service(labels, receiver):
    output = run(promtools.binary("amtool"), "config", "routes", "test",
                 f"--config.file={ALERTMANAGER_CONFIG}", *labels)
    assert output.splitlines()[0].strip() == receiver


def test_alertmanager_reads_the_webhook_url_from_a_file():
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    assert config["global"]["slack_api_url_file"]
    assert "slack_api_url" not in config["global"]
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack, receiver["name"]
        for webhook in receiver.get("webhook_configs", []):
            assert "url" not in webhook and "url_file" in webhook, receiver["name"]
    assert not re.search(r"https?://", ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))


# --- rules: structure ---------------------------------------------------------------------


def test_rules_keep_the_guides_names_and_add_the_unpriced_alert():
    names = {r.get("record") or r.get("alert") for r in rules()}
    assert GUIDE_RECORDS | GUIDE_ALERTS | {"OpenRouterUnpricedSpans"} <= names
    assert "otelcol_processor_genops_unpriced_spans_total" in rule("OpenRouterUnpricedSpans")["expr"]


def test_every_alert_has_for_severity_summary_and_description():
    alerts = [r for r in rules() if "alert" in r]
    assert len(alerts) >= len(GUIDE_ALERTS) + 1
    for alert in alerts:
        assert re.fullmatch(r"\d+[smh]", str(alert.get("for", ""))), alert["alert"]
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}, alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], alert["alert"]


def test_service_down_watches_every_relay_job_in_the_prometheus_config():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert jobs
    (pattern,) = re.findall(r'up\{job=~"([^"]+)"\}', rule("OpenRouterServiceDown")["expr"])
    for job in jobs:
        assert re.fullmatch(pattern, job), job


def test_cost_alert_threshold_is_one_literal_at_the_end():
    assert rule("OpenRouterHighDailyCost")["expr"].strip() == "genops_openrouter:daily_cost_by_team > 100"


# --- rules: behaviour (promtool test rules) --------------------------------------------


def labels(**pairs: str) -> str:
    return ", ".join(f'{key}="{value}"' for key, value in pairs.items())


def series(name: str, **pairs: str) -> str:
    return f"{name}{{{labels(**pairs)}}}"


def cost(team, project, model, provider) -> str:
    return series("genops_openrouter_cost_total", genops_team=team, genops_project=project, genops_model=model,
                  genops_openrouter_actual_provider=provider, service="openrouter")


def requests(team, project, model, provider, status) -> str:
    return series("genops_openrouter_requests_total", genops_team=team, genops_project=project,
                  genops_model=model, genops_openrouter_actual_provider=provider, http_status_code=status,
                  service="openrouter")


def promtool_test(tmp_path: Path, rule_file: Path, *tests: dict) -> str:
    """Run ``promtool test rules`` for ``tests`` against ``rule_file``; fails with promtool's report."""
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(yaml.safe_dump({
        "rule_files": [str(rule_file)],
        "evaluation_interval": "1m",
        "tests": list(tests),
    }, sort_keys=False), encoding="utf-8")
    return run(promtools.binary("promtool"), "test", "rules", str(test_file))


# Hourly cost counters over 30 hours. Per rolling 24h: team a 240 + 120 = 360 USD;
# team b 72 + 48 = 120 USD with no single model over 100 (so only a per-team sum crosses the
# budget); team c 24 USD.
COST_SERIES = [
    {"series": cost("a", "p1", "m1", "x"), "values": "0+10x30"},
    {"series": cost("a", "p2", "m2", "y"), "values": "0+5x30"},
    {"series": cost("b", "p3", "m1", "x"), "values": "0+3x30"},
    {"series": cost("b", "p3", "m3", "z"), "values": "0+2x30"},
    {"series": cost("c", "p4", "m1", "x"), "values": "0+1x30"},
]


def cost_alert(team: str, spent: str) -> dict:
    return {
        "exp_labels": {"severity": "info", "service": "openrouter", "genops_team": team},
        "exp_annotations": {
            "summary": "OpenRouter daily cost threshold exceeded",
            "description": f"Team {team} spent ${spent} on OpenRouter in the last 24 hours",
        },
    }


def test_daily_cost_by_team_sums_every_model_and_project_of_a_team(tmp_path):
    promtool_test(tmp_path, RULES, {
        "interval": "1h",
        "input_series": COST_SERIES,
        "promql_expr_test": [{
            "expr": "genops_openrouter:daily_cost_by_team",
            "eval_time": "30h",
            "exp_samples": [
                {"labels": 'genops_openrouter:daily_cost_by_team{genops_team="a"}', "value": 360},
                {"labels": 'genops_openrouter:daily_cost_by_team{genops_team="b"}', "value": 120},
                {"labels": 'genops_openrouter:daily_cost_by_team{genops_team="c"}', "value": 24},
            ],
        }],
    })


def test_daily_cost_alert_fires_per_team_over_100(tmp_path):
    promtool_test(tmp_path, RULES, {
        "interval": "1h",
        "input_series": COST_SERIES,
        "alert_rule_test": [{
            "eval_time": "30h",
            "alertname": "OpenRouterHighDailyCost",
            "exp_alerts": [cost_alert("a", "360.00"), cost_alert("b", "120.00")],
        }],
    })


def test_rules_with_threshold_makes_the_cost_alert_fire_lower(tmp_path):
    lowered = tmp_path / "lowered-rules.yaml"
    lowered.write_text(promtools.rules_with_threshold(RULES, "OpenRouterHighDailyCost", 20), encoding="utf-8")
    run(promtools.binary("promtool"), "check", "rules", str(lowered))
    promtool_test(tmp_path, lowered, {
        "interval": "1h",
        "input_series": COST_SERIES,
        "alert_rule_test": [{
            "eval_time": "30h",
            "alertname": "OpenRouterHighDailyCost",
            "exp_alerts": [cost_alert("a", "360.00"), cost_alert("b", "120.00"), cost_alert("c", "24.00")],
        }],
    })


# The same teams' hourly cost as two DaemonSet relays remote-write it: identical series but
# for relay_replica (the node's name, deploy/kubernetes). node-a's relay restarts at hour 11,
# and its counter starts again from 0 under the same label. Per rolling 24h at 30h: team a
# node-a 40 (hours 6-10) + 190 (hours 11-30: the reset adds the new count, 0) = 230, node-b
# 120, so 350; team b 72 + 48 = 120, crossing 100 only as the sum of both relays.
def replica_cost_series(a_on_node_a: str) -> list[dict]:
    return [
        {"series": series("genops_openrouter_cost_total", genops_team=team, genops_model="m1", service="openrouter",
                          relay_replica=replica), "values": values}
        for team, replica, values in [("a", "node-a", a_on_node_a), ("a", "node-b", "0+5x30"),
                                      ("b", "node-a", "0+3x30"), ("b", "node-b", "0+2x30")]
    ]


# Team a's relay on node-a restarts at 10h: its counter starts again from 0.
REPLICA_COST_SERIES = replica_cost_series("0+10x10 0+10x19")


def test_daily_cost_by_team_sums_the_replicas_of_a_fleet(tmp_path):
    promtool_test(tmp_path, RULES, {
        "interval": "1h",
        "input_series": REPLICA_COST_SERIES,
        "promql_expr_test": [{
            "expr": "genops_openrouter:daily_cost_by_team",
            "eval_time": "30h",
            "exp_samples": [
                {"labels": 'genops_openrouter:daily_cost_by_team{genops_team="a"}', "value": 350},
                {"labels": 'genops_openrouter:daily_cost_by_team{genops_team="b"}', "value": 120},
            ],
        }],
    })


def test_the_daily_cost_alert_fires_once_per_team_not_once_per_replica(tmp_path):
    # The alert's group may be evaluated before the recording rule's at the same instant, so it can
    # see the rule's value of a minute before: counters without a reset give the same value at both.
    promtool_test(tmp_path, RULES, {
        "interval": "1h",
        "input_series": replica_cost_series("0+10x30"),
        # The alert carries no relay_replica: one per team, with the fleet's total.
        "alert_rule_test": [{
            "eval_time": "30h",
            "alertname": "OpenRouterHighDailyCost",
            "exp_alerts": [cost_alert("a", "360.00"), cost_alert("b", "120.00")],
        }],
    })


# Per-minute counters over 25 minutes, evaluated at 20m (5m rate windows):
#   team a, model m1 via x: 3 ok + 1 server error a minute, 2 USD a minute
#   team a, model m2 via y: 2 ok a minute, no errors, 1 USD a minute
#   team b, model m1 via z: 1 ok + 1 server error a minute, 0.5 USD a minute
#   team c, model m9 via w: 2000 ok a minute, no cost series
TRAFFIC_SERIES = [
    {"series": requests("a", "p1", "m1", "x", "200"), "values": "0+3x25"},
    {"series": requests("a", "p1", "m1", "x", "500"), "values": "0+1x25"},
    {"series": requests("a", "p1", "m2", "y", "200"), "values": "0+2x25"},
    {"series": requests("b", "p3", "m1", "z", "200"), "values": "0+1x25"},
    {"series": requests("b", "p3", "m1", "z", "503"), "values": "0+1x25"},
    {"series": requests("c", "p5", "m9", "w", "200"), "values": "0+2000x25"},
    {"series": cost("a", "p1", "m1", "x"), "values": "0+2x25"},
    {"series": cost("a", "p1", "m2", "y"), "values": "0+1x25"},
    {"series": cost("b", "p3", "m1", "z"), "values": "0+0.5x25"},
]


def test_error_rate_cost_per_request_and_provider_success_rate(tmp_path):
    def sample(record, value, **pairs):
        return {"labels": series(f"genops_openrouter:{record}", **pairs), "value": value}

    promtool_test(tmp_path, RULES, {
        "interval": "1m",
        "input_series": TRAFFIC_SERIES,
        "promql_expr_test": [
            {
                "expr": "genops_openrouter:error_rate",
                "eval_time": "20m",
                "exp_samples": [
                    sample("error_rate", 0.25, genops_team="a", genops_model="m1"),
                    sample("error_rate", 0, genops_team="a", genops_model="m2"),
                    sample("error_rate", 0.5, genops_team="b", genops_model="m1"),
                    sample("error_rate", 0, genops_team="c", genops_model="m9"),
                ],
            },
            {
                "expr": "genops_openrouter:cost_per_request",
                "eval_time": "20m",
                "exp_samples": [
                    sample("cost_per_request", 0.5, genops_team="a", genops_project="p1", genops_model="m1",
                           genops_openrouter_actual_provider="x"),
                    sample("cost_per_request", 0.5, genops_team="a", genops_project="p1", genops_model="m2",
                           genops_openrouter_actual_provider="y"),
                    sample("cost_per_request", 0.25, genops_team="b", genops_project="p3", genops_model="m1",
                           genops_openrouter_actual_provider="z"),
                ],
            },
            {
                "expr": "genops_openrouter:provider_success_rate",
                "eval_time": "20m",
                "exp_samples": [
                    sample("provider_success_rate", 0.75, genops_openrouter_actual_provider="x"),
                    sample("provider_success_rate", 1, genops_openrouter_actual_provider="y"),
                    sample("provider_success_rate", 0.5, genops_openrouter_actual_provider="z"),
                    sample("provider_success_rate", 1, genops_openrouter_actual_provider="w"),
                ],
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": "20m",
                "alertname": "OpenRouterHighErrorRate",
                "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "service": "openrouter",
                                    "genops_team": "a", "genops_model": "m1"},
                     "exp_annotations": {
                         "summary": "OpenRouter error rate is high",
                         "description": "Error rate for team a, model m1 is 25% for the last 2 minutes"}},
                    {"exp_labels": {"severity": "warning", "service": "openrouter",
                                    "genops_team": "b", "genops_model": "m1"},
                     "exp_annotations": {
                         "summary": "OpenRouter error rate is high",
                         "description": "Error rate for team b, model m1 is 50% for the last 2 minutes"}},
                ],
            },
            {
                "eval_time": "20m",
                "alertname": "OpenRouterHighRequestRate",
                "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "service": "openrouter",
                                   "genops_team": "c", "genops_model": "m9"},
                    "exp_annotations": {"summary": "OpenRouter request rate is high",
                                        "description": "Team c sends 2000 requests per minute to m9"},
                }],
            },
        ],
    })


def bucket(instance: str, team: str, le: str) -> str:
    return series("genops_openrouter_request_duration_seconds_bucket", genops_team=team, genops_model="m1",
                  genops_openrouter_actual_provider="x", le=le, instance=instance)


def test_latency_service_down_failover_and_unpriced_alerts(tmp_path):
    unpriced = "otelcol_processor_genops_unpriced_spans_total"
    switches = "genops_openrouter_provider_switches_total"
    promtool_test(tmp_path, RULES, {
        "interval": "1m",
        "input_series": [
            # Team a's requests are served by two relay replicas: r1 answers within 1s, r2 in
            # 1-10s. Together the p95 is 9.1s; a per-replica quantile would report r2 alone.
            {"series": bucket("r1", "a", "1"), "values": "0+10x25"},
            {"series": bucket("r1", "a", "10"), "values": "0+10x25"},
            {"series": bucket("r1", "a", "+Inf"), "values": "0+10x25"},
            {"series": bucket("r2", "a", "1"), "values": "0x25"},
            {"series": bucket("r2", "a", "10"), "values": "0+10x25"},
            {"series": bucket("r2", "a", "+Inf"), "values": "0+10x25"},
            # Team b is fast everywhere.
            {"series": bucket("r1", "b", "1"), "values": "0+10x25"},
            {"series": bucket("r1", "b", "10"), "values": "0+10x25"},
            {"series": bucket("r1", "b", "+Inf"), "values": "0+10x25"},
            # The relay's exporter goes down after 2 minutes; other jobs are not the relay.
            {"series": 'up{job="genops-relay", instance="relay:8889"}', "values": "1 1 0x23"},
            {"series": 'up{job="genops-relay-telemetry", instance="relay:8888"}', "values": "1x25"},
            {"series": 'up{job="something-else", instance="other:9100"}', "values": "0x25"},
            # m1 fails over 2 times a minute, m2 once in 10 minutes.
            {"series": series(switches, genops_model="m1", genops_openrouter_predicted_provider="x",
                             genops_openrouter_actual_provider="y"), "values": "0+2x25"},
            {"series": series(switches, genops_model="m2", genops_openrouter_predicted_provider="x",
                             genops_openrouter_actual_provider="y"), "values": "0+0.1x25"},
            # Unpriced spans: a new model whose series first appears at 10m already at 3
            # (increase() alone misses it), a model with a steady trickle, and a model whose
            # last unpriced span was long ago (no alert).
            {"series": series(unpriced, processor="genops", model="new-model", reason="unknown_model"),
             "values": "_x10 3x15"},
            {"series": series(unpriced, processor="genops", model="trickle", reason="unknown_model"),
             "values": "0+1x25"},
            {"series": series(unpriced, processor="genops", model="old", reason="unknown_model"),
             "values": "5x25"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "20m",
                "alertname": "OpenRouterHighLatency",
                "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "service": "openrouter", "genops_team": "a",
                                   "genops_model": "m1", "genops_openrouter_actual_provider": "x"},
                    "exp_annotations": {
                        "summary": "OpenRouter latency is high",
                        "description": "95th percentile latency for team a, model m1 via x is 9.1s"},
                }],
            },
            {
                "eval_time": "20m",
                "alertname": "OpenRouterServiceDown",
                "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "service": "openrouter",
                                   "job": "genops-relay", "instance": "relay:8889"},
                    "exp_annotations": {
                        "summary": "OpenRouter service is down",
                        "description": "genops-relay target relay:8889 has been down for more than 1 minute"},
                }],
            },
            {
                "eval_time": "20m",
                "alertname": "OpenRouterProviderFailover",
                "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "service": "openrouter", "genops_model": "m1"},
                    "exp_annotations": {
                        "summary": "OpenRouter is failing over between providers",
                        "description": "Model m1 was served by a provider other than the predicted one 40 times "
                                       "in the last hour"},
                }],
            },
            {
                "eval_time": "20m",
                "alertname": "OpenRouterUnpricedSpans",
                "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "service": "openrouter",
                                    "model": "new-model", "reason": "unknown_model"},
                     "exp_annotations": {
                         "summary": "LLM spans without a price",
                         "description": "3 spans for model new-model were not priced (unknown_model) in the last "
                                        "15 minutes; their cost is missing from the cost metrics"}},
                    {"exp_labels": {"severity": "warning", "service": "openrouter",
                                    "model": "trickle", "reason": "unknown_model"},
                     "exp_annotations": {
                         "summary": "LLM spans without a price",
                         "description": "15 spans for model trickle were not priced (unknown_model) in the last "
                                        "15 minutes; their cost is missing from the cost metrics"}},
                ],
            },
        ],
    })


# --- rules_with_threshold ------------------------------------------------------------------


def test_rules_with_threshold_changes_only_that_alerts_literal():
    original = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    changed = yaml.safe_load(promtools.rules_with_threshold(RULES, "OpenRouterHighDailyCost", 0.001))
    cost_rules = [r for g in changed["groups"] for r in g["rules"] if r.get("alert") == "OpenRouterHighDailyCost"]
    assert [r["expr"] for r in cost_rules] == ["genops_openrouter:daily_cost_by_team > 0.001"]
    for rule_ in cost_rules:
        rule_["expr"] = "genops_openrouter:daily_cost_by_team > 100"
    assert changed == original


@pytest.mark.parametrize("alert, threshold, message", [
    ("NoSuchAlert", 1, "expected one alert"),
    ("OpenRouterHighDailyCost", float("nan"), "finite number"),
    ("OpenRouterHighDailyCost", True, "finite number"),
])
def test_rules_with_threshold_rejects(alert, threshold, message):
    with pytest.raises(ValueError, match=message):
        promtools.rules_with_threshold(RULES, alert, threshold)


def test_rules_with_threshold_needs_a_trailing_literal(tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"alert": "NoLiteral", "expr": "up == bool up", "for": "1m"}]}]}), encoding="utf-8")
    with pytest.raises(ValueError, match="does not end in"):
        promtools.rules_with_threshold(rules_file, "NoLiteral", 1)


# --- the Grafana dashboard -----------------------------------------------------------------


def test_dashboard_expressions_parse_as_promql(tmp_path):
    # promtool has no "parse this query" command, but it parses a rule's expr when it checks
    # a rules file: every dashboard query becomes a recording rule.
    expressions = promtools.dashboard_expressions(DASHBOARD)
    rules_file = tmp_path / "dashboard-rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(expressions)]}]}),
        encoding="utf-8")
    output = run(promtools.binary("promtool"), "check", "rules", str(rules_file))
    assert f"SUCCESS: {len(expressions)} rules found" in output


def test_dashboard_has_the_guides_panels_and_cost_by_team_model_and_unpriced():
    titles = set(panels())
    assert GUIDE_PANELS | ADDED_PANELS <= titles
    assert "otelcol_processor_genops_unpriced_spans_total" in panels()["Unpriced Requests"]["targets"][0]["expr"]
    assert "by (genops_model)" in panels()["Cost by Model"]["targets"][0]["expr"]


def test_dashboard_queries_match_the_recording_rules_they_show():
    # The panels query the raw series (so the dashboard works without the rules loaded), and
    # must compute the same thing as the records the alerts use.
    assert same_query(panels()["Error Rate"]["targets"][0]["expr"], rule("genops_openrouter:error_rate")["expr"])
    assert same_query(panels()["Cost by Team"]["targets"][0]["expr"],
                      rule("genops_openrouter:daily_cost_by_team")["expr"])


def test_dashboard_is_importable():
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    assert board.get("id") is None
    (variable,) = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["x"] + grid["w"] <= 24, panel["title"]
        for source in [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]:
            assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_dashboard_queries_use_no_grafana_variables():
    # The end-to-end test sends these queries to Prometheus as they are; a Grafana macro such
    # as $__rate_interval would not parse there.
    for expr in promtools.dashboard_expressions(DASHBOARD):
        assert "$" not in expr, expr


def test_dashboard_expressions_reads_rows_and_the_api_envelope(tmp_path):
    board = {"dashboard": {"panels": [
        {"type": "row", "panels": [{"targets": [{"expr": "up"}, {"expr": ""}]}]},
        {"targets": [{"expr": "sum(up)"}, {"refId": "B"}]},
        {"type": "text"},
    ]}}
    path = tmp_path / "board.json"
    path.write_text(json.dumps(board), encoding="utf-8")
    assert promtools.dashboard_expressions(path) == ["up", "sum(up)"]


# --- tests/promtools.py: finding the binaries --------------------------------------------


def test_missing_binary_skips_without_ci_and_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="promtool not found"):
        promtools.binary("promtool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="alertmanager not found.*CI is set"):
        promtools.binary("alertmanager")


def test_alertmanager_is_found_under_its_debian_name(monkeypatch, tmp_path):
    executable = tmp_path / "prometheus-alertmanager"
    executable.write_text("#!/bin/sh\n", encoding="utf-8")
    executable.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert promtools.binary("alertmanager") == str(executable)


# --- fleet budgets (budget-rules.yaml) ------------------------------------------------------


def budget_gauge(name: str, instance: str, team: str, period: str = "daily") -> str:
    return series(f"genops_openrouter_budget_{name}", genops_team=team, budget=team, period=period,
                  instance=instance, service="openrouter")


# Two replicas hold shares of each team's spend; the limit is the same on both.
BUDGET_SERIES = [
    {"series": budget_gauge("limit_usd", "node-a", "search"), "values": "100x10"},
    {"series": budget_gauge("limit_usd", "node-b", "search"), "values": "100x10"},
    {"series": budget_gauge("spent_usd", "node-a", "search"), "values": "30x10"},
    {"series": budget_gauge("spent_usd", "node-b", "search"), "values": "55x10"},
    {"series": budget_gauge("limit_usd", "node-a", "ads"), "values": "50x10"},
    {"series": budget_gauge("spent_usd", "node-a", "ads"), "values": "40x10"},
    {"series": budget_gauge("spent_usd", "node-b", "ads"), "values": "20x10"},
]


def test_fleet_budget_utilization_sums_replicas_over_the_largest_limit(tmp_path):
    promtool_test(tmp_path, BUDGET_RULES, {
        "interval": "1m",
        "input_series": BUDGET_SERIES,
        "promql_expr_test": [{
            "expr": "genops_openrouter:budget_utilization:ratio",
            "eval_time": "5m",
            "exp_samples": [
                {"labels": 'genops_openrouter:budget_utilization:ratio{budget="ads",genops_team="ads",'
                           'period="daily"}', "value": 1.2},
                {"labels": 'genops_openrouter:budget_utilization:ratio{budget="search",genops_team="search",'
                           'period="daily"}', "value": 0.85},
            ],
        }],
    })


def budget_alert(team: str, severity: str, threshold: str, summary: str, used: str) -> dict:
    return {"exp_labels": {"severity": severity, "threshold": threshold, "genops_team": team, "budget": team,
                           "period": "daily"},
            "exp_annotations": {"summary": summary,
                                "description": f"Budget {team}: {used} used across the fleet."}}


@pytest.mark.parametrize("alertname, expected", [
    ("OpenRouterBudget50Percent", []),
    ("OpenRouterBudget80Percent", [budget_alert("search", "warning", "0.8",
                                                "Team search has used 80% of its daily budget", "85%")]),
    ("OpenRouterBudget95Percent", []),
    ("OpenRouterBudgetExceeded", [budget_alert("ads", "critical", "1",
                                               "Team ads is over its daily budget", "120%")]),
])
def test_fleet_budget_alerts_fire_at_their_threshold_only(tmp_path, alertname, expected):
    promtool_test(tmp_path, BUDGET_RULES, {
        "interval": "1m",
        "input_series": BUDGET_SERIES,
        "alert_rule_test": [{"eval_time": "5m", "alertname": alertname, "exp_alerts": expected}],
    })
