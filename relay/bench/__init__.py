"""``genops-relay bench``: spans/s (or points/s) through a real relay process, next to a same-run ceiling.

The relay runs as its own process on a config (the built-in passthrough:
OTLP/gRPC in, OTLP/gRPC out, no processors). A second process drives it and
is the sink. The ceiling is the rate at which one core parses and serializes
the same payload in-process, measured in the same run, so the ratio survives
a noisy shared machine where absolute figures do not.

``--signal metrics`` sends GenAI usage histograms instead (``usage_payload``)
through a metrics pipeline: the genops processor, and with genops-metrics the
connector pricing them (``cost_from: metrics``); the ceiling is then the
parse + serialize rate of that metrics payload.

A custom ``--config`` must listen on ``${BENCH_RECEIVER_ENDPOINT}``, send its
traces to ``${BENCH_SINK_ENDPOINT}`` and may put a health_check on
``${BENCH_HEALTH_ENDPOINT}`` and a prometheus exporter on
``${BENCH_PROMETHEUS_ENDPOINT}``; the bench sets those variables. With
``--signal metrics`` it sends metrics there instead.
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
SIGNALS = ("traces", "metrics")
METRICS_PAYLOAD = "genai-usage"  # see relay.bench.usage_payload
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
@COST_FROM@exporters:
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
    @SIGNAL@:
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
    @NAME@:
      receivers: [genops_metrics]
      exporters: [prometheus]
"""


def builtin_config(pipeline: str, signal: str = "traces") -> str:
    """The built-in config for a --pipeline and --signal; endpoints come from the BENCH_* variables."""
    aggregate = pipeline == "genops-metrics"
    metrics = signal == "metrics"
    # The connector's own counters get a pipeline of their own, as in the default config, so
    # they neither pass the genops processor nor come back into the connector.
    output = _METRICS_PIPELINE.replace("@NAME@", "metrics/genops" if metrics else "metrics")
    return (_CONFIG.replace("@SIGNAL@", signal)
            .replace("@COST_FROM@", "    cost_from: metrics\n" if metrics else "")
            .replace("@PROCESSORS@", "[]" if pipeline == "passthrough" else "[genops]")
            .replace("@EXPORTERS@", "[otlp, genops_metrics]" if aggregate else "[otlp]")
            .replace("@METRICS@", output if aggregate else ""))


def add_arguments(parser) -> None:
    parser.add_argument("--config", help="relay config to measure (default: a built-in --pipeline)")
    parser.add_argument("--pipeline", choices=sorted(PIPELINES), default="passthrough",
                        help="built-in pipeline to measure when no --config is given (default passthrough)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first (default 1)")
    parser.add_argument("--signal", choices=SIGNALS, default="traces",
                        help="traces: LLM spans (default); metrics: GenAI usage histograms as the openai-v2 "
                             "instrumentation exports them, through a metrics pipeline")
    parser.add_argument("--spans-per-request", type=int, default=512)
    parser.add_argument("--points-per-request", type=int, default=512,
                        help="data points per request with --signal metrics (whole calls: up to two more)")
    parser.add_argument("--payload", choices=PAYLOADS,
                        help="traces only. llm: the traces_llm fixture (default); dialects: every "
                             "instrumentation dialect's recorded spans mixed")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--scenario", choices=("outage", "crash", "overload", "budget-check"),
                        help="run a reliability scenario, or budget-check (the latency of "
                             "/api/v1/budgets/check), instead of the throughput measurement")
    parser.add_argument("--requests", type=int, default=2000,
                        help="--scenario budget-check: requests per measurement (default 2000)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ceiling(payload: bytes, spans: int, seconds: float = 2.0, signal: str = "traces") -> float:
    """Spans (or data points) per second one core reaches parsing and re-serializing the payload in-process."""
    from relay.signals import Signal

    parse = Signal(signal).request_type.FromString
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


def _payload(args) -> tuple[bytes, int]:
    """The serialized request the load driver starts from, and the items (spans, points) it holds."""
    if args.signal == "metrics":
        from relay.bench.usage_payload import usage_request

        request, points = usage_request(args.points_per_request)
        return request.SerializeToString(), points
    from relay.bench.payload import llm_spans

    return llm_spans(args.spans_per_request, payload=args.payload).SerializeToString(), args.spans_per_request


def measure(args) -> dict:
    if args.payload is None:
        args.payload = METRICS_PAYLOAD if args.signal == "metrics" else "llm"
    payload, items = _payload(args)
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
            Path(config_path).write_text(builtin_config(args.pipeline, args.signal))
        relay_log = open(Path(tmp, "relay.log"), "w+")
        load = subprocess.Popen(
            [sys.executable, "-m", "relay.bench.load", "--target", env["BENCH_RECEIVER_ENDPOINT"],
             "--sink-port", str(ports["sink"]), "--payload", str(payload_path),
             "--duration", str(args.duration), "--warmup", str(args.warmup),
             "--concurrency", str(args.concurrency), "--signal", args.signal],
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
    rate = result["acked_requests"] * items / result["elapsed_s"] if result["elapsed_s"] > 0 else 0.0
    top = ceiling(payload, items, signal=args.signal)
    unit = "points" if args.signal == "metrics" else "spans"
    config = args.config or PIPELINES[args.pipeline]
    if args.signal == "metrics" and not args.config:
        config = config.replace("genops_metrics", "genops_metrics (cost_from: metrics)")
    measured = {
        "signal": args.signal,
        "config": config,
        f"{unit}_per_request": items,
        "payload": args.payload,
        "payload_bytes": len(payload),
        "concurrency": args.concurrency,
        "duration_s": round(result["elapsed_s"], 2),
        f"relay_{unit}_per_s": round(rate),
        f"ceiling_{unit}_per_s": round(top),
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
        if args.signal == "metrics":
            processor, connector = usage_cost_per_point(payload, items, args.pipeline == "genops-metrics")
            measured["genops_us_per_point"] = round(processor, 2)
            if connector is not None:
                measured["genops_metrics_us_per_point"] = round(connector, 2)
        else:
            measured["genops_us_per_span"] = round(genops_cost_per_span(payload, items), 2)
    return measured


def genops_cost_per_span(payload: bytes, spans: int, rounds: int = 20) -> float:
    """Microseconds the genops processor adds per span, in-process on one core.

    Each round parses a fresh copy (the processor edits in place) and times
    only the processor call, so parsing and serializing are not counted.
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from prometheus_client import CollectorRegistry

    from relay.bench.payload import numbered
    from relay.component import ComponentID, Settings
    from relay.processors import genops
    from relay.telemetry import SelfMetrics

    processor = genops.create(Settings(ComponentID("genops"), SelfMetrics(CollectorRegistry())), genops.Config(), None)
    spent = 0.0
    for number in range(rounds):
        request = ExportTraceServiceRequest.FromString(numbered(payload, number))
        start = time.perf_counter()
        processor.process(request)
        spent += time.perf_counter() - start
    return spent / (rounds * spans) * 1e6


def usage_cost_per_point(payload: bytes, points: int, connector: bool, rounds: int = 20, warmup: int = 5) -> tuple:
    """Microseconds the genops processor, and the genops_metrics connector pricing usage, each
    spend per data point of successive exports, in-process on one core (parsing not counted).
    Each request is bound to its wire form as the receiver binds it, and the first ``warmup``
    exports are not counted: in a running relay the series are known. The connector's figure
    is None when ``connector`` is false."""
    import asyncio

    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from prometheus_client import CollectorRegistry

    from relay import received
    from relay.bench.usage_payload import Stream
    from relay.component import ComponentID, Settings
    from relay.config.decode import decode
    from relay.connectors import genops_metrics
    from relay.processors import genops
    from relay.telemetry import SelfMetrics

    processor = genops.create(Settings(ComponentID("genops"), SelfMetrics(CollectorRegistry())), genops.Config(), None)
    aggregate = None
    if connector:
        config, _ = decode(genops_metrics.Config, {"cost_from": "metrics"})
        aggregate = genops_metrics.create(Settings(ComponentID("genops_metrics"), SelfMetrics(CollectorRegistry())),
                                          config)
    stream = Stream(payload, 0, time.time_ns())
    spent = [0.0, 0.0]

    async def run() -> None:
        for number in range(warmup + rounds):
            data = stream.next(time.time_ns())
            request = ExportMetricsServiceRequest.FromString(data)
            token = received.bind(request, data)
            start = time.perf_counter()
            processor.process(request)
            middle = time.perf_counter()
            if aggregate is not None:
                await aggregate.consume(request)
            if number >= warmup:
                spent[0] += middle - start
                spent[1] += time.perf_counter() - middle
            received.unbind(token)

    asyncio.run(run())
    per_point = [seconds / (rounds * points) * 1e6 for seconds in spent]
    return per_point[0], per_point[1] if connector else None


def render(result: dict) -> str:
    if result.get("signal") == "metrics":
        return _render_metrics(result)
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


def _render_metrics(result: dict) -> str:
    lat = result["latency_ms"]
    lines = [
        f"config:            {result['config']}",
        f"payload:           {result['points_per_request']} GenAI usage histogram points/request "
        f"({result['payload']}), {result['payload_bytes']} bytes, {result['concurrency']} in flight",
        f"relay:             {result['relay_points_per_s']:,} points/s over {result['duration_s']} s "
        f"({result['relay_cpu_cores']} cores busy)",
        f"ceiling:           {result['ceiling_points_per_s']:,} points/s (parse + serialize, one core, same run)",
        f"ratio:             {result['ratio']}",
        f"latency (ms):      p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}",
        f"acked / at sink:   {result['acked_requests']} / {result['sink_requests']} requests",
    ]
    if "genops_us_per_point" in result:
        lines.append(f"genops processor:  {result['genops_us_per_point']} µs per point (in-process, one core)")
    if "genops_metrics_us_per_point" in result:
        lines.append(f"genops_metrics:    {result['genops_metrics_us_per_point']} µs per point pricing usage "
                     "(in-process, one core)")
    if result["errors"]:
        lines.append(f"errors:            {result['errors']}")
    if result["relay_log_tail"]:
        lines.append("relay log tail:\n" + result["relay_log_tail"])
    return "\n".join(lines)


def main(args) -> int:
    if args.scenario == "budget-check":
        from relay.bench import scenarios
        from relay.bench.scenarios.budget_check import run as budget_check

        result = budget_check(args.requests)
        print(json.dumps(result, indent=2) if args.json else scenarios.render(result))
        return 0 if result["passed"] else 1
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
    if args.signal == "metrics" and args.payload is not None:
        print(f"--payload chooses among span payloads; --signal metrics sends {METRICS_PAYLOAD}", file=sys.stderr)
        return 2
    result = measure(args)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if result["acked_requests"] > 0 else 1
