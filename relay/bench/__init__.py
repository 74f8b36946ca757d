"""``genops-relay bench``: spans/s through a real relay process, next to a same-run ceiling.

The relay runs as its own process on a config (the built-in passthrough:
OTLP/gRPC in, OTLP/gRPC out, no processors). A second process drives it and
is the sink. The ceiling is the rate at which one core parses and serializes
the same payload in-process, measured in the same run, so the ratio survives
a noisy shared machine where absolute figures do not.

A custom ``--config`` must listen on ``${BENCH_RECEIVER_ENDPOINT}``, send its
traces to ``${BENCH_SINK_ENDPOINT}`` and may put a health_check on
``${BENCH_HEALTH_ENDPOINT}`` and a prometheus exporter on
``${BENCH_PROMETHEUS_ENDPOINT}``; the bench sets those variables.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PAYLOADS = ("llm", "dialects")  # see relay.bench.payload
PIPELINES = {
    "passthrough": "built-in passthrough (otlp grpc -> otlp grpc, no compression)",
    "genops": "built-in genops (otlp grpc -> genops processor -> otlp grpc, no compression)",
    "genops-metrics": "built-in genops with aggregation (otlp grpc -> genops -> otlp grpc and genops_metrics "
                      "-> prometheus, no compression)",
}

_CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${BENCH_RECEIVER_ENDPOINT}
processors:
  genops: {}
connectors:
  genops_metrics:
    metrics_flush_interval: 1s
exporters:
  otlp:
    endpoint: ${BENCH_SINK_ENDPOINT}
    compression: none
    tls:
      insecure: true
  prometheus:
    endpoint: ${BENCH_PROMETHEUS_ENDPOINT}
    namespace: genops_openrouter
    const_labels: {service: openrouter}
extensions:
  health_check:
    endpoint: ${BENCH_HEALTH_ENDPOINT}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: @PROCESSORS@
      exporters: @EXPORTERS@
@METRICS@  telemetry:
    logs:
      level: warn
    metrics:
      level: none
"""
_METRICS_PIPELINE = """\
    metrics:
      receivers: [genops_metrics]
      exporters: [prometheus]
"""


def builtin_config(pipeline: str) -> str:
    """The built-in config for a --pipeline; endpoints come from the BENCH_* variables."""
    aggregate = pipeline == "genops-metrics"
    return (_CONFIG.replace("@PROCESSORS@", "[]" if pipeline == "passthrough" else "[genops]")
            .replace("@EXPORTERS@", "[otlp, genops_metrics]" if aggregate else "[otlp]")
            .replace("@METRICS@", _METRICS_PIPELINE if aggregate else ""))


def add_arguments(parser) -> None:
    parser.add_argument("--config", help="relay config to measure (default: a built-in --pipeline)")
    parser.add_argument("--pipeline", choices=sorted(PIPELINES), default="passthrough",
                        help="built-in pipeline to measure when no --config is given (default passthrough)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first (default 1)")
    parser.add_argument("--spans-per-request", type=int, default=512)
    parser.add_argument("--payload", choices=PAYLOADS, default="llm",
                        help="llm: the traces_llm fixture (default); dialects: every instrumentation dialect's "
                             "recorded spans mixed")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--scenario", choices=("outage", "crash", "overload"),
                        help="run a reliability scenario instead of the throughput measurement")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ceiling(payload: bytes, spans: int, seconds: float = 2.0) -> float:
    """Spans/s one core reaches parsing and re-serializing the payload in-process."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    parse = ExportTraceServiceRequest.FromString
    rounds, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline and rounds < 10_000_000:
        for _ in range(10):
            parse(payload).SerializeToString()
        rounds += 10
    return rounds * spans / (time.perf_counter() - start)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_healthy(url: str, relay: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if relay.poll() is not None:
            raise RuntimeError(f"the relay exited with status {relay.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the relay did not become healthy in time")


def _wait_listening(port: int, relay: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if relay.poll() is not None:
            raise RuntimeError(f"the relay exited with status {relay.returncode} before it was ready")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the relay did not open its receiver port in time")


def measure(args) -> dict:
    from relay.bench.payload import llm_spans

    payload = llm_spans(args.spans_per_request, payload=args.payload).SerializeToString()
    ports = {name: free_port() for name in ("receiver", "sink", "health", "prometheus")}
    env = dict(os.environ,
               BENCH_RECEIVER_ENDPOINT=f"127.0.0.1:{ports['receiver']}",
               BENCH_SINK_ENDPOINT=f"127.0.0.1:{ports['sink']}",
               BENCH_HEALTH_ENDPOINT=f"127.0.0.1:{ports['health']}",
               BENCH_PROMETHEUS_ENDPOINT=f"127.0.0.1:{ports['prometheus']}")
    with tempfile.TemporaryDirectory(prefix="genops-bench-") as tmp:
        payload_path = Path(tmp, "payload.binpb")
        payload_path.write_bytes(payload)
        config_path = args.config or str(Path(tmp, "passthrough.yaml"))
        if not args.config:
            Path(config_path).write_text(builtin_config(args.pipeline))
        relay_log = open(Path(tmp, "relay.log"), "w+")
        load = subprocess.Popen(
            [sys.executable, "-m", "relay.bench.load", "--target", env["BENCH_RECEIVER_ENDPOINT"],
             "--sink-port", str(ports["sink"]), "--payload", str(payload_path),
             "--duration", str(args.duration), "--warmup", str(args.warmup),
             "--concurrency", str(args.concurrency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        relay = subprocess.Popen([sys.executable, "-m", "relay", "run", "--config", config_path],
                                 stdout=relay_log, stderr=subprocess.STDOUT, env=env)
        try:
            load.stdout.readline()  # the sink is up
            if args.config:
                _wait_listening(ports["receiver"], relay)
            else:
                wait_healthy(f"http://127.0.0.1:{ports['health']}/", relay)
            cpu_before = _cpu_seconds(relay.pid)
            load.stdin.write("go\n")
            load.stdin.flush()
            out, _ = load.communicate(timeout=args.duration + args.warmup + 60)
            cpu_used = _cpu_seconds(relay.pid) - cpu_before
            result = json.loads(out.strip().splitlines()[-1])
        finally:
            for process in (load, relay):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in (load, relay):
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
            relay_log.seek(0)
            tail = relay_log.read()[-2000:]
            relay_log.close()
    spans = args.spans_per_request
    rate = result["acked_requests"] * spans / result["elapsed_s"] if result["elapsed_s"] > 0 else 0.0
    top = ceiling(payload, spans)
    measured = {
        "config": args.config or PIPELINES[args.pipeline],
        "spans_per_request": spans,
        "payload": args.payload,
        "payload_bytes": len(payload),
        "concurrency": args.concurrency,
        "duration_s": round(result["elapsed_s"], 2),
        "relay_spans_per_s": round(rate),
        "ceiling_spans_per_s": round(top),
        "ratio": round(rate / top, 3) if top else 0.0,
        "relay_cpu_cores": round(cpu_used / (args.warmup + result["elapsed_s"]), 2),
        "latency_ms": {k: round(v, 2) for k, v in result["latency_ms"].items()},
        "acked_requests": result["acked_requests"],
        "sink_requests": result["sink_requests"],
        "errors": result["errors"],
        "relay_exit_status": relay.returncode,
        "relay_log_tail": tail if relay.returncode not in (0, None) or result["errors"] else "",
    }
    if not args.config and args.pipeline != "passthrough":
        measured["genops_us_per_span"] = round(genops_cost_per_span(payload, spans), 2)
    return measured


def genops_cost_per_span(payload: bytes, spans: int, rounds: int = 20) -> float:
    """Microseconds the genops processor adds per span, in-process on one core.

    Each round parses a fresh copy (the processor edits in place) and times
    only the processor call, so parsing and serializing are not counted.
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from prometheus_client import CollectorRegistry

    from relay.bench.payload import numbered
    from relay.component import ComponentID
    from relay.processors import genops
    from relay.telemetry import SelfMetrics

    processor = genops.create(ComponentID("genops"), genops.Config(), None, SelfMetrics(CollectorRegistry()))
    spent = 0.0
    for number in range(rounds):
        request = ExportTraceServiceRequest.FromString(numbered(payload, number))
        start = time.perf_counter()
        processor.process(request)
        spent += time.perf_counter() - start
    return spent / (rounds * spans) * 1e6


def render(result: dict) -> str:
    lat = result["latency_ms"]
    lines = [
        f"config:            {result['config']}",
        f"payload:           {result['spans_per_request']} spans/request of {result['payload']}, "
        f"{result['payload_bytes']} bytes, "
        f"{result['concurrency']} in flight",
        f"relay:             {result['relay_spans_per_s']:,} spans/s over {result['duration_s']} s "
        f"({result['relay_cpu_cores']} cores busy)",
        f"ceiling:           {result['ceiling_spans_per_s']:,} spans/s (parse + serialize, one core, same run)",
        f"ratio:             {result['ratio']}",
        f"latency (ms):      p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}",
        f"acked / at sink:   {result['acked_requests']} / {result['sink_requests']} requests",
    ]
    if "genops_us_per_span" in result:
        lines.append(f"genops processor:  {result['genops_us_per_span']} µs added per span (in-process, one core)")
    if result["errors"]:
        lines.append(f"errors:            {result['errors']}")
    if result["relay_log_tail"]:
        lines.append("relay log tail:\n" + result["relay_log_tail"])
    return "\n".join(lines)


def main(args) -> int:
    if args.scenario:
        from relay.bench import scenarios

        try:
            import opentelemetry.sdk  # noqa: F401 - the scenarios' client is the real SDK
        except ImportError:
            print("the reliability scenarios drive the relay with the OpenTelemetry SDK: "
                  "python3 -m pip install 'genops-relay[test]'", file=sys.stderr)
            return 2
        result = scenarios.run(args.scenario)
        print(json.dumps(result, indent=2) if args.json else scenarios.render(result))
        return 0 if result["passed"] else 1
    result = measure(args)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if result["acked_requests"] > 0 else 1
