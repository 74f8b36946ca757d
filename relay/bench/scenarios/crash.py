"""Crash: persistent queue on, downstream down; the relay is killed with SIGKILL mid-load,
started again, and only then does the downstream come up.

Every span the relay acknowledged to the SDK must arrive; what was acknowledged
before the kill can only come from the queue on disk.
"""

from __future__ import annotations

import time
from pathlib import Path

from relay.bench.scenarios.config import scenario_config
from relay.bench.scenarios.parts import CountingSink, RelayRun, SdkClient, free_port, scratch_dir, wait_until


def run(total: int = 20_000, rate: float = 5_000.0, kill_at: float = 0.5, drain_timeout: float = 120.0) -> dict:
    ports = {name: free_port() for name in ("receiver", "health", "metrics")}
    sink = CountingSink()  # down until the end
    with scratch_dir() as tmp:
        queue_dir = Path(tmp, "queue")
        queue_dir.mkdir()
        config = scenario_config(receiver=ports["receiver"], sink=sink.endpoint, health=ports["health"],
                                 metrics=ports["metrics"], queue_dir=queue_dir,
                                 queue="        queue_size: 100000\n")
        relay = RelayRun(config, Path(tmp), ports["health"]).start()
        events = {}
        try:
            client = SdkClient(ports["receiver"], total)

            def progress(produced: int) -> None:
                if "killed" not in events and produced >= total * kill_at:
                    with client._lock:
                        events["acked_before_kill"] = len(client.acked)
                    relay.kill()
                    events["killed"] = time.monotonic()
                    relay.start()
                    events["restarted"] = time.monotonic()

            client.produce(total, rate, progress)
            client.finish()
            sink.start()
            events["sink_up"] = time.monotonic()
            acked = set(client.acked)
            wait_until(lambda: acked <= sink.unique(), drain_timeout, 0.2)
            drained = time.monotonic()
            status = relay.stop()
        finally:
            relay.stop()
            sink.stop()
        delivered = sink.unique()
        return {
            "scenario": "crash",
            "spans_sent": len(client.sent),
            "spans_acknowledged": len(acked),
            "acknowledged_before_kill": events.get("acked_before_kill", 0),
            "sdk_export_failures": len(client.failed),
            "spans_delivered": len(delivered),
            "missing_acknowledged": len(acked - delivered),
            "duplicates": sink.duplicates(),
            "relay_down_s": round(events["restarted"] - events["killed"], 2) if "killed" in events else 0.0,
            "drain_after_sink_up_s": round(drained - events["sink_up"], 2),
            "relay_exit_status": status,
            "passed": "killed" in events and not (acked - delivered) and status == 0,
        }
