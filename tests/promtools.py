"""Helpers for tests of the Prometheus, Alertmanager and Grafana files under deploy/.

- ``binary(name)`` finds ``promtool``, ``amtool``, ``prometheus`` or ``alertmanager`` on PATH.
  A missing binary skips the test on a developer machine but FAILS it when the ``CI``
  environment variable is set (non-empty), so CI cannot go green by silently skipping the
  deploy checks. ``GENOPS_TEST_WITHOUT=prometheus,promtool`` makes the named binaries count as
  missing, so that a machine which has them can still run the tests as one without them would.
- ``dashboard_expressions(path)`` lists every PromQL expression in a Grafana dashboard.
- ``rules_with_threshold(path, alert_name, new_threshold)`` rewrites one alert's threshold,
  so a test can make an alert fire on small amounts of data.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "openrouter-rules.yaml"
BUDGET_RULES = DEPLOY / "prometheus" / "budget-rules.yaml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "openrouter-dashboard.json"

# Executable names to try, in order. Debian's prometheus-alertmanager package installs the
# server as `prometheus-alertmanager`; upstream release archives call it `alertmanager`.
_NAMES = {
    "promtool": ("promtool",),
    "amtool": ("amtool",),
    "prometheus": ("prometheus",),
    "alertmanager": ("alertmanager", "prometheus-alertmanager"),
}
_INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager (Debian/Ubuntu)"
WITHOUT_VARIABLE = "GENOPS_TEST_WITHOUT"


def binary(name: str) -> str:
    """Path of the executable ``name`` (a key of ``_NAMES``), or skip/fail the calling test."""
    candidates = _NAMES[name]
    hidden = {part.strip() for part in os.environ.get(WITHOUT_VARIABLE, "").split(",")}
    for candidate in candidates if name not in hidden else ():
        found = shutil.which(candidate)
        if found:
            return found
    message = f"{name} not found on PATH (looked for {', '.join(candidates)}); install: {_INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(f"{message}. CI is set, so the deploy checks must run, not skip.", pytrace=False)
    pytest.skip(message)


def dashboard_expressions(path: str | os.PathLike) -> list[str]:
    """Every PromQL ``expr`` of every panel target, in panel order (rows' nested panels included)."""
    dashboard = json.loads(Path(path).read_text(encoding="utf-8"))
    # A dashboard wrapped for the HTTP API ({"dashboard": {...}}) is read the same way.
    dashboard = dashboard.get("dashboard", dashboard)
    expressions = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr", "").strip():
                    expressions.append(target["expr"])
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    return expressions


# The threshold is the number after a comparison operator that ends the expression:
# `genops_openrouter:daily_cost_by_team > 100`. Requiring it at the end keeps numbers inside
# the query (range windows, quantiles, `* 60`) out of reach.
_TRAILING_THRESHOLD = re.compile(
    r"(?P<head>(?:>=|<=|==|!=|>|<)(?:\s+bool)?\s*)"
    r"(?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*\Z"
)


def rules_with_threshold(path: str | os.PathLike, alert_name: str, new_threshold: float) -> str:
    """The rules file at ``path`` as YAML text, with ``alert_name``'s threshold set to ``new_threshold``.

    The threshold is the literal that ends the alert's expression (``... > 100``). Comments
    of the original are not kept: the result is meant for a temporary rules file.
    Raises ValueError if the alert is missing or its expression does not end in a literal.
    """
    if isinstance(new_threshold, bool) or not math.isfinite(new_threshold):
        raise ValueError(f"threshold must be a finite number, got {new_threshold!r}")
    document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    matches = [rule for group in document.get("groups", []) for rule in group.get("rules", [])
               if rule.get("alert") == alert_name]
    if len(matches) != 1:
        raise ValueError(f"expected one alert named {alert_name!r} in {path}, found {len(matches)}")
    rule = matches[0]
    expr = str(rule["expr"])
    match = _TRAILING_THRESHOLD.search(expr)
    if match is None:
        raise ValueError(f"alert {alert_name!r}: expression does not end in `<op> <number>`: {expr!r}")
    # repr() of a float is its shortest exact form (0.001, 1e-05), which PromQL parses as is.
    literal = str(new_threshold) if isinstance(new_threshold, int) else repr(float(new_threshold))
    rule["expr"] = expr[:match.start("number")] + literal
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=10_000)
