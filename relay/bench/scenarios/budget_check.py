"""Budget check: the latency of ``GET /api/v1/budgets/check`` on a relay, next to a same-run ceiling.

A relay process runs a ``genops_ledger`` whose file is seeded first with known
spend. One keep-alive HTTP client asks it, one request at a time: misses (each
a query not asked before, so the answer is summed from the file on the ledger's
thread) and hits (one query again and again, inside the cache's flush
interval). The ceiling is the same telemetry app (``relay.telemetry.metrics_app``)
in a process of its own, answering a static JSON route of the same size with the
same client. The ratios are the ceiling's p50 over the check's, so that they
survive a noisy machine where the milliseconds do not. Every answer is checked
against the seeded spend.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from relay.bench.scenarios.parts import RelayRun, free_port, scratch_dir

TEAM, PROJECT = "bench", "web"
DAILY_USD, PROJECT_DAILY_USD, MONTHLY_USD = 1000.0, 100.0, 10_000.0
CUSTOMERS = 50
COST = 0.25            # per seeded row, one per customer


def config(ledger_dir: Path, *, health: int, telemetry: int, receiver: int) -> str:
    return f"""\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{receiver}
exporters:
  debug:
    verbosity: basic
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  genops_ledger:
    directory: {ledger_dir}
    create_directory: true
    # The answer cache lives this long: longer than the run, so repeated queries hit it.
    flush_interval: 10m
    budgets:
      - {{team: {TEAM}, daily_usd: {DAILY_USD}, monthly_usd: {MONTHLY_USD}}}
      - {{team: {TEAM}, project: {PROJECT}, daily_usd: {PROJECT_DAILY_USD}}}
service:
  extensions: [health_check, genops_ledger]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    logs:
      level: warn
    metrics:
      address: 127.0.0.1:{telemetry}
"""


def seed(ledger_dir: Path, now_ns: int) -> float:
    """Write one row per customer into the current hour; returns the project's spend today."""
    from relay.ledger.periods import bucket_start
    from relay.ledger.runtime import FILE_NAME
    from relay.ledger.store import LedgerStore, RowValues

    ledger_dir.mkdir(parents=True, exist_ok=True)
    store = LedgerStore(ledger_dir / FILE_NAME)
    store.open()
    try:
        bucket = bucket_start(now_ns, "hour")
        store.write({(bucket, TEAM, PROJECT, "gpt-4o", "openai", f"c{index}"): RowValues(cost=COST, requests=1)
                     for index in range(CUSTOMERS)})
    finally:
        store.close()
    return math.fsum([COST] * CUSTOMERS)


def static_body() -> bytes:
    """A JSON body the size of a check's answer, for the ceiling's static route."""
    return json.dumps({"allowed": True, "spent_usd": 12.5, "limit_usd": 100.0, "remaining_usd": 87.5,
                       "utilization": 0.125, "period": "daily", "period_key": "2026-01-01",
                       "budget": {"name": "bench/web", "team": "bench", "project": "web", "customer": None,
                                  "daily_usd": 100.0, "monthly_usd": None},
                       "budgets_applied": 2, "spend": "stored+unflushed", "max_staleness_s": 600.0,
                       "as_of": "2026-01-01T00:00:00.000+00:00"}).encode()


def serve_static(port: int) -> None:
    """The ceiling's server: the telemetry app with one static route, until stdin closes."""
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from relay.httpserver import HttpListener
    from relay.telemetry import metrics_app

    body = static_body()

    async def static(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def main() -> None:
        listener = HttpListener(metrics_app(CollectorRegistry(), [("GET", "/static", static)]), f"127.0.0.1:{port}")
        await listener.start()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await listener.shutdown()

    asyncio.run(main())


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)] * 1000, 3)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1] * 1000, 3)} if ordered else {}


async def timed(session, urls: list[str]) -> tuple[list[float], list[dict], dict]:
    """One request at a time: each one's seconds, JSON answer, and the statuses that were not 200."""
    seconds, answers, errors = [], [], {}
    for url in urls:
        start = time.perf_counter()
        async with session.get(url) as answer:
            body = await answer.read()
        seconds.append(time.perf_counter() - start)
        if answer.status != 200:
            errors[str(answer.status)] = errors.get(str(answer.status), 0) + 1
            continue
        answers.append(json.loads(body))
    return seconds, answers, errors


async def drive(check_base: str, static_url: str, requests: int) -> dict:
    import aiohttp

    # Distinct customers: queries never asked before, so each one is a miss.
    misses = [f"{check_base}?team={TEAM}&project={PROJECT}&customer=m{index}" for index in range(requests)]
    hit = f"{check_base}?team={TEAM}&project={PROJECT}"
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        # Warm the connection and the hit's cache entry; not measured.
        await timed(session, [hit, static_url, f"{check_base}?team=warmup"])
        static_s, _, static_errors = await timed(session, [static_url] * requests)
        miss_s, miss_answers, miss_errors = await timed(session, misses)
        hit_s, hit_answers, hit_errors = await timed(session, [hit] * requests)
    errors = {f"{name}:{status}": count for name, found in (("static", static_errors), ("miss", miss_errors),
                                                             ("hit", hit_errors)) for status, count in found.items()}
    return {"static": static_s, "miss": miss_s, "hit": hit_s, "miss_answers": miss_answers,
            "hit_answers": hit_answers, "errors": errors}


def run(requests: int = 2000) -> dict:
    if requests < 1:
        raise ValueError("requests must be at least 1")
    ports = {name: free_port() for name in ("receiver", "health", "telemetry", "static")}
    with scratch_dir() as tmp:
        ledger_dir = Path(tmp, "ledger")
        expected = seed(ledger_dir, time.time_ns())
        relay = RelayRun(config(ledger_dir, health=ports["health"], telemetry=ports["telemetry"],
                                receiver=ports["receiver"]), Path(tmp), ports["health"])
        ceiling = subprocess.Popen([sys.executable, "-m", "relay.bench.scenarios.budget_check", str(ports["static"])],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            relay.start()
            if ceiling.stdout.readline().strip() != "ready":
                raise RuntimeError("the ceiling's server did not start")
            figures = asyncio.run(drive(f"http://127.0.0.1:{ports['telemetry']}/api/v1/budgets/check",
                                        f"http://127.0.0.1:{ports['static']}/static", requests))
        finally:
            ceiling.stdin.close()
            try:
                ceiling.wait(10)
            except subprocess.TimeoutExpired:
                ceiling.kill()
                ceiling.wait(10)
            status = relay.stop()
            tail = relay.log_tail(2000)
    wrong = sum(1 for answer in figures["miss_answers"] + figures["hit_answers"]
                if not (answer.get("budget") or {}).get("name") == f"{TEAM}/{PROJECT}"
                or abs(answer.get("spent_usd", -1) - expected) > 1e-9)
    static, hit, miss = (percentiles(figures[name]) for name in ("static", "hit", "miss"))
    result = {
        "scenario": "budget-check",
        "requests": requests,
        "expected_spent_usd": expected,
        "wrong_answers": wrong,
        "errors": figures["errors"],
        "ceiling_ms": static,
        "check_hit_ms": hit,
        "check_miss_ms": miss,
        "ratio_hit": round(static["p50"] / hit["p50"], 3) if hit.get("p50") else 0.0,
        "ratio_miss": round(static["p50"] / miss["p50"], 3) if miss.get("p50") else 0.0,
        "ceiling": "the telemetry app answering a static JSON route, same client, same run",
        "relay_exit_status": status,
    }
    result["passed"] = not figures["errors"] and wrong == 0 and status == 0
    if not result["passed"]:
        result["relay_log_tail"] = tail
    return result


if __name__ == "__main__":
    serve_static(int(sys.argv[1]))
