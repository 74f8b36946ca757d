"""Overload: clients send faster than a slow downstream accepts, for a sustained stretch.

The memory limiter must hold the relay's resident memory near ``limit_mib``
by refusing with UNAVAILABLE (so clients keep their data and retry), and
every request the relay acknowledged must still arrive.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import grpc

from relay.bench.scenarios.config import scenario_config, self_metric
from relay.bench.scenarios.parts import CountingSink, RelayRun, free_port, llm_request, scratch_dir, wait_until
from relay.signals import Signal

# What may sit above limit_mib: one check interval's worth of arrivals before the
# limiter notices, plus the requests being read and parsed when it does.
OVERHEAD_MIB = 64


def run(limit_mib: int = 240, spike_limit_mib: int = 60, clients: int = 4, duration: float = 8.0,
        spans_per_request: int = 500, attribute_bytes: int = 2000, sink_delay: float = 0.1,
        drain_timeout: float = 180.0) -> dict:
    ports = {name: free_port() for name in ("receiver", "health", "metrics")}
    sink = CountingSink(delay=sink_delay, workers=1).start()
    limiter = (f"    check_interval: 100ms\n    limit_mib: {limit_mib}\n"
               f"    spike_limit_mib: {spike_limit_mib}\n")
    acked: set[int] = set()
    codes: Counter = Counter()
    lock = threading.Lock()
    with scratch_dir() as tmp:
        config = scenario_config(receiver=ports["receiver"], sink=sink.endpoint, health=ports["health"],
                                 metrics=ports["metrics"], memory_limiter=limiter,
                                 queue="        queue_size: 100000\n        num_consumers: 2\n")
        relay = RelayRun(config, Path(tmp), ports["health"]).start()
        baseline = relay.rss()

        def client(seed: int) -> None:
            rng = random.Random(seed)
            channel = grpc.insecure_channel(f"127.0.0.1:{ports['receiver']}",
                                            options=[("grpc.max_send_message_length", -1)])
            export = channel.unary_unary(Signal.TRACES.method)
            end = time.monotonic() + duration
            for _ in range(100_000):
                if time.monotonic() >= end:
                    break
                payload, ids = llm_request(spans_per_request, attribute_bytes, rng)
                try:
                    export(payload, timeout=10)
                except grpc.RpcError as error:
                    with lock:
                        codes[error.code().name] += 1
                    time.sleep(0.02)  # as an SDK backs off; the data stays with the client
                    continue
                with lock:
                    acked.update(ids)
                    codes["OK"] += 1
            channel.close()

        try:
            started = time.monotonic()
            workers = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(duration + 60)
            load_end = time.monotonic()
            refused = self_metric(ports["metrics"], "otelcol_processor_memory_limiter_refused_spans_total")
            wait_until(lambda: acked <= sink.unique(), drain_timeout, 0.2)
            drained = time.monotonic()
            peak = relay.peak_rss
            status = relay.stop()
        finally:
            relay.stop()
            sink.stop()
        delivered = sink.unique()
        mib = 1024 * 1024
        bound = limit_mib + OVERHEAD_MIB
        return {
            "scenario": "overload",
            "limit_mib": limit_mib,
            "soft_limit_mib": limit_mib - spike_limit_mib,
            "stated_overhead_mib": OVERHEAD_MIB,
            "baseline_rss_mib": round(baseline / mib, 1),
            "peak_rss_mib": round(peak / mib, 1),
            "load_s": round(load_end - started, 2),
            "requests": dict(codes),
            "spans_refused_by_memory_limiter": int(refused),
            "spans_acknowledged": len(acked),
            "spans_delivered": len(delivered & acked),
            "missing_acknowledged": len(acked - delivered),
            "duplicates": sink.duplicates(),
            "drain_s": round(drained - load_end, 2),
            "relay_exit_status": status,
            "passed": (peak / mib < bound and not (acked - delivered) and status == 0
                       and set(codes) <= {"OK", "UNAVAILABLE"} and codes["UNAVAILABLE"] > 0),
        }
