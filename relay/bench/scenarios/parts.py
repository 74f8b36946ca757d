"""What the reliability scenarios are built from: a relay process, a counting sink, clients.

Everything listens on 127.0.0.1. Every wait ends at a deadline; every loop
is bounded in count.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent import futures
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay.bench import free_port, wait_healthy
from relay.signals import Signal


def wait_until(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


class RelayRun:
    """The relay as a child process on a config text; it can be killed and started again."""

    def __init__(self, config: str, workdir: Path, health_port: int):
        self.config_path = Path(workdir, "relay.yaml")
        self.config_path.write_text(config)
        self.log_path = Path(workdir, "relay.log")
        self.health_port = health_port
        self.process: subprocess.Popen | None = None
        self.peak_rss = 0
        self._sampler: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> "RelayRun":
        log = open(self.log_path, "a")
        self.process = subprocess.Popen([sys.executable, "-m", "relay", "run", "--config", str(self.config_path)],
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_healthy(f"http://127.0.0.1:{self.health_port}/", self.process, timeout)
        except RuntimeError as error:
            raise RuntimeError(f"{error}:\n{self.log_tail()}") from None
        self._sampler = threading.Thread(target=self._sample_rss, args=(self.process,), daemon=True)
        self._sampler.start()
        return self

    def rss(self) -> int:
        """The relay's resident set size in bytes (0 once it is gone)."""
        try:
            pages = int(Path(f"/proc/{self.process.pid}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return 0
        return pages * os.sysconf("SC_PAGE_SIZE")

    def _sample_rss(self, process: subprocess.Popen) -> None:
        for _ in range(200_000):  # 50 ms apart: bounded at almost three hours
            if process.poll() is not None or process is not self.process:
                return
            self.peak_rss = max(self.peak_rss, self.rss())
            time.sleep(0.05)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return -9

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text()[-size:]
        except OSError:
            return ""


class CountingSink:
    """A downstream OTLP/gRPC server that counts every span id it receives.

    ``delay`` seconds per call, with ``workers`` threads, makes a slow backend.
    It can be stopped and started again on the same port (an outage).
    """

    def __init__(self, port: int = 0, delay: float = 0.0, workers: int = 8):
        self.port = port or free_port()
        self.delay = delay
        self.workers = workers
        self.seen: Counter = Counter()
        self.requests = 0
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "CountingSink":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.workers),
                             options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        handler = grpc.unary_unary_rpc_method_handler(self._export)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            Signal.TRACES.service, {"Export": handler}),))
        server.add_insecure_port(self.endpoint)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0).wait(5)
            self._server = None

    def _export(self, data: bytes, context) -> bytes:
        if self.delay:
            time.sleep(self.delay)
        request = ExportTraceServiceRequest.FromString(data)
        ids = [int.from_bytes(span.span_id, "big") for rs in request.resource_spans
               for ss in rs.scope_spans for span in ss.spans]
        with self._lock:
            self.seen.update(ids)
            self.requests += 1
        return b""

    def unique(self) -> set[int]:
        with self._lock:
            return set(self.seen)

    def duplicates(self) -> int:
        with self._lock:
            return sum(count - 1 for count in self.seen.values())


class SdkClient:
    """The OpenTelemetry SDK with a batch span processor and the OTLP/gRPC exporter.

    The exporter is subclassed only to learn, per export call, which spans the
    relay acknowledged (SUCCESS) and which the SDK gave up on.
    """

    def __init__(self, port: int, total: int, export_timeout: float = 10.0):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

        client = self

        class Recording(OTLPSpanExporter):
            def export(self, spans):
                result = super().export(spans)
                ids = [span.context.span_id for span in spans]
                with client._lock:
                    (client.acked if result == SpanExportResult.SUCCESS else client.failed).update(ids)
                return result

        self.acked: set[int] = set()
        self.failed: set[int] = set()
        self.sent: list[int] = []
        self._lock = threading.Lock()
        exporter = Recording(endpoint=f"127.0.0.1:{port}", insecure=True, timeout=export_timeout)
        self.provider = TracerProvider(resource=Resource.create({"service.name": "reliability-scenario",
                                                                 "genops.team": "platform"}))
        # A queue that holds everything: spans the SDK itself drops would muddy what the relay lost.
        self.provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=total + 1,
                                                            max_export_batch_size=512, schedule_delay_millis=100))
        self.tracer = self.provider.get_tracer("genops.scenario")

    def produce(self, total: int, rate: float, on_progress=None) -> None:
        """``total`` LLM-shaped spans at a steady ``rate`` per second."""
        started = time.monotonic()
        for n in range(total):
            with self.tracer.start_as_current_span("chat openai/gpt-4o") as span:
                span.set_attributes({"gen_ai.request.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 1200,
                                     "gen_ai.usage.output_tokens": 350, "genops.project": "assistant"})
                self.sent.append(span.get_span_context().span_id)
            if n % 250 == 249:
                if on_progress is not None:
                    on_progress(n + 1)
                ahead = started + (n + 1) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)

    def finish(self, timeout_s: float = 60.0) -> None:
        self.provider.force_flush(int(timeout_s * 1000))
        self.provider.shutdown()


def llm_request(spans: int, attribute_bytes: int, rng: random.Random) -> tuple[bytes, list[int]]:
    """A raw request of ``spans`` spans with a prompt-sized attribute each, and its span ids."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    ids = []
    for _ in range(spans):
        span = scope.spans.add()
        span.trace_id = rng.randbytes(16)
        span.span_id = rng.randbytes(8)
        span.name = "chat openai/gpt-4o"
        span.start_time_unix_nano = 1_700_000_000_000_000_000
        span.end_time_unix_nano = 1_700_000_001_000_000_000
        attribute = span.attributes.add()
        attribute.key = "gen_ai.prompt"
        attribute.value.string_value = rng.randbytes(attribute_bytes // 2).hex()
        ids.append(int.from_bytes(span.span_id, "big"))
    return request.SerializeToString(), ids


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="genops-scenario-")
