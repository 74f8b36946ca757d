"""Budgets, the cost ledger and the cost report, through real relay processes on 127.0.0.1.

Time is driven by the spans themselves: the ledger books a call in the period
its span ended in, so spans stamped just before and just after midnight (and
the turn of a month) cross the boundaries without any clock being faked.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay import attrs
from relay.signals import Signal
from tests import promtools
from tests.e2e.test_prometheus_e2e import Prometheus
from tests.support import RelayProcess, free_port

EVENT = "openrouter_cost_threshold_exceeded"


def at(text: str) -> int:
    return int(datetime.datetime.fromisoformat(text).timestamp() * 1e9)


def llm_span(request, *, team: str, cost: float, when_ns: int, model: str = "openai/gpt-4o",
             provider: str = "OpenAI", project: str = "assistant", customer: str = "", tokens=(100, 20),
             error: bool = False, rng: random.Random, extra: dict | None = None):
    span = request.resource_spans[0].scope_spans[0].spans.add()
    span.trace_id, span.span_id = rng.randbytes(16), rng.randbytes(8)
    span.name = f"chat {model}"
    span.start_time_unix_nano, span.end_time_unix_nano = when_ns - 10**9, when_ns
    values = {"genops.team": team, "genops.project": project, "gen_ai.request.model": model,
              "genops.cost.total": cost, "genops.openrouter.actual_provider": provider,
              "gen_ai.usage.input_tokens": tokens[0], "gen_ai.usage.output_tokens": tokens[1]}
    if customer:
        values["genops.customer_id"] = customer
    values.update(extra or {})
    for key, value in values.items():
        attrs.put(span.attributes, key, value)
    if error:
        span.status.code = 2
    return span


def new_request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add()
    return request


def send(port: int, request, timeout: float = 10) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        channel.unary_unary(Signal.TRACES.method)(request.SerializeToString(), timeout=timeout)


def config_text(ports: dict, ledger_dir, *, budgets: str, extra_ledger: str = "", flush: str = "1s",
                prometheus: bool = False) -> str:
    connector = ("connectors:\n  genops_metrics:\n    metrics_flush_interval: 1s\n"
                 "    budgets_from: genops_ledger\n") if prometheus else ""
    prom_exporter = (f"  prometheus:\n    endpoint: 127.0.0.1:{ports['prom']}\n    namespace: genops_openrouter\n"
                     "    const_labels: {service: openrouter}\n") if prometheus else ""
    traces_exporters = "[debug, genops_metrics]" if prometheus else "[debug]"
    metrics_pipeline = ("    metrics:\n      receivers: [genops_metrics]\n      exporters: [prometheus]\n"
                        if prometheus else "")
    return f"""\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{ports['otlp']}
processors:
  genops: {{}}
  genops_budget:
    ledger: genops_ledger
{connector}exporters:
  debug: {{}}
{prom_exporter}extensions:
  health_check:
    endpoint: 127.0.0.1:{ports['health']}
  genops_ledger:
    directory: {ledger_dir}
    flush_interval: {flush}
{extra_ledger}    budgets:
{budgets}service:
  extensions: [health_check, genops_ledger]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [genops, genops_budget]
      exporters: {traces_exporters}
{metrics_pipeline}  telemetry:
    metrics:
      address: 127.0.0.1:{ports['telemetry']}
"""


def start(tmp_path, name: str, text: str, ports: dict) -> RelayProcess:
    workdir = tmp_path / name
    workdir.mkdir()
    return RelayProcess(text, workdir, ports["health"]).start()


def events(relay: RelayProcess) -> list[tuple]:
    return [(line["period"], line["period_key"], line["threshold"]) for line in relay.log_lines()
            if line.get("msg") == EVENT]


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def ports_for(*names: str) -> dict:
    return {name: free_port() for name in ("otlp", "health", "telemetry") + names}


BUDGET = "      - team: search\n        daily_usd: 10\n        monthly_usd: 40\n"


def test_each_threshold_fires_once_per_period_across_day_and_month_boundaries_and_a_restart(tmp_path):
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    ports = ports_for()
    rng = random.Random(1)
    text = config_text(ports, ledger, budgets=BUDGET)

    first = start(tmp_path, "first", text, ports)
    try:
        request = new_request()
        llm_span(request, team="search", cost=5.5, when_ns=at("2026-01-31T22:00:00+00:00"), rng=rng)
        llm_span(request, team="other", cost=50.0, when_ns=at("2026-01-31T22:00:00+00:00"), rng=rng)  # no budget
        send(ports["otlp"], request)
        assert wait_for(lambda: events(first) == [("daily", "2026-01-31", 0.5)]), events(first)
    finally:
        assert first.stop() == 0

    # After a restart: the same day's 0.5 is not fired again; 0.8 and 0.95 are new.
    second = start(tmp_path, "second", text, ports)
    try:
        request = new_request()
        llm_span(request, team="search", cost=4.0, when_ns=at("2026-01-31T23:59:59+00:00"), rng=rng)  # 9.5
        send(ports["otlp"], request)
        assert wait_for(lambda: len(events(second)) == 2), events(second)
        # A new day and a new month: the daily thresholds start over; the month of February too.
        request = new_request()
        llm_span(request, team="search", cost=9.0, when_ns=at("2026-02-01T00:00:01+00:00"), rng=rng)
        send(ports["otlp"], request)
        # January's month total reaches 20.5 of 40 with a late January call: monthly 0.5 fires for 2026-01.
        request = new_request()
        llm_span(request, team="search", cost=11.0, when_ns=at("2026-01-15T12:00:00+00:00"), rng=rng)
        send(ports["otlp"], request)
        expected = [("daily", "2026-01-31", 0.8), ("daily", "2026-01-31", 0.95),
                    ("daily", "2026-02-01", 0.5), ("daily", "2026-02-01", 0.8),
                    ("daily", "2026-01-15", 0.5), ("daily", "2026-01-15", 0.8), ("daily", "2026-01-15", 0.95),
                    ("daily", "2026-01-15", 1.0), ("monthly", "2026-01", 0.5)]
        assert wait_for(lambda: sorted(events(second)) == sorted(expected)), events(second)
    finally:
        assert second.stop() == 0

    # A third run sends nothing new for those periods: nothing fires again.
    third = start(tmp_path, "third", text, ports)
    try:
        request = new_request()
        llm_span(request, team="search", cost=0.01, when_ns=at("2026-01-31T23:00:00+00:00"), rng=rng)
        send(ports["otlp"], request)
        assert wait_for(lambda: any(line["msg"] == "cost ledger open" for line in third.log_lines()))
    finally:
        assert third.stop() == 0
    assert events(third) == []


class Hook:
    """A local webhook receiver: answers 500 to its first call, then 200; or hangs."""

    def __init__(self, hang: bool = False):
        self.hang = hang
        self.calls: list[dict] = []
        self.port = free_port()
        self._loop = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import asyncio

        async def handle(request):
            self.calls.append(json.loads(await request.read()))
            if self.hang:
                await asyncio.sleep(3600)
            if len(self.calls) == 1:
                return web.Response(status=500)
            return web.Response(status=200)

        async def main():
            app = web.Application()
            app.router.add_post("/hook", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(main())

    def start(self) -> "Hook":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def webhook_budget(hook: Hook, fmt: str) -> str:
    return (f"    webhook:\n      url: http://127.0.0.1:{hook.port}/hook\n      format: {fmt}\n"
            "      retry:\n        initial_interval: 100ms\n")


def test_the_webhook_gets_the_alert_and_a_5xx_is_retried(tmp_path):
    hook = Hook().start()
    ports = ports_for()
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    relay = start(tmp_path, "relay", config_text(ports, ledger, budgets=BUDGET,
                                                 extra_ledger=webhook_budget(hook, "slack")), ports)
    try:
        request = new_request()
        llm_span(request, team="search", cost=8.5, when_ns=time.time_ns(), rng=random.Random(2))
        send(ports["otlp"], request)
        # 0.5 and 0.8 fire together; the first delivery gets a 500 and is sent again.
        assert wait_for(lambda: len(hook.calls) >= 3), hook.calls
    finally:
        assert relay.stop() == 0
        hook.stop()
    texts = [call["text"] for call in hook.calls]
    assert texts[0] == texts[1]  # the retry repeats the refused delivery
    assert any("80%" in text and "search" in text for text in texts), texts
    assert all("attachments" in call for call in hook.calls)


def test_a_hanging_webhook_does_not_slow_the_data_path(tmp_path, sink):
    hook = Hook(hang=True).start()
    ports = ports_for()
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    text = config_text(ports, ledger, budgets=BUDGET, extra_ledger=webhook_budget(hook, "generic"))
    text = text.replace("exporters:\n  debug: {}\n", f"exporters:\n  debug: {{}}\n  otlp:\n    endpoint: {sink.endpoint}\n"
                                                     "    tls: {insecure: true}\n")
    text = text.replace("      exporters: [debug]", "      exporters: [otlp]")
    relay = start(tmp_path, "relay", text, ports)
    rng = random.Random(3)
    try:
        # One deadline for sending and delivery: every call crosses thresholds of a new day, so a
        # hook that hangs gets many alerts; none of that may hold up the spans.
        deadline = time.monotonic() + 10
        for n in range(20):
            request = new_request()
            llm_span(request, team="search", cost=20.0, when_ns=at(f"2026-03-{n + 1:02d}T12:00:00+00:00"), rng=rng)
            send(ports["otlp"], request, timeout=max(0.1, deadline - time.monotonic()))
        assert sink.wait_for(Signal.TRACES, 20, timeout=max(0.1, deadline - time.monotonic())), \
            "the data path stalled behind the webhook"
        assert wait_for(lambda: len(hook.calls) >= 1)
    finally:
        assert relay.stop(timeout=15) == 0
        hook.stop()
    # Four daily thresholds a day, and March's monthly 40 USD passes all four on days 1 and 2.
    assert len(events(relay)) == 20 * 4 + 4


def report_via_cli(ledger, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "relay", "report", "--ledger", str(ledger), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_report_matches_the_spans_sent_in_every_format(tmp_path):
    ports = ports_for()
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    relay = start(tmp_path, "relay", config_text(ports, ledger, budgets=BUDGET), ports)
    rng = random.Random(4)
    sent = []
    choices = {"team": ["search", "ads", "support"], "project": ["assistant", "indexer"],
               "model": ["openai/gpt-4o", "anthropic/claude-3.5-sonnet"], "provider": ["OpenAI", "Azure", "Anthropic"],
               "customer": ["c1", "c2", ""]}
    try:
        for _ in range(5):
            request = new_request()
            for _ in range(40):
                call = {key: rng.choice(values) for key, values in choices.items()}
                call["cost"] = round(rng.uniform(0.0001, 0.05), 6)
                call["tokens"] = (rng.randint(1, 5000), rng.randint(1, 1000))
                call["error"] = rng.random() < 0.1
                llm_span(request, when_ns=at("2026-05-10T10:00:00+00:00") + rng.randint(0, 3600 * 10**9), rng=rng,
                         **call)
                sent.append(call)
            send(ports["otlp"], request)
        url = f"http://127.0.0.1:{ports['telemetry']}/api/v1/cost/report?from=2026-05-10&to=2026-05-10&by=team"
        with urllib.request.urlopen(url, timeout=10) as answer:
            over_http = json.loads(answer.read())
    finally:
        assert relay.stop() == 0

    total = sum(call["cost"] for call in sent)
    tokens = sum(sum(call["tokens"]) for call in sent)
    by_team: dict[str, float] = {}
    for call in sent:
        by_team[call["team"]] = by_team.get(call["team"], 0.0) + call["cost"]

    report = json.loads(report_via_cli(ledger, "--from", "2026-05-10", "--to", "2026-05-10", "--format", "json",
                                       "--by", "team"))
    for answer in (report, over_http):
        summary = answer["summary"]
        assert abs(summary["total_cost_usd"] - total) < 1e-9
        assert summary["total_tokens"] == tokens
        assert summary["total_requests"] == len(sent)
        assert summary["total_errors"] == sum(call["error"] for call in sent)
        assert {team: round(cost, 9) for team, cost in answer["breakdown"]["by_team"].items()} == {
            team: round(cost, 9) for team, cost in by_team.items()}
    rows = list(csv.DictReader(io.StringIO(report_via_cli(ledger, "--from", "2026-05-10", "--to", "2026-05-10",
                                                          "--format", "csv", "--by", "team"))))
    assert {row["team"]: round(float(row["cost_usd"]), 9) for row in rows} == {
        team: round(cost, 9) for team, cost in by_team.items()}
    table = report_via_cli(ledger, "--from", "2026-05-10", "--to", "2026-05-10", "--format", "table")
    assert "search" in table and f"{total:.6f}" in table   # the layout itself is pinned in test_ledger_report
    # Nothing on other days.
    empty = json.loads(report_via_cli(ledger, "--from", "2026-05-11", "--to", "2026-05-12", "--format", "json"))
    assert empty["summary"]["total_cost_usd"] == 0


def test_kill_between_flushes_loses_at_most_the_flush_interval_and_the_ledger_stays_readable(tmp_path):
    ports = ports_for()
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    text = config_text(ports, ledger, budgets=BUDGET, flush="1s")
    relay = start(tmp_path, "first", text, ports)
    rng = random.Random(5)
    day = "2026-06-01"
    request = new_request()
    for _ in range(50):
        llm_span(request, team="search", cost=0.01, when_ns=at(f"{day}T08:00:00+00:00"), rng=rng)
    send(ports["otlp"], request)

    def flushed() -> float:
        report = json.loads(report_via_cli(ledger, "--from", day, "--to", day, "--format", "json"))
        return report["summary"]["total_cost_usd"]

    assert wait_for(lambda: abs(flushed() - 0.5) < 1e-9, 15)   # older than a flush interval: on disk
    request = new_request()
    for _ in range(50):
        llm_span(request, team="search", cost=0.02, when_ns=at(f"{day}T09:00:00+00:00"), rng=rng)
    send(ports["otlp"], request)
    relay.process.send_signal(signal.SIGKILL)   # before or after the next flush: either is allowed
    relay.process.wait(10)
    relay.stop()
    after_kill = flushed()
    assert after_kill in (0.5, 1.5) or abs(after_kill - 0.5) < 1e-9 or abs(after_kill - 1.5) < 1e-9, after_kill

    again = start(tmp_path, "second", text, ports)   # the file opens again, and takes more
    try:
        request = new_request()
        llm_span(request, team="search", cost=1.0, when_ns=at(f"{day}T10:00:00+00:00"), rng=rng)
        send(ports["otlp"], request)
        assert wait_for(lambda: abs(flushed() - (after_kill + 1.0)) < 1e-9, 15)
    finally:
        assert again.stop() == 0


def test_an_over_budget_team_crosses_1_and_the_shipped_alert_fires_in_prometheus(tmp_path):
    ports = ports_for("prom")
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    # Prometheus first: without its binary the test skips before the relay has started.
    prometheus = Prometheus(tmp_path, ports["prom"], ports["telemetry"],
                            rules=promtools.BUDGET_RULES.read_text(encoding="utf-8"))
    try:
        relay = start(tmp_path, "relay", config_text(ports, ledger, budgets=BUDGET, prometheus=True), ports)
    except BaseException:
        prometheus.stop()
        raise
    try:
        request = new_request()
        llm_span(request, team="search", cost=12.5, when_ns=time.time_ns(), rng=random.Random(6))
        send(ports["otlp"], request)
        found = prometheus.wait_for(lambda: prometheus.query(
            'genops_openrouter_budget_utilization_ratio{genops_team="search",period="daily"} > 1'), "utilization > 1")
        assert abs(float(found[0]["value"][1]) - 1.25) < 1e-9
        limit = prometheus.query('genops_openrouter_budget_limit_usd{genops_team="search",period="monthly"}')
        assert float(limit[0]["value"][1]) == 40
        alerts = prometheus.wait_for(lambda: prometheus.query(
            'ALERTS{alertname="OpenRouterBudgetExceeded",alertstate="firing"}'), "the budget alert firing")
        assert alerts[0]["metric"]["genops_team"] == "search" and alerts[0]["metric"]["period"] == "daily"
    finally:
        prometheus.stop()
        assert relay.stop() == 0
