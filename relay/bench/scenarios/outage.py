"""Outage: the downstream goes away in the middle of a steady stream from the SDK, then returns.

Every span the SDK produced must reach the sink afterwards; duplicates
(at-least-once delivery) are counted, not hidden.
"""

from __future__ import annotations

import time
from pathlib import Path

from relay.bench.scenarios.config import scenario_config, self_metric
from relay.bench.scenarios.parts import CountingSink, RelayRun, SdkClient, free_port, scratch_dir, wait_until


def run(total: int = 50_000, rate: float = 8_000.0, down_from: float = 0.2, down_until: float = 0.7,
        drain_timeout: float = 120.0) -> dict:
    ports = {name: free_port() for name in ("receiver", "health", "metrics")}
    sink = CountingSink().start()
    with scratch_dir() as tmp:
        relay = RelayRun(scenario_config(receiver=ports["receiver"], sink=sink.endpoint, health=ports["health"],
                                         metrics=ports["metrics"]), Path(tmp), ports["health"]).start()
        outage = {}
        try:
            client = SdkClient(ports["receiver"], total)

            def progress(produced: int) -> None:
                if "down" not in outage and produced >= total * down_from:
                    sink.stop()
                    outage["down"] = time.monotonic()
                elif "up" not in outage and produced >= total * down_until:
                    sink.start()
                    outage["up"] = time.monotonic()

            started = time.monotonic()
            client.produce(total, rate, progress)
            if "up" not in outage:
                sink.start()
                outage["up"] = time.monotonic()
            client.finish()
            sent = set(client.sent)
            wait_until(lambda: sent <= sink.unique(), drain_timeout, 0.2)
            drained = time.monotonic()
            retried = self_metric(ports["metrics"], "otelcol_exporter_send_failed_spans_total")
            status = relay.stop()
        finally:
            relay.stop()
            sink.stop()
        delivered = sink.unique()
        return {
            "scenario": "outage",
            "spans_sent": len(sent),
            "spans_acknowledged": len(client.acked),
            "sdk_export_failures": len(client.failed),
            "spans_delivered": len(delivered & sent),
            "missing": len(sent - delivered),
            "duplicates": sink.duplicates(),
            "outage_s": round(outage["up"] - outage.get("down", outage["up"]), 2),
            "drain_after_outage_s": round(drained - outage["up"], 2),
            "elapsed_s": round(drained - started, 2),
            "dropped_by_relay": int(retried),
            "relay_exit_status": status,
            "passed": not (sent - delivered) and status == 0,
        }
