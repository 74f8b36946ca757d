"""The cost ledger of the built-in config: ``genops-relay run`` with no config keeps it in the data
directory, and ``genops-relay report`` with no config finds it there; spend survives a restart.

The relay runs the built-in config itself (no ``--config``), with only its listen addresses
moved to free loopback ports before the CLI reads it. Spans come from the real OpenTelemetry
SDK; the expected cost is the price table's (openai/gpt-4o, as in test_default_config).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from relay.defaults import DEFAULT_CONFIG
from tests.e2e.test_default_config import DEFAULT_PORTS, GPT4O_IN, GPT4O_OUT
from tests.support import ROOT, RelayProcess, free_port

# (team, customer id or None, input tokens, output tokens)
CALLS = [("search", None, 1000, 100), ("search", None, 3000, 700), ("ads", "acme", 2000, 50)]
LATER = ("ads", "acme", 500, 500)   # sent after the restart


def cost(calls) -> float:
    return sum(tokens_in * GPT4O_IN + tokens_out * GPT4O_OUT for _, _, tokens_in, tokens_out in calls)


class DefaultRelay(RelayProcess):
    """``python -m relay run`` with no ``--config``: the built-in config, listen addresses moved."""

    # Swaps the addresses in the built-in config before the CLI imports it; the rest is the CLI.
    _MOVED = """\
import json, sys
import relay.defaults
for old, new in json.loads(sys.argv.pop(1)).items():
    relay.defaults.DEFAULT_CONFIG = relay.defaults.DEFAULT_CONFIG.replace(old, new)
assert "0.0.0.0" not in relay.defaults.DEFAULT_CONFIG
from relay.cli import main
sys.exit(main())
"""

    def __init__(self, tmp_path: Path, args: list[str], env: dict):
        tmp_path.mkdir(parents=True, exist_ok=True)
        super().__init__("", tmp_path, env=env)
        self.ports = {name: free_port() for name in DEFAULT_PORTS}
        self.health_port = self.ports["health"]
        self.moves = {f"0.0.0.0:{DEFAULT_PORTS[name]}": f"127.0.0.1:{port}" for name, port in self.ports.items()}
        self.args = args

    def start(self, timeout: float = 20.0, healthy: bool = True) -> "DefaultRelay":
        assert all(old in DEFAULT_CONFIG for old in self.moves)
        self._log = open(self.log_path, "wb")
        command = [sys.executable, "-c", self._MOVED, json.dumps(self.moves), "run", *self.args]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        try:
            if healthy:
                self.wait_healthy(timeout)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise
        return self

    def send(self, calls) -> None:
        for team, customer, tokens_in, tokens_out in calls:
            resource = {"service.name": "chat-api", "genops.team": team}
            if customer:
                resource["genops.customer_id"] = customer
            provider = TracerProvider(resource=Resource.create(resource))
            provider.add_span_processor(SimpleSpanProcessor(
                OTLPSpanExporter(endpoint=f"127.0.0.1:{self.ports['otlp']}", insecure=True)))
            tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
            with tracer.start_as_current_span("chat openai/gpt-4o", attributes={
                    "gen_ai.request.model": "openai/gpt-4o", "gen_ai.system": "openai",
                    "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out}):
                pass
            provider.shutdown()

    def report_over_http(self, query: str = "") -> dict:
        url = f"http://127.0.0.1:{self.ports['telemetry']}/api/v1/cost/report{query}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.loads(answer.read())

    def wait_for_requests(self, count: int, timeout: float = 20.0) -> dict:
        # Each export is acknowledged once the spans are booked; the HTTP report flushes first.
        deadline = time.monotonic() + timeout
        report = self.report_over_http()
        while report["summary"]["total_requests"] < count and time.monotonic() < deadline:
            time.sleep(0.2)
            report = self.report_over_http()
        return report


def report_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relay", "report", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)


def json_report(*args: str, env: dict) -> dict:
    result = report_cli(*args, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def isolated_env(tmp_path: Path, **extra: str) -> dict:
    """The environment less any data directory, with the platform's user data directory in tmp_path:
    whatever a test gets wrong lands there, never in the user's own."""
    env = {k: v for k, v in os.environ.items() if k != "GENOPS_RELAY_DATA"}
    return {**env, "XDG_DATA_HOME": str(tmp_path / "xdg"), **extra}


def check_spend(report: dict, calls) -> None:
    assert report["summary"]["total_requests"] == len(calls)
    assert report["summary"]["total_cost_usd"] == pytest.approx(cost(calls), rel=1e-9)
    assert report["summary"]["total_tokens"] == sum(tokens_in + tokens_out for *_, tokens_in, tokens_out in calls)
    for team in {call[0] for call in calls}:
        assert report["breakdown"]["by_team"][team] == pytest.approx(
            cost([call for call in calls if call[0] == team]), rel=1e-9)


def test_run_and_report_without_config_share_the_ledger_in_data_dir(tmp_path):
    data = tmp_path / "data"
    # --data-dir wins over $GENOPS_RELAY_DATA, which must stay untouched.
    elsewhere = tmp_path / "elsewhere"
    env = isolated_env(tmp_path, GENOPS_RELAY_DATA=str(elsewhere))
    relay = DefaultRelay(tmp_path / "first", ["--data-dir", str(data)], env).start()
    try:
        relay.send(CALLS)
        check_spend(relay.wait_for_requests(len(CALLS)), CALLS)
    finally:
        assert relay.stop() == 0, relay.log_text()
    assert (data / "ledger" / "ledger.sqlite").is_file()
    assert not elsewhere.exists() and not (tmp_path / "xdg").exists()
    started = [line for line in relay.log_lines() if line["msg"].startswith("no --config given")]
    assert [line["data_dir"] for line in started] == [str(data)]

    # No config, no range: this month so far, from the same data directory.
    check_spend(json_report("--data-dir", str(data), env=env), CALLS)
    by_team = report_cli("--data-dir", str(data), "--format", "csv", "--by", "team", env=env)
    assert by_team.returncode == 0, by_team.stderr
    rows = list(csv.DictReader(io.StringIO(by_team.stdout)))
    assert {row["team"]: float(row["cost_usd"]) for row in rows} == pytest.approx(
        {"search": cost(CALLS[:2]), "ads": cost(CALLS[2:])}, rel=1e-9)
    by_customer = report_cli("--data-dir", str(data), "--format", "csv", "--by", "customer", env=env)
    assert [row["customer"] for row in csv.DictReader(io.StringIO(by_customer.stdout))] == ["(none)", "acme"]
    table = report_cli("--data-dir", str(data), env=env)
    assert table.returncode == 0 and f"{cost(CALLS):.6f}" in table.stdout, table.stderr

    # A restart on the same directory: the spend is still there, and new spend adds to it.
    relay = DefaultRelay(tmp_path / "second", ["--data-dir", str(data)], env).start()
    try:
        check_spend(relay.report_over_http(), CALLS)
        relay.send([LATER])
        check_spend(relay.wait_for_requests(len(CALLS) + 1), CALLS + [LATER])
    finally:
        assert relay.stop() == 0, relay.log_text()
    check_spend(json_report("--data-dir", str(data), env=env), CALLS + [LATER])
    assert not elsewhere.exists() and not (tmp_path / "xdg").exists()


def test_genops_relay_data_is_the_data_directory_for_run_and_report(tmp_path):
    data = tmp_path / "from-env"
    env = isolated_env(tmp_path, GENOPS_RELAY_DATA=str(data))
    relay = DefaultRelay(tmp_path / "first", [], env).start()
    try:
        relay.send(CALLS)
        check_spend(relay.wait_for_requests(len(CALLS)), CALLS)
    finally:
        assert relay.stop() == 0, relay.log_text()
    assert (data / "ledger" / "ledger.sqlite").is_file() and not (tmp_path / "xdg").exists()
    check_spend(json_report(env=env), CALLS)   # no arguments at all
    relay = DefaultRelay(tmp_path / "second", [], env).start()
    try:
        check_spend(relay.report_over_http(), CALLS)
    finally:
        assert relay.stop() == 0, relay.log_text()
    check_spend(json_report(env=env), CALLS)


def test_a_data_directory_that_cannot_be_created_stops_the_start_with_the_reason(tmp_path):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    relay = DefaultRelay(tmp_path / "relay", ["--data-dir", str(in_the_way)], isolated_env(tmp_path))
    relay.start(healthy=False)
    try:
        code = relay.process.wait(60)
    finally:
        relay.stop(signal.SIGKILL)
    assert code == 1, relay.log_text()
    reasons = [line["error"] for line in relay.log_lines() if line["msg"] == "relay failed to start"]
    assert reasons == [f"genops_ledger: cannot create directory {in_the_way / 'ledger'}: Not a directory"], \
        relay.log_text()


WITHOUT_LEDGER = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp}
processors:
  genops: {{}}
exporters:
  debug:
    verbosity: basic
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [genops]
      exporters: [debug]
  telemetry:
    metrics:
      address: 127.0.0.1:{telemetry}
"""


def test_without_a_ledger_report_and_http_say_how_to_turn_one_on(tmp_path):
    ports = {name: free_port() for name in ("otlp", "health", "telemetry")}
    config = WITHOUT_LEDGER.format(**ports)
    env = isolated_env(tmp_path, GENOPS_RELAY_DATA=str(tmp_path / "data"))
    relay = RelayProcess(config, tmp_path, ports["health"], env=env).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{ports['telemetry']}/api/v1/cost/report", timeout=10)
        answer = refused.value
        assert answer.code == 404 and answer.headers["Content-Type"].startswith("application/json")
        hint = json.loads(answer.read())["error"]
    finally:
        assert relay.stop() == 0
    for needed in ("genops_ledger", "directory", "create_directory", "service.extensions", "genops_budget",
                   '"Budgets, the cost ledger and cost reports"'):
        assert needed in hint, hint
    assert not (tmp_path / "data").exists()   # a config without a ledger writes nothing there

    result = report_cli("--config", str(relay.config_path), env=env)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: {relay.config_path} configures no cost ledger: to keep one, add the "
                                    "genops_ledger extension"), result.stderr
    # Nothing in the data directory either: where it looked, and the same hint.
    result = report_cli(env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: no cost ledger at {tmp_path / 'data' / 'ledger' / 'ledger.sqlite'}: ")
    assert "genops_ledger extension" in result.stderr and "Traceback" not in result.stderr
