"""OpenRouter Broadcast as a source, through a real relay on the default config.

The Broadcast fixture is posted as OTLP/JSON to the OTLP/HTTP receiver (4318 in the default
config, a free port here), as OpenRouter posts it. The default config gets only what a user
adds for this: an otlp exporter (here to a recording sink), the ``api_keys`` mapping, a rule
that names the instrumented app's team, and the cost ledger.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from relay import attrs
from relay.fixtures import fixtures_dir
from relay.signals import Signal
from tests.e2e.test_default_config import default_config_on_free_ports, scrape
from tests.support import RelayProcess, Sink, free_port

BROADCAST = fixtures_dir() / "broadcast" / "traces_broadcast.json"
TWIN = fixtures_dir() / "broadcast" / "traces_broadcast_twin.json"
# What the fixture's two calls report as gen_ai.usage.total_cost (USD).
SUPPORT_COST, SEARCH_COST = 0.0102, 0.0001206


def config(ledger) -> tuple[str, dict]:
    text, ports = default_config_on_free_ports()
    ports["sink"] = free_port()
    genops = ("  genops:\n"
              "    api_keys:\n      search-prod: {team: search, project: query-rewrite}\n"
              "    rules:\n      - attribute: service.name\n        value: support-bot\n"
              "        set: {team: support, project: helpdesk-bot}\n")
    text = text.replace("  genops: {}\n", genops)
    text = text.replace("exporters:\n  debug:", f"exporters:\n  otlp/sink:\n    endpoint: 127.0.0.1:{ports['sink']}\n"
                                               "    tls: {insecure: true}\n  debug:")
    text = text.replace("      exporters: [debug, genops_metrics]", "      exporters: [otlp/sink, genops_metrics]")
    # The built-in config's ledger (fed by its genops_budget), here in the test's directory.
    ledger_settings = "    directory: ${env:GENOPS_RELAY_DATA}/ledger\n"
    assert ledger_settings in text
    return text.replace(ledger_settings, f"    directory: {ledger}\n    flush_interval: 1s\n"), ports


def post_json(port: int, path) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", data=path.read_bytes(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


def llm_spans(sink: Sink) -> list[dict]:
    return [{kv.key: attrs.to_python(kv.value) for kv in span.attributes}
            for request in sink.requests[Signal.TRACES] for rs in request.resource_spans
            for ss in rs.scope_spans for span in ss.spans]


def cost_by_team(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for (name, labels), value in scrape(port).items():
        if name == "genops_openrouter_cost_total":
            team = dict(labels)["genops_team"]
            out[team] = out.get(team, 0.0) + value
    return out


def ledger_report(ledger) -> dict:
    result = subprocess.run([sys.executable, "-m", "relay", "report", "--ledger", str(ledger), "--from", "2025-06-15",
                             "--to", "2025-06-15", "--format", "json", "--by", "team"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("twin_first", [False, True], ids=["broadcast-first", "app-first"])
def test_broadcast_spans_are_priced_attributed_and_counted_once(tmp_path, twin_first):
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    text, ports = config(ledger)
    sink = Sink(ports["sink"]).start()
    relay = RelayProcess(text, tmp_path, ports["health"]).start()
    try:
        for path in ((TWIN, BROADCAST) if twin_first else (BROADCAST, TWIN)):
            assert post_json(ports["otlp_http"], path) == 200
        assert sink.wait_for(Signal.TRACES, 3, timeout=20)
        spans = llm_spans(sink)
        broadcast = [s for s in spans if "gen_ai.usage.total_cost" in s]
        assert len(broadcast) == 2
        support, search = sorted(broadcast, key=lambda s: -s["gen_ai.usage.total_cost"])
        assert (support["genops.cost.source"], support["genops.cost.total"]) == ("reported", SUPPORT_COST)
        assert (search["genops.cost.source"], search["genops.cost.total"]) == ("reported", SEARCH_COST)
        assert [s["genops.provider"] for s in (support, search)] == ["openrouter", "openrouter"]
        assert support["genops.openrouter.actual_provider"] == "Amazon Bedrock"
        assert search["genops.openrouter.actual_provider"] == "Azure"
        # trace.metadata.team for the first; the api_keys mapping of its key name for the second.
        assert (support["genops.team"], support["genops.customer_id"]) == ("support", "cust-0042")
        assert (search["genops.team"], search["genops.project"]) == ("search", "query-rewrite")
        (twin,) = [s for s in spans if "gen_ai.usage.total_cost" not in s]
        assert twin["genops.provider"] == "openrouter" and twin["genops.team"] == "support"
        duplicate = twin if not twin_first else support
        assert duplicate.get("genops.call.duplicate") is True
        # Forwarded as they are, counted once: at the provider's cost whichever copy came first.
        want = {"support": SUPPORT_COST, "search": SEARCH_COST}
        deadline = time.monotonic() + 30
        found = {}
        while time.monotonic() < deadline:
            found = cost_by_team(ports["prometheus"])
            if found.keys() >= want.keys() and all(abs(found[t] - want[t]) < 1e-12 for t in want):
                break
            time.sleep(0.5)
        assert found == pytest.approx(want, abs=1e-12)
        telemetry = scrape(ports["telemetry"])
        assert telemetry[("otelcol_processor_genops_duplicate_calls_total", (("processor", "genops"),))] == 1
    finally:
        assert relay.stop(timeout=15) == 0
        sink.stop()
    report = ledger_report(ledger)
    rows = {row["team"]: row for row in report["rows"]}
    assert rows["support"]["cost_usd"] == pytest.approx(SUPPORT_COST, abs=1e-9)
    assert rows["support"]["requests"] == 1
    assert rows["search"]["cost_usd"] == pytest.approx(SEARCH_COST, abs=1e-9)
