"""Test helpers: a recording OTLP/gRPC sink and a relay run as a real process.

Waits here end at a deadline on a condition (a request arrived, a process
answered); no test sleeps for a fixed time to "let things happen".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent import futures
from pathlib import Path

import grpc
from aiohttp import web
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from relay import status
from relay.jaeger import proto as jaeger_proto
from relay.signals import Signal

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = ROOT / "tests" / "testdata"


def reference_config() -> str:
    """The production monitoring guide's collector config ("Core Configuration"), verbatim."""
    return (TESTDATA / "reference_collector_config.yaml").read_text()


def reference_subset(processors: set[str], signals: tuple[str, ...] = ("traces", "metrics", "logs")) -> str:
    """The reference config cut to what one processor's tests run: its otlp receiver, the named
    processors with their settings as written, each pipeline's processors among them in the
    written order, and a debug exporter in place of the backends."""
    import yaml

    reference = yaml.safe_load(reference_config())
    pipelines = {signal: {"receivers": ["otlp"],
                          "processors": [p for p in reference["service"]["pipelines"][signal]["processors"]
                                         if p in processors],
                          "exporters": ["debug"]} for signal in signals}
    return yaml.safe_dump({"receivers": {"otlp": reference["receivers"]["otlp"]},
                           "processors": {name: reference["processors"][name] for name in sorted(processors)},
                           "exporters": {"debug": {}}, "service": {"pipelines": pipelines}}, sort_keys=False)


@contextlib.contextmanager
def component_logging(caplog):
    """Route ``relay.component`` to caplog alone, each record once: the logger stops
    propagating once any test ran ``setup_logging``."""
    logger = logging.getLogger("relay.component")
    saved = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


# Every port free_port() has handed out in this test process.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port, never one this process handed out before: the kernel may give a
    just-closed port again, so two asked for in a row (a relay's OTLP and telemetry ports) could
    otherwise be the same, and the relay would fail to start."""
    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free loopback port this process has not handed out already, in 1000 tries")


class Sink:
    """A fake downstream OTLP/gRPC server that records every request it accepts.

    ``fail_with(code, retry_after=None)`` makes it refuse calls until ``fail_with(None)``,
    or only the next ``times`` calls. ``calls`` keeps the monotonic time of every call.
    """

    def __init__(self, port: int = 0, max_receive_bytes: int = 64 * 1024 * 1024):
        self.port = port
        self.max_receive_bytes = max_receive_bytes
        self.requests: dict[Signal, list] = {s: [] for s in Signal}
        self.metadata: list[dict] = []
        self.refused = 0
        self._failure: tuple | None = None
        self._failures_left: int | None = None
        self.calls: list[float] = []
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None

    def start(self) -> "Sink":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                             options=[("grpc.max_receive_message_length", self.max_receive_bytes)])
        for sig in Signal:
            handler = grpc.unary_unary_rpc_method_handler(
                self._handler(sig), request_deserializer=sig.request_type.FromString,
                response_serializer=lambda r: r.SerializeToString())
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(sig.service, {"Export": handler}),))
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0).wait(5)
            self._server = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def fail_with(self, code: grpc.StatusCode | None, message: str = "sink refuses",
                  retry_after: float | None = None, partial: int = 0, times: int | None = None) -> None:
        self._failure = None if code is None and not partial else (code, message, retry_after, partial)
        self._failures_left = times

    def _handler(self, sig: Signal):
        def export(request, context):
            with self._cond:
                self.calls.append(time.monotonic())
                failure = self._failure
                if failure is not None and self._failures_left is not None:
                    self._failures_left -= 1
                    if self._failures_left <= 0:
                        self._failure = None
            if failure is not None and failure[0] is not None:
                code, message, retry_after, _ = failure
                with self._cond:
                    self.refused += 1
                if retry_after is not None:
                    context.set_trailing_metadata(status.retry_info_metadata(code, message, retry_after))
                context.abort(code, message)
            with self._cond:
                self.requests[sig].append(request)
                self.metadata.append(dict(context.invocation_metadata()))
                self._cond.notify_all()
            response = sig.response_type()
            if failure is not None and failure[3]:
                field = {Signal.TRACES: "rejected_spans", Signal.METRICS: "rejected_data_points",
                         Signal.LOGS: "rejected_log_records", Signal.PROFILES: "rejected_profiles"}[sig]
                setattr(response.partial_success, field, failure[3])
                response.partial_success.error_message = failure[1]
            return response
        return export

    def count(self, sig: Signal) -> int:
        with self._cond:
            return sum(sig.count(r) for r in self.requests[sig])

    def wait_for(self, sig: Signal, items: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(sig.count(r) for r in self.requests[sig]) < items:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def span_ids(self) -> list[bytes]:
        with self._cond:
            return [span.span_id for r in self.requests[Signal.TRACES] for rs in r.resource_spans
                    for ss in rs.scope_spans for span in ss.spans]


class Recorder:
    """A consumer that keeps every request it is handed, in order."""

    mutates_data = False

    def __init__(self):
        self.requests = []

    async def consume(self, request) -> None:
        self.requests.append(request)


class RelayProcess:
    """``python -m relay run`` on a config file, with its JSON log captured."""

    # Sets the open-file limit in the child itself before the relay loads: a preexec_fn
    # would run after fork in a parent that has gRPC threads.
    _WITH_NOFILE = ("import resource, sys; n = int(sys.argv.pop(1)); "
                    "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); "
                    "from relay.cli import main; sys.exit(main())")

    def __init__(self, config: str, tmp_path: Path, health_port: int | None = None, env: dict | None = None,
                 nofile: int | None = None):
        self.config_path = tmp_path / "relay.yaml"
        self.config_path.write_text(config)
        self.log_path = tmp_path / "relay.log"
        self.health_port = health_port
        # The data directory (the built-in config's cost ledger) in the test's own directory,
        # never the user's: a config that names ${env:GENOPS_RELAY_DATA} writes there.
        self.env = {**os.environ, "GENOPS_RELAY_DATA": str(tmp_path / "data"), **(env or {})}
        self.nofile = nofile
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "RelayProcess":
        self._log = open(self.log_path, "wb")
        run = ["run", "--config", str(self.config_path)]
        command = ([sys.executable, "-m", "relay", *run] if self.nofile is None
                   else [sys.executable, "-c", self._WITH_NOFILE, str(self.nofile), *run])
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        if self.health_port is not None:
            try:
                self.wait_healthy(timeout)
            except BaseException:  # a relay that never got healthy is stopped, not left running
                self.stop(signal.SIGKILL)
                raise
        return self

    def health(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/", timeout=2) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"relay exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                if self.health()[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"relay not healthy within {timeout}s:\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(5)
            self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log_text().splitlines() if line.startswith("{")]


def passthrough_config(receiver_port: int, exporters: dict[str, str], health_port: int,
                       metrics_port: int | None = None, signals=("traces", "metrics", "logs"),
                       extra_exporter_settings: str = "") -> str:
    """A relay config: OTLP/gRPC in, one insecure OTLP/gRPC exporter per entry of ``exporters``."""
    exporter_yaml = "".join(
        f"  {name}:\n    endpoint: {endpoint}\n    tls:\n      insecure: true\n{extra_exporter_settings}"
        for name, endpoint in exporters.items())
    names = ", ".join(exporters)
    pipelines = "".join(f"    {s}:\n      receivers: [otlp]\n      exporters: [{names}]\n" for s in signals)
    metrics = (f"    metrics:\n      address: 127.0.0.1:{metrics_port}\n" if metrics_port
               else "    metrics:\n      level: none\n")
    return (f"receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{receiver_port}\n"
            f"exporters:\n{exporter_yaml}"
            f"extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health_port}\n"
            f"service:\n  extensions: [health_check]\n  pipelines:\n{pipelines}"
            f"  telemetry:\n    logs:\n      level: info\n{metrics}")


def traces_request(spans: int = 3, attribute_bytes: int = 0, rng: random.Random | None = None
                   ) -> trace_service_pb2.ExportTraceServiceRequest:
    """``spans`` spans under one resource; ids are random when ``rng`` is given, else 1, 2, 3..."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    attr = rs.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", "checkout"
    ss = rs.scope_spans.add()
    for i in range(spans):
        span = ss.spans.add()
        span.trace_id = rng.randbytes(16) if rng else bytes([i + 1]) * 16
        span.span_id = rng.randbytes(8) if rng else bytes([i + 1]) * 8
        span.name = f"span-{i}"
        span.start_time_unix_nano = 1_700_000_000_000_000_000 + i
        span.end_time_unix_nano = 1_700_000_000_000_001_000 + i
    if attribute_bytes:
        big = ss.spans[0].attributes.add()
        big.key, big.value.string_value = "payload", "x" * attribute_bytes
    return request


def metrics_request() -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    sm = request.resource_metrics.add().scope_metrics.add()
    gauge = sm.metrics.add(name="queue.depth")
    for value in (1, 2, 3):
        gauge.gauge.data_points.add(as_int=value, time_unix_nano=1_700_000_000_000_000_000)
    total = sm.metrics.add(name="requests")
    total.sum.is_monotonic = True
    total.sum.aggregation_temporality = 2
    for value in (10, 20):
        total.sum.data_points.add(as_int=value, time_unix_nano=1_700_000_000_000_000_000)
    return request  # 5 data points


def logs_request() -> logs_service_pb2.ExportLogsServiceRequest:
    request = logs_service_pb2.ExportLogsServiceRequest()
    sl = request.resource_logs.add().scope_logs.add()
    for i in range(4):
        sl.log_records.add(time_unix_nano=1_700_000_000_000_000_000 + i).body.string_value = f"line {i}"
    return request  # 4 log records


PROFILE_ID = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")


def _strings(*texts: str) -> dict[str, int]:
    return {text: index for index, text in enumerate(("",) + texts)}


def profiles_request(services: tuple[str, ...] = ("checkout",)) -> profiles_service_pb2.ExportProfilesServiceRequest:
    """A small CPU profile per service, as an eBPF profiler sends it: two stacks of a Go program
    sampled every 10 ms, each profile with a thread attribute, all pointing into one dictionary."""
    request = profiles_service_pb2.ExportProfilesServiceRequest()
    strings = _strings("samples", "count", "cpu", "nanoseconds", "main.main", "main.go", "runtime.gcBgMarkWorker",
                       "mgc.go", "thread.name", "process.executable.name")
    d = request.dictionary
    d.string_table.extend(strings)  # insertion order is index order
    d.mapping_table.add()
    d.link_table.add()
    d.function_table.add()
    d.function_table.add(name_strindex=strings["main.main"], filename_strindex=strings["main.go"], start_line=12)
    d.function_table.add(name_strindex=strings["runtime.gcBgMarkWorker"], filename_strindex=strings["mgc.go"],
                         start_line=1300)
    d.location_table.add()
    d.location_table.add(address=0x401000).lines.add(function_index=1, line=20)
    d.location_table.add(address=0x402000).lines.add(function_index=2, line=1320)
    d.stack_table.add()
    d.stack_table.add(location_indices=[1])
    d.stack_table.add(location_indices=[2, 1])
    d.attribute_table.add()
    for thread in ("main", "gc-worker"):
        entry = d.attribute_table.add(key_strindex=strings["thread.name"])
        entry.value.string_value = thread
    for s, service in enumerate(services):
        rp = request.resource_profiles.add()
        rp.resource.attributes.add(key="service.name").value.string_value = service
        sp = rp.scope_profiles.add()
        sp.scope.name = "go.opentelemetry.io/ebpf-profiler"
        for thread_attribute in (1, 2):
            profile = sp.profiles.add(time_unix_nano=1_767_225_600_000_000_000 + s, duration_nano=10_000_000_000,
                                      period=10_000_000, profile_id=PROFILE_ID, attribute_indices=[thread_attribute])
            profile.sample_type.type_strindex = strings["samples"]
            profile.sample_type.unit_strindex = strings["count"]
            profile.period_type.type_strindex = strings["cpu"]
            profile.period_type.unit_strindex = strings["nanoseconds"]
            profile.samples.add(stack_index=1, values=[7])
            profile.samples.add(stack_index=2, values=[3])
    return request


class JaegerSink:
    """Serves ``jaeger.api_v2.CollectorService/PostSpans`` and records each accepted batch.

    ``refuse(code, calls=None)`` refuses every call, or only the calls numbered in ``calls``
    (counting from 1); ``refuse(None)`` accepts again.
    """

    def __init__(self, credentials: grpc.ServerCredentials | None = None):
        self.credentials = credentials
        self.batches: list = []
        self.metadata: list[dict] = []
        self.calls = 0
        self.hold = threading.Event()       # set: every call waits for ``release``
        self.release = threading.Event()
        self.entered = threading.Event()
        self._refusal: tuple | None = None
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None
        self.port = 0

    def start(self) -> JaegerSink:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(
            self._post, request_deserializer=jaeger_proto.PostSpansRequest.FromString,
            response_serializer=jaeger_proto.PostSpansResponse.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(jaeger_proto.SERVICE, {"PostSpans": handler}),))
        address = "127.0.0.1:0"
        self.port = (server.add_secure_port(address, self.credentials) if self.credentials
                     else server.add_insecure_port(address))
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.stop(0).wait(5)
            self._server = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def refuse(self, code: grpc.StatusCode | None, message: str = "collector refuses",
               calls: set[int] | None = None) -> None:
        self._refusal = None if code is None else (code, message, calls)

    def _post(self, request, context):
        if self.hold.is_set():
            self.entered.set()
            self.release.wait(30)  # bounded: released when the sink stops
        with self._cond:
            self.calls += 1
            number = self.calls
        refusal = self._refusal
        if refusal is not None and (refusal[2] is None or number in refusal[2]):
            context.abort(refusal[0], refusal[1])
        with self._cond:
            self.batches.append(request.batch)
            self.metadata.append(dict(context.invocation_metadata()))
            self._cond.notify_all()
        return jaeger_proto.PostSpansResponse()

    def wait_for_batches(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.batches) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


class ExporterHarness:
    """An exporter under test, used as ``async with``, and the counters it reports into its registry.

    Subclasses build ``self.exporter`` (named ``exporter_id``) counting into ``self.telemetry``.
    """

    def __init__(self, exporter_id: str):
        from prometheus_client import CollectorRegistry

        from relay.telemetry import SelfMetrics

        self.exporter_id = exporter_id
        self.registry = CollectorRegistry()
        self.telemetry = SelfMetrics(self.registry)
        self.exporter = None

    async def __aenter__(self):
        await self.exporter.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.exporter.shutdown()

    async def consume(self, request) -> BaseException | None:
        try:
            await self.exporter.consume(request)
        except Exception as error:  # noqa: BLE001 - returned for the test to inspect
            return error
        return None

    def value(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, {"exporter": self.exporter_id, **labels}) or 0.0

    def sent(self, signal: Signal) -> float:
        return self.value(f"otelcol_exporter_sent_{signal.item}_total")

    def failed(self, signal: Signal, retryable: bool) -> float:
        return self.value(f"otelcol_exporter_send_failed_{signal.item}_total", retryable=str(retryable).lower())

    def rejected(self, signal: Signal) -> float:
        return self.value(f"otelcol_exporter_partially_rejected_{signal.item}_total")

    def enqueue_failed(self, signal: Signal) -> float:
        return self.value(f"otelcol_exporter_enqueue_failed_{signal.item}_total")


def kill_after_commit(script: str, *args: str, while_alive=None):
    """Run ``script`` (Python source) in a child that prints "committed" once its writes are
    done and then holds its files open; SIGKILL it right after. ``while_alive()`` runs between
    the two, while the child still holds the files; its result is returned."""
    process = subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(30, process.kill)  # a hung child fails the test instead of hanging it
    watchdog.start()
    result = None
    try:
        line = process.stdout.readline()
        if line == b"committed\n" and while_alive is not None:
            result = while_alive()
        process.send_signal(signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait(5)
        process.stdin.close()
        process.stdout.close()
        stderr = process.stderr.read().decode(errors="replace")
        process.stderr.close()
    assert line == b"committed\n", stderr
    return result


def emit_sample_metrics(exporter, resource) -> None:
    """A counter, a histogram and a gauge through the real SDK's ``exporter``, flushed once."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("genops.openrouter")
    labels = {"genops.team": "search", "genops.model": "openai/gpt-4o"}
    meter.create_counter("genops.requests").add(3, labels)
    meter.create_histogram("genops.request.duration", unit="s").record(1.7, labels)
    meter.create_gauge("genops.budget.utilization").set(0.42, labels)
    provider.force_flush()
    provider.shutdown()


class HeaderSink:
    """An OTLP/HTTP downstream that keeps each POST's headers."""

    def __init__(self):
        self.headers: list[dict] = []

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.headers.append(dict(request.headers))
        return web.Response(status=200, body=b"", content_type="application/x-protobuf")

    async def __aenter__(self) -> "HeaderSink":
        app = web.Application()
        app.router.add_post("/v1/traces", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()


def wait_for_answer(check, what: str, timeout: float = 60.0, interval: float = 0.1):
    """``check()``'s first truthy answer, asked every ``interval`` seconds; past ``timeout`` an
    AssertionError naming ``what`` and the last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last answer: {last}")
