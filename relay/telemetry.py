"""The relay's own telemetry: JSON-line logs and ``otelcol_*`` self-metrics.

Metrics live on an injected ``CollectorRegistry`` (never the global one), so
every test and every relay instance sees only its own counters. Names follow
the collector's internal metrics; the component id is a label.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
import uuid

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from relay.httpserver import HttpListener
from relay.prometheus.naming import label_name
from relay.signals import Signal

# zap's levels; the three above error all mean "only what makes the process stop", which the
# relay logs at critical.
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
          "dpanic": logging.CRITICAL, "panic": logging.CRITICAL, "fatal": logging.CRITICAL}


# A message or traceback may quote what a client sent (a malformed request line, say):
# past this many characters it is cut, so no client can write megabytes into the log.
MAX_TEXT = 2048


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else f"{text[:MAX_TEXT]}... ({len(text) - MAX_TEXT} more characters)"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, msg, component, and any ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "msg": _cut(record.getMessage()),
        }
        component = getattr(record, "component", None)
        if component:
            entry["component"] = component
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["error"] = _cut(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class _OncePerSecond(logging.Filter):
    """Lets one record per second through (a flood of malformed connections is one line a
    second, with how many were held back)."""

    def __init__(self, clock=time.monotonic):
        super().__init__()
        self.clock = clock
        self._next = 0.0
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        _as_client_error(record)
        now = self.clock()
        if now < self._next:
            self._held += 1
            return False
        self._next = now + 1.0
        if self._held:
            record.fields = {**(getattr(record, "fields", None) or {}), "suppressed": self._held}
            self._held = 0
        return True


class Sampler:
    """zap's sampler: per key, in a window of ``tick`` seconds opened by the first line after the
    last window ended, the first ``initial`` pass, then every ``thereafter``-th (0: none more)."""

    def __init__(self, initial: int, thereafter: int, clock=time.monotonic, tick: float = 1.0):
        self.initial = initial
        self.thereafter = thereafter
        self.clock = clock
        self.tick = tick
        self._counts: dict[object, tuple[float, int]] = {}  # key -> (window end, count in it)

    def allow(self, key) -> bool:
        now = self.clock()
        ends, count = self._counts.get(key, (now, 0))
        if now < ends:
            count += 1
        else:
            ends, count = now + self.tick, 1
        self._counts[key] = (ends, count)
        if count <= self.initial:
            return True
        return self.thereafter > 0 and (count - self.initial) % self.thereafter == 0


class SampledLogs(logging.Filter):
    """``service.telemetry.logs.sampling``: the collector samples its own lines by level and
    message, so a line repeated in a burst is written ``initial`` times, then every ``thereafter``-th."""

    def __init__(self, sampler: Sampler):
        super().__init__()
        self.sampler = sampler

    def filter(self, record: logging.LogRecord) -> bool:
        # The message as written, not as formatted: one key per call site, as zap keys by message.
        return self.sampler.allow((record.levelno, str(record.msg)))


class InitialFields(logging.Filter):
    """``service.telemetry.logs.initial_fields``: keys added to every line."""

    def __init__(self, fields: dict):
        super().__init__()
        self.fields = dict(fields)

    def filter(self, record: logging.LogRecord) -> bool:
        record.fields = {**self.fields, **(getattr(record, "fields", None) or {})}
        return True


def install_filters(filters) -> list:
    """Adds ``filters`` to every handler of the relay's loggers; returns what to remove later."""
    installed = []
    for handler in logging.getLogger("relay").handlers:
        for item in filters:
            handler.addFilter(item)
            installed.append((handler, item))
    return installed


def remove_filters(installed: list) -> None:
    for handler, item in installed:
        handler.removeFilter(item)


def _as_client_error(record: logging.LogRecord) -> None:
    """aiohttp logs a request it cannot parse as an error with a traceback; it is the client's
    mistake (answered 400), so it becomes a warning naming the problem."""
    from aiohttp.http_exceptions import HttpProcessingError

    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, HttpProcessingError):
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args, record.exc_info, record.exc_text = "malformed HTTP request refused", (), None, None
        record.fields = {"error": _cut(str(error))}


def setup_logging(level: str = "info", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("relay")
    root.handlers[:] = [handler]
    level = level.lower()
    root.setLevel(LEVELS[level])
    root.propagate = False
    # aiohttp reports malformed HTTP itself, and asyncio a failed accept (out of file
    # descriptors, once per attempt, with a traceback); their lines go out as JSON too,
    # at most one a second each.
    for name in ("aiohttp", "asyncio"):
        library = logging.getLogger(name)
        quiet = logging.StreamHandler(stream or sys.stderr)
        quiet.setFormatter(JsonFormatter())
        quiet.addFilter(_OncePerSecond())
        library.handlers[:] = [quiet]
        library.setLevel(max(LEVELS[level], logging.WARNING))
        library.propagate = False


class ComponentLogger(logging.LoggerAdapter):
    """Stamps every line with the component id; extra keyword ``fields`` adds keys."""

    def process(self, msg, kwargs):
        extra = {"component": self.extra["component"], "fields": kwargs.pop("fields", None)}
        kwargs["extra"] = extra
        return msg, kwargs


class Throttled:
    """At most one line per ``interval`` for an event that may repeat per request (a full
    queue under load); the next line carries how many were held back."""

    def __init__(self, log: logging.LoggerAdapter, interval: float, clock=time.monotonic):
        self.log = log
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._held = 0

    def warning(self, message: str, fields: dict) -> None:
        now = self.clock()
        if now < self._next:
            self._held += 1
            return
        self._next = now + self.interval
        if self._held:
            fields = {**fields, "suppressed": self._held}
            self._held = 0
        self.log.warning(message, fields=fields)


def component_logger(component_id) -> ComponentLogger:
    return ComponentLogger(logging.getLogger("relay.component"), {"component": str(component_id)})


class _Uptime:
    def __init__(self, started: float):
        self.started = started

    def describe(self):
        return []

    def collect(self):
        yield CounterMetricFamily("otelcol_process_uptime", "Uptime of the relay process in seconds",
                                  value=time.monotonic() - self.started, unit="seconds")


class SelfMetrics:
    """Counters every component reports into, created once per registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.receiver_accepted = {}
        self.receiver_refused = {}
        self.exporter_sent = {}
        self.exporter_failed = {}
        self.exporter_rejected = {}
        for signal in Signal:
            item = signal.item
            self.receiver_accepted[signal] = Counter(
                f"otelcol_receiver_accepted_{item}", f"Number of {item} accepted and passed on by a receiver",
                ["receiver", "transport"], registry=reg)
            self.receiver_refused[signal] = Counter(
                f"otelcol_receiver_refused_{item}", f"Number of {item} a receiver refused to its client",
                ["receiver", "transport", "reason"], registry=reg)
            self.exporter_sent[signal] = Counter(
                f"otelcol_exporter_sent_{item}", f"Number of {item} an exporter delivered downstream",
                ["exporter"], registry=reg)
            self.exporter_failed[signal] = Counter(
                f"otelcol_exporter_send_failed_{item}", f"Number of {item} an exporter failed to deliver",
                ["exporter", "retryable"], registry=reg)
            self.exporter_rejected[signal] = Counter(
                f"otelcol_exporter_partially_rejected_{item}",
                f"Number of {item} a downstream rejected in a partial_success answer",
                ["exporter"], registry=reg)
        # Per request, so that payloads too broken to count items in are counted too.
        self.receiver_refused_requests = Counter(
            "otelcol_receiver_refused_requests", "Number of export requests a receiver refused, by status",
            ["receiver", "transport", "signal", "status"], registry=reg)
        ProcessCollector(namespace="otelcol", registry=reg)
        reg.register(_Uptime(time.monotonic()))
        self._extra: dict[str, Counter | Gauge] = {}

    def counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        """A component's own counter, created once per registry and shared by every
        instance of that component (a registry refuses a second metric of one name)."""
        existing = self._extra.get(name)
        if existing is None:
            existing = self._extra[name] = Counter(name, documentation, labels, registry=self.registry)
        return existing

    def gauge(self, name: str, documentation: str, labels: list[str]) -> Gauge:
        existing = self._extra.get(name)
        if existing is None:
            existing = self._extra[name] = Gauge(name, documentation, labels, registry=self.registry)
        return existing


SERVICE_NAME = "genops-relay"


def resource_attributes(configured: dict, version: str = "") -> dict[str, str]:
    """The relay's own resource: the collector's three defaults, then ``service.telemetry.resource``
    (a null value removes a default)."""
    defaults = {"service.name": SERVICE_NAME, "service.instance.id": str(uuid.uuid4())}
    if version:
        defaults["service.version"] = version
    merged = {**defaults, **configured}
    return {key: _attribute_text(value) for key, value in merged.items() if value is not None}


def _attribute_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class TargetInfo:
    """``target_info``: the resource of the relay's own metrics, as an OpenTelemetry Prometheus
    exporter serves it (one gauge of value 1, the attributes as labels)."""

    def __init__(self, attributes: dict[str, str]):
        self.labels = {}
        for key, value in attributes.items():
            name = label_name(key)
            if name:
                # Two keys that sanitize alike are joined with ";", as the collector does.
                self.labels[name] = f"{self.labels[name]};{value}" if name in self.labels else value

    def describe(self):
        return []

    def collect(self):
        family = GaugeMetricFamily("target_info", "Target metadata", labels=list(self.labels))
        family.add_metric(list(self.labels.values()), 1)
        yield family


def metrics_app(registry: CollectorRegistry, routes=()) -> web.Application:
    """A /metrics endpoint that negotiates text or OpenMetrics from the Accept header, plus the
    ``routes`` (method, path, handler) components serve on this port (the cost report)."""

    async def handle(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


def metrics_listener(registry: CollectorRegistry, address: str, routes=()) -> HttpListener:
    return HttpListener(metrics_app(registry, routes), address)
