"""The bench's second process: an OTLP/gRPC load generator and a counting sink.

Run by ``genops-relay bench``; prints one JSON object on stdout. The driver
sends the same pre-serialized request with ``concurrency`` calls in flight,
so its own cost per call is small; the sink counts requests without parsing
them, because the payload is fixed and its span count known.

With ``--signal metrics`` each worker sends its own instances' successive
cumulative exports (``usage_payload.Stream``), one call at a time, so the
series of one instance reach the relay in the order they grew.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time

import grpc

from relay.bench.payload import numbered
from relay.signals import Signal

SIGNALS = {"traces": Signal.TRACES, "metrics": Signal.METRICS}


async def run(args) -> dict:
    payload = open(args.payload, "rb").read()
    received = {"requests": 0}

    async def sink_export(data: bytes, context) -> bytes:
        received["requests"] += 1
        return b""

    sink = grpc.aio.server(options=[("grpc.max_receive_message_length", -1)])
    sink.add_generic_rpc_handlers(tuple(grpc.method_handlers_generic_handler(
        signal.service, {"Export": grpc.unary_unary_rpc_method_handler(sink_export)})
        for signal in SIGNALS.values()))
    sink.add_insecure_port(f"127.0.0.1:{args.sink_port}")
    await sink.start()
    print(json.dumps({"sink": "ready"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # parent: "go"

    sent = itertools.count()
    if args.signal == "metrics":
        from relay.bench.usage_payload import Stream

        started = time.time_ns()
        streams = [Stream(payload, worker, started) for worker in range(args.concurrency)]

        def request_for(worker: int) -> bytes:
            return streams[worker].next(time.time_ns())
    else:
        def request_for(worker: int) -> bytes:
            return numbered(payload, next(sent))

    channel = grpc.aio.insecure_channel(args.target, options=[("grpc.max_send_message_length", -1)])
    export = channel.unary_unary(SIGNALS[args.signal].method)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    clock = time.perf_counter
    warm_until = clock() + args.warmup
    end = warm_until + args.duration

    async def worker(number: int) -> None:
        while (now := clock()) < end:
            try:
                await export(request_for(number), timeout=30)
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] = errors.get(error.code().name, 0) + 1
                continue
            done = clock()
            if now >= warm_until:
                latencies.append(done - now)

    await asyncio.gather(*(worker(number) for number in range(args.concurrency)))
    elapsed = clock() - warm_until
    await channel.close()
    await sink.stop(1)
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0

    return {
        "acked_requests": len(latencies),
        "elapsed_s": elapsed,
        "sink_requests": received["requests"],
        "errors": errors,
        "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
                       "max": latencies[-1] * 1000 if latencies else 0.0},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--sink-port", type=int, required=True)
    parser.add_argument("--payload", required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--signal", choices=sorted(SIGNALS), default="traces")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
