"""``service.telemetry.logs.processors``: the relay's own log lines, exported over OTLP too.

Each processor is a logging handler that puts a record on a bounded queue and returns: it never
waits on the network. One thread per processor, with an event loop of its own, takes batches off
the queue and sends them as ``ExportLogsServiceRequest``s, so a slow or absent downstream holds
up neither logging nor the relay's own loop. A full queue drops the record, counts it, and says so
on stderr at most once a minute; those lines, and anything logged by this module, are never
exported (an export that logs would feed itself).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from relay.selfotlp import LOGS, Destination, destination, key_values, sender
from relay.telemetry import InitialFields

log = logging.getLogger("relay.selflogs")

NOTE_INTERVAL = 60.0
REDACTED = "[REDACTED]"
DROPPED_METRIC = "otelcol_self_telemetry_dropped_log_records"

# The log data model's severity numbers and short names, for Python's levels.
SEVERITIES = ((logging.CRITICAL, 21, "FATAL"), (logging.ERROR, 17, "ERROR"), (logging.WARNING, 13, "WARN"),
              (logging.INFO, 9, "INFO"), (logging.DEBUG, 5, "DEBUG"))


def severity(levelno: int) -> tuple[int, str]:
    for floor, number, text in SEVERITIES:
        if levelno >= floor:
            return number, text
    return 1, "TRACE"


class Redactor:
    """Replaces every configured secret wherever it appears in what is exported."""

    def __init__(self, secrets):
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if isinstance(s, str) and len(s) >= 4}, key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def value(self, value):
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, (bool, int, float)) or value is None:
            return value
        return self.text(str(value))


def config_secrets(tree) -> set[str]:
    """Every value a config marks as secret: dataclass fields with repr=False (tokens, keys,
    passwords) and header values, however deep."""
    found: set[str] = set()
    seen: set[int] = set()

    def walk(node, secret: bool, depth: int) -> None:
        if depth > 20 or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, str):
            if secret:
                found.add(node)
                # A header value "Bearer <token>" is secret in both forms.
                found.update(part for part in node.split() if len(part) >= 8)
        elif dataclasses.is_dataclass(node) and not isinstance(node, type):
            for item in dataclasses.fields(node):
                walk(getattr(node, item.name, None), secret or not item.repr or item.name == "headers", depth + 1)
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, secret or str(key).lower() in ("headers", "authorization", "token", "password"),
                     depth + 1)
        elif isinstance(node, (list, tuple, set)):
            for value in node:
                walk(value, secret, depth + 1)

    walk(tree, False, 0)
    return found


@dataclasses.dataclass
class ProcessorSettings(Destination):
    """One processor, resolved: where to send, how, and its batching (seconds, records)."""

    schedule_delay: float = 1.0
    export_timeout: float = 30.0
    max_queue_size: int = 2048
    max_export_batch_size: int = 512


def settings_of(processor) -> ProcessorSettings:
    """From a ``LogRecordProcessor`` config. ``simple`` exports each record as it comes, still
    off the logging call: a record at a time, with no delay."""
    batch = processor.batch
    common = vars(destination((batch or processor.simple).exporter.otlp))
    if batch is None:
        return ProcessorSettings(**common, schedule_delay=0.0, max_export_batch_size=1)
    return ProcessorSettings(**common, schedule_delay=batch.schedule_delay / 1000,
                             export_timeout=batch.export_timeout / 1000, max_queue_size=batch.max_queue_size,
                             max_export_batch_size=batch.max_export_batch_size)


class _Note:
    """At most one stderr line per ``interval`` for a repeated event, with how many were held back."""

    def __init__(self, message: str, interval: float = NOTE_INTERVAL, clock=time.monotonic):
        self.message = message
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._held = 0
        self._lock = threading.Lock()

    def __call__(self, fields: dict) -> None:
        with self._lock:
            now = self.clock()
            if now < self._next:
                self._held += 1
                return
            self._next = now + self.interval
            held, self._held = self._held, 0
        log.warning(self.message, extra={"fields": {**fields, **({"suppressed": held} if held else {})}})


class OtlpLogHandler(logging.Handler):
    """A ``logging.Handler`` that exports the records it is handed over OTLP, in batches."""

    def __init__(self, settings: ProcessorSettings, resource: dict, dropped, redactor: Redactor | None = None,
                 name: str = "0"):
        super().__init__(logging.NOTSET)
        self.settings = settings
        self.resource = resource
        self.redactor = redactor or Redactor(())
        self.label = name
        self._dropped = dropped  # a prometheus Counter with a "reason" label
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._signalled = False
        self._stopping = False
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self.exported = 0
        self._note_full = _Note("self-log queue full, dropping the relay's own log records")
        self._note_failed = _Note("could not export the relay's own log records")

    # -- the logging side: never waits ----------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == log.name or threading.current_thread() is self._thread:
            return  # this module's lines and the export thread's own: never exported
        try:
            item = self._item(record)
        except Exception:  # noqa: BLE001 - a record that cannot be read is logging's error
            self.handleError(record)
            return
        with self._lock:
            if self._stopping or len(self._queue) >= self.settings.max_queue_size:
                full = True
            else:
                full = False
                self._queue.append(item)
                wake = not self._signalled and len(self._queue) >= self.settings.max_export_batch_size
                self._signalled = self._signalled or wake
        if full:
            self._drop(1, "queue_full")
            self._note_full({"processor": self.label, "max_queue_size": self.settings.max_queue_size})
        elif wake and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                pass  # the loop has closed: shutdown drains what is left

    def _item(self, record: logging.LogRecord) -> tuple:
        number, text = severity(record.levelno)
        attributes = dict(getattr(record, "fields", None) or {})
        component = getattr(record, "component", None)
        if component:
            attributes["component"] = component
        if record.exc_info:
            attributes["exception.stacktrace"] = logging.Formatter().formatException(record.exc_info)
        return (int(record.created * 1e9), number, text, record.getMessage(), attributes, record.name)

    def _drop(self, count: int, reason: str) -> None:
        self._dropped.labels(processor=self.label, reason=reason).inc(count)

    # -- the export side: one thread, its own loop ---------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"relay-selflogs-{self.label}", daemon=True)
        self._thread.start()
        self._ready.wait(30.0)
        if self._failed is not None:
            # A certificate file that cannot be read fails the start, as a component's would.
            raise self._failed

    def shutdown(self, timeout: float) -> None:
        """Flush what is queued, giving up after ``timeout`` seconds (what is left is counted)."""
        with self._lock:
            self._stopping = True
            self._deadline = time.monotonic() + max(0.0, timeout)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(max(0.0, timeout) + 1.0)
        with self._lock:
            left, self._queue = len(self._queue), deque()
        if left:
            self._drop(left, "shutdown")
            log.warning("dropped the relay's own log records not exported at shutdown",
                        extra={"fields": {"processor": self.label, "log_records": left}})

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        try:
            self._wake = asyncio.Event()
            out = sender(LOGS, self.settings, log)
            await out.open()
            self._loop = asyncio.get_running_loop()
        except Exception as error:  # noqa: BLE001 - handed to start(), which raises it
            self._failed = error
            return
        finally:
            self._ready.set()
        # A record at a time (simple) wakes the loop itself; a batch waits at most its delay.
        delay = None if self.settings.max_export_batch_size == 1 else (self.settings.schedule_delay or 0.05)
        try:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
                with self._lock:
                    self._signalled = False
                    stopping = self._stopping
                # A full batch goes at once; a partial one when the delay has passed or at shutdown.
                while batch := self._take():
                    timeout = self.settings.export_timeout
                    if stopping:
                        timeout = min(timeout, self._deadline - time.monotonic())
                    if timeout <= 0:
                        self._requeue(batch)
                        break
                    await self._send(out, batch, timeout)
                    with self._lock:
                        more = len(self._queue) >= self.settings.max_export_batch_size
                    if not more and not stopping:
                        break
                if stopping:
                    return
        finally:
            await out.close()

    def _take(self) -> list:
        with self._lock:
            count = min(len(self._queue), self.settings.max_export_batch_size)
            return [self._queue.popleft() for _ in range(count)]

    def _requeue(self, batch: list) -> None:
        with self._lock:
            self._queue.extendleft(reversed(batch))

    async def _send(self, out, batch: list, timeout: float) -> None:
        body = self.request(batch).SerializeToString()
        try:
            await asyncio.wait_for(out.send(body, min(timeout, self.settings.timeout)), timeout)
            self.exported += len(batch)
        except Exception as error:  # noqa: BLE001 - any failure to send is counted, never raised into logging
            self._drop(len(batch), "export_failed")
            self._note_failed({"processor": self.label, "endpoint": self.settings.url,
                               "error": type(error).__name__, "log_records": len(batch)})

    def request(self, batch: list) -> logs_service_pb2.ExportLogsServiceRequest:
        scopes: dict[str, list] = {}
        for created, number, text, message, attributes, logger in batch:
            scopes.setdefault(logger, []).append(logs_pb2.LogRecord(
                time_unix_nano=created, observed_time_unix_nano=created, severity_number=number,
                severity_text=text, body=common_pb2.AnyValue(string_value=self.redactor.text(message)),
                attributes=key_values(self.redactor.value(attributes))))
        return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
            resource={"attributes": key_values(self.resource)},
            scope_logs=[logs_pb2.ScopeLogs(scope=common_pb2.InstrumentationScope(name=name), log_records=records)
                        for name, records in scopes.items()])])


class SelfLogs:
    """Every configured processor, as handlers on the relay's logger, started and stopped together."""

    def __init__(self, handlers: list[OtlpLogHandler], logger_name: str = "relay"):
        self.handlers = handlers
        self.logger = logging.getLogger(logger_name)

    def start(self) -> None:
        for handler in self.handlers:
            handler.start()
            self.logger.addHandler(handler)

    def shutdown(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for handler in self.handlers:
            self.logger.removeHandler(handler)
        for handler in self.handlers:
            handler.shutdown(max(0.0, deadline - time.monotonic()))


def self_logs(processors, resource: dict, metrics, secrets=(), fields: dict | None = None) -> SelfLogs:
    """The handlers for ``service.telemetry.logs.processors``; ``metrics`` is the relay's
    ``SelfMetrics`` (the drop counter lives there), ``secrets`` what must never be exported."""
    dropped = metrics.counter(DROPPED_METRIC, "Number of the relay's own log records not exported over OTLP",
                              ["processor", "reason"])
    redactor = Redactor(secrets)
    handlers = []
    for index, processor in enumerate(processors):
        settings = settings_of(processor)
        redactor_here = Redactor([*redactor.secrets, *settings.headers.values(),
                                  *(p for v in settings.headers.values() for p in v.split() if len(p) >= 8)])
        handler = OtlpLogHandler(settings, resource, dropped, redactor_here, name=str(index))
        if fields:
            # initial_fields go on exported records as on the stderr lines.
            handler.addFilter(InitialFields(fields))
        handlers.append(handler)
    return SelfLogs(handlers)
