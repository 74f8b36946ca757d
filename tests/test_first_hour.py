"""The first hour with the relay: what a new user runs into, each said plainly.

- a test run leaves no process behind, also when tests skip for want of Prometheus;
- the start log names every port the relay listens on, its own telemetry's included;
- errors say what to do: the datadog exporter, an unknown model in ``price``;
- ``price --output`` may be left out (0 tokens);
- ``--help`` shows no reStructuredText markup.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from relay import pricing_cli
from relay.cli import build_parser
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import ConfigError
from relay.pipeline.registry import default_registry
from relay.pricing import PricingConfig, build
from tests import leaks, promtools
from tests.e2e.test_default_config import default_config_on_free_ports
from tests.support import RelayProcess

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def inner_pytest(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "CI"}  # skips stay skips
    environment.update(env or {})
    environment["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *args],
                          cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def alive(pid: int) -> bool:
    found = leaks._stat(pid)
    return found is not None and found[0] not in ("Z", "X")


# --- no process outlives the test run --------------------------------------------------------

LEAKING_TESTS = '''
import subprocess
import sys


def test_leaves_a_child(tmp_path_factory):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open({pids!r}, "a") as out:
        out.write(f"{{child.pid}}\\n")


def test_leaves_an_orphan():
    # The shell exits at once: its background child is nobody's child here, only the token finds it.
    subprocess.run(["sh", "-c", "sleep 120 > /dev/null 2>&1 & echo $! >> {pids}"], check=True, timeout=10)
'''


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the check reads /proc")
def test_a_process_left_running_fails_the_run_and_is_stopped(tmp_path):
    pids = tmp_path / "pids"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_leaky.py").write_text(LEAKING_TESTS.format(pids=str(pids)))
    done = inner_pytest("-p", "tests.leaks", "test_leaky.py", cwd=tmp_path)
    left = [int(line) for line in pids.read_text().split()]
    assert len(left) == 2
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert "2 passed" in done.stdout and "processes left running" in done.stdout
    for pid in left:
        assert f"pid {pid}:" in done.stdout
        assert not alive(pid), pid


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the check reads /proc")
def test_a_clean_run_passes_the_check(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_clean.py").write_text(textwrap.dedent("""
        import subprocess
        import sys


        def test_waits_for_its_child():
            subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
    """))
    done = inner_pytest("-p", "tests.leaks", "test_clean.py", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "processes left running" not in done.stdout


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the check reads /proc")
def test_a_process_of_a_run_inside_a_run_carries_both_tokens():
    """So the outer run still finds what an inner run (killed on its timeout) left reparented away."""
    environment = dict(os.environ, **{leaks.TOKEN_VARIABLE: "outer-1:inner-2"})
    child = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], env=environment, start_new_session=True)
    # root -1 is nobody's parent: only the tokens can find the child.
    try:
        for token in ("outer-1", "inner-2"):
            assert child.pid in leaks.left_behind(token, root=-1), token
        assert child.pid not in leaks.left_behind("outer", root=-1)  # a whole token, not a prefix
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)


# The tests that start a relay and a Prometheus: each once started the relay first, and left it
# running when Prometheus was missing and the test skipped.
WITH_PROMETHEUS = [
    "tests/e2e/test_prometheus_e2e.py::test_cost_counters_rules_alerts_and_dashboard_through_a_real_prometheus",
    "tests/e2e/test_guide_rules_verbatim.py::test_the_guides_rules_and_dashboard_queries_return_data_as_printed",
    "tests/e2e/test_budgets_e2e.py::test_an_over_budget_team_crosses_1_and_the_shipped_alert_fires_in_prometheus",
    "tests/e2e/test_usage_metrics_e2e.py::test_metrics_only_usage_is_costed_per_team_through_the_built_in_config",
]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the check reads /proc")
def test_without_prometheus_the_prometheus_tests_skip_and_leave_nothing(tmp_path):
    done = inner_pytest(*WITH_PROMETHEUS, "--basetemp", str(tmp_path / "base"), cwd=ROOT,
                        env={promtools.WITHOUT_VARIABLE: "prometheus"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "processes left running" not in done.stdout
    assert done.stdout.splitlines()[-1].startswith(f"{len(WITH_PROMETHEUS)} skipped in "), done.stdout
    relays = [path for path in (tmp_path / "base").rglob("relay.log")]
    assert relays == []  # skipped before a relay was started at all


def test_promtools_can_be_told_a_binary_is_missing(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(promtools.WITHOUT_VARIABLE, "promtool, prometheus")
    with pytest.raises(pytest.skip.Exception, match="prometheus not found"):
        promtools.binary("prometheus")


# --- the start log --------------------------------------------------------------------------


def test_the_start_log_names_every_listening_port_telemetry_included(tmp_path):
    config, ports = default_config_on_free_ports()  # the built-in config, ports moved
    relay = RelayProcess(config, tmp_path, ports["health"]).start()
    try:
        lines = relay.log_lines()
    finally:
        assert relay.stop() == 0, relay.log_text()
    logged = {}
    for line in lines:
        if str(line.get("msg", "")).endswith("listening"):
            port = line.get("port") or int(str(line["endpoint"]).rpartition(":")[2])
            logged[port] = line["msg"]
    assert set(logged) == set(ports.values()), logged
    assert logged[ports["telemetry"]] == "self telemetry listening"
    started = next(i for i, line in enumerate(lines) if line.get("msg") == "relay started")
    assert all(i < started for i, line in enumerate(lines) if str(line.get("msg", "")).endswith("listening"))


# --- errors say what to do ------------------------------------------------------------------

DATADOG = """\
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  datadog:
    api: {key: x}
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [datadog]
"""


def test_the_datadog_exporter_error_points_to_the_readme_route():
    with pytest.raises(ConfigError) as raised:
        load(DATADOG, default_registry(), env={})
    (problem,) = [str(p) for p in raised.value.problems]
    assert problem.startswith('exporters::datadog: unsupported exporter type "datadog" (available: ')
    assert "Datadog Agent's OTLP intake" in problem and "otlp exporter" in problem
    (heading,) = re.findall(r'README section "([^"]+)"', problem)
    # The section it names exists, and says how.
    section = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#)", README, re.S | re.M)
    assert section is not None, heading
    assert "OTLP" in section.group(1) and "otlp/datadog" in section.group(1)


def test_other_unsupported_types_get_no_datadog_hint():
    with pytest.raises(ConfigError) as raised:
        load(DATADOG.replace("datadog", "splunk_hec"), default_registry(), env={})
    (problem,) = [str(p) for p in raised.value.problems]
    assert "unsupported exporter type" in problem and "Datadog" not in problem


def price(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="genops-relay price")
    pricing_cli.add_arguments(parser)
    code = pricing_cli.main(parser.parse_args(list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_an_unknown_model_says_how_to_price_it(capsys):
    model = "acme/house-model:v2"
    code, out, err = price(capsys, model, "--input", "10", "--output", "5")
    assert code == 1 and out == ""
    for what in ("overrides", "fallback", "--models-file"):
        assert what in err, what
    # The override it shows is config the relay takes, and it prices that very model.
    (snippet,) = [line.strip() for line in err.splitlines() if line.strip().startswith("processors:")]
    pricing = yaml.safe_load(snippet)["processors"]["genops"]["pricing"]
    config, problems = decode(PricingConfig, pricing)
    assert problems == []
    rates = build(config).rates([model], None, 0)
    assert rates is not None and rates.input == pytest.approx(2.5e-6)


def test_price_output_defaults_to_no_tokens(capsys):
    # openai/gpt-4o at 2.50 USD per million input tokens (OpenAI's list price, as on OpenRouter).
    code, out, _ = price(capsys, "openai/gpt-4o", "--input", "1000", "--at", "2026-11-20")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["output"][1] == "0" and rows["reasoning"][1] == "0"
    assert rows["total"][1] == f"{1000 * 2.5 / 1e6:.8f}"


# --- --help ---------------------------------------------------------------------------------


def subcommands() -> list[str]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(action.choices)


def test_every_subcommand_is_checked():
    assert {"run", "validate", "price", "report", "bench"} <= set(subcommands())


@pytest.mark.parametrize("command", [[]] + [[name] for name in subcommands()], ids=lambda c: " ".join(c) or "top")
def test_help_has_no_restructuredtext_markup(command):
    done = subprocess.run([sys.executable, "-m", "relay", *command, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: genops-relay")
    assert "``" not in done.stdout, done.stdout
    assert not re.search(r":(?:class|func|meth|mod|attr):`", done.stdout), done.stdout
