"""``service.telemetry``: the relay's own logs and metrics, in the collector's keys.

Levels are read in any case, as the collector reads them. Settings for OpenTelemetry SDK
parts the relay does not run are accepted and noted as advisory. Its metrics are served on
/metrics (pull readers) and pushed over OTLP (periodic readers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from relay.config.decode import Duration, advisory, note_advisory
from relay.errors import Problem
from relay.net.endpoints import endpoint_problem

# The collector reads levels in any case ("INFO", "Debug"): zap for logs, configtelemetry for metrics.
LOG_LEVELS = ("debug", "info", "warn", "error", "dpanic", "panic", "fatal")
METRICS_LEVELS = ("none", "basic", "normal", "detailed")
_NO_OTLP_HERE = "the relay's own telemetry is not exported over OTLP (its logs go to stderr, its metrics to /metrics)"


def _level_problem(value: str, written: str, choices: tuple[str, ...]) -> list[Problem]:
    if value.lower() in choices:
        return []
    return [Problem(("level",), f'"{written}" is not one of: {", ".join(choices)}')]


@dataclass
class LogsSamplingConfig:
    """The collector's defaults for ``logs.sampling`` (zap's sampler, by level and message)."""

    enabled: bool = True
    tick: Duration = Duration(10.0)
    initial: int = 10
    thereafter: int = 100

    def validate(self) -> list[Problem]:
        problems = [Problem((name,), "must not be negative") for name in ("initial", "thereafter")
                    if getattr(self, name) < 0]
        if self.enabled and self.tick <= 0:
            problems.append(Problem(("tick",), "must be positive"))
        return problems


_ZAP_ONLY = "the relay writes JSON lines with no caller or stack trace fields"

# OpenTelemetry's declarative config: where an OTLP exporter sends when no endpoint is given
# (OTLP/HTTP adds the signal's path, /v1/logs or /v1/metrics, to an endpoint without one).
DEFAULT_OTLP_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
OTLP_PROTOCOLS = ("grpc", "http/protobuf")


@dataclass
class OtlpExporter:
    """``exporter: {otlp: ...}`` of a log record processor or a periodic metric reader, in the
    declarative schema's keys and with its defaults (times in milliseconds)."""

    # The OTLP exporter specification's default protocol.
    protocol: str = "http/protobuf"
    endpoint: str = ""
    # For an endpoint without a scheme, whether the connection is plain (the schema's rule).
    insecure: bool | None = None
    # The schema's list form ``[{name, value}]``, or the collector's older map form.
    # repr=False: header values are credentials more often than not.
    headers: Any = field(default=None, repr=False)
    headers_list: str = field(default="", repr=False)
    compression: str = ""
    timeout: int = 10000
    certificate: str = ""
    client_key: str = ""
    client_certificate: str = ""
    # Whether OTLP/HTTP, like gRPC, also takes an endpoint without a scheme (``insecure`` then
    # picks http or https) where ``insecure`` is not given.
    bare_http_endpoint: ClassVar[bool] = False

    def validate(self) -> list[Problem]:
        problems = []
        if self.protocol not in OTLP_PROTOCOLS:
            problems.append(Problem(("protocol",), f'"{self.protocol}" is not one of: {", ".join(OTLP_PROTOCOLS)}'))
        else:
            problems.extend(self._endpoint_problems())
        if self.compression not in ("", "none", "gzip"):
            problems.append(Problem(("compression",), f'"{self.compression}" is not one of: none, gzip'))
        if self.timeout <= 0:
            problems.append(Problem(("timeout",), "must be positive (milliseconds)"))
        if bool(self.client_key) != bool(self.client_certificate):
            problems.append(Problem(("client_key" if self.client_certificate else "client_certificate",),
                                    "a client certificate needs its key, and a key its certificate"))
        for index, item in enumerate(self.headers_list.split(",") if self.headers_list.strip() else ()):
            if "=" not in item or not item.split("=", 1)[0].strip():
                # What is wrong, never the value: it is most likely a credential.
                problems.append(Problem(("headers_list",), f"item {index} is not name=value"))
        problems.extend(Problem(("headers",) + path, message) for path, message in _header_problems(self.headers))
        return problems

    def _endpoint_problems(self) -> list[Problem]:
        from urllib.parse import urlsplit

        # gRPC also takes host:port, its security then set by ``insecure``; OTLP/HTTP only where
        # ``insecure`` says which scheme it is.
        bare = "://" not in self.url and (self.protocol == "grpc" or self.insecure is not None
                                          or self.bare_http_endpoint)
        url = urlsplit(f"http://{self.url}" if bare else self.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            return [Problem(("endpoint",), "must be a URL such as http://host:4317 (grpc) or "
                                           "http://host:4318 (http/protobuf)")]
        try:
            url.port  # noqa: B018 - a port out of range raises here
        except ValueError:
            return [Problem(("endpoint",), "the port must be a number (0-65535)")]
        return []

    @property
    def url(self) -> str:
        return self.endpoint or DEFAULT_OTLP_ENDPOINTS.get(self.protocol, "")

    def header_map(self) -> dict[str, str]:
        """``headers`` over ``headers_list``, as the declarative schema has it."""
        merged = {}
        for item in self.headers_list.split(",") if self.headers_list.strip() else ():
            name, _, value = item.partition("=")
            merged[name.strip()] = value.strip()
        if isinstance(self.headers, dict):
            merged.update((str(k), str(v)) for k, v in self.headers.items())
        else:
            merged.update((str(item["name"]), str(item["value"])) for item in self.headers or ())
        return merged


def _header_problems(headers: Any) -> list[tuple[tuple[str, ...], str]]:
    if headers is None or isinstance(headers, dict):
        return []
    if not isinstance(headers, list):
        return [((), "expected a list of {name: ..., value: ...}")]
    return [((str(index),), "expected {name: ..., value: ...}") for index, item in enumerate(headers)
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "value" not in item]


@dataclass
class LogRecordExporter:
    otlp: OtlpExporter | None = None

    def validate(self) -> list[Problem]:
        return [] if self.otlp is not None else [Problem(("otlp",), "required key is missing")]


@dataclass
class BatchLogProcessor:
    exporter: LogRecordExporter
    # OpenTelemetry's batch log record processor defaults (milliseconds, records).
    schedule_delay: int = 1000
    export_timeout: int = 30000
    max_queue_size: int = 2048
    max_export_batch_size: int = 512

    def validate(self) -> list[Problem]:
        problems = [Problem((name,), "must be positive") for name in
                    ("export_timeout", "max_queue_size", "max_export_batch_size") if getattr(self, name) <= 0]
        if self.schedule_delay < 0:
            problems.append(Problem(("schedule_delay",), "must not be negative"))
        if 0 < self.max_queue_size < self.max_export_batch_size:
            problems.append(Problem(("max_export_batch_size",), "must not be greater than max_queue_size"))
        return problems


@dataclass
class SimpleLogProcessor:
    exporter: LogRecordExporter

    def validate(self) -> list[Problem]:
        return []


@dataclass
class LogRecordProcessor:
    batch: BatchLogProcessor | None = None
    simple: SimpleLogProcessor | None = None

    def validate(self) -> list[Problem]:
        if (self.batch is None) == (self.simple is None):
            return [Problem((), "give exactly one of batch or simple")]
        return []


@dataclass
class LogsConfig:
    level: str = "info"
    encoding: Literal["json", "console"] = "json"
    processors: list[LogRecordProcessor] = field(default_factory=list)
    # Unset: no sampling (the collector samples by default; the relay keeps every line unless asked).
    sampling: LogsSamplingConfig | None = None
    initial_fields: dict[str, Any] = field(default_factory=dict)
    development: bool = advisory(_ZAP_ONLY, default=False)
    disable_caller: bool = advisory(_ZAP_ONLY, default=False)
    disable_stacktrace: bool = advisory(_ZAP_ONLY, default=False)

    def __post_init__(self) -> None:
        self._written, self.level = self.level, self.level.lower()

    def validate(self) -> list[Problem]:
        if self.encoding == "console":
            note_advisory(("encoding",), "the relay's logs are JSON lines")
        return _level_problem(self.level, self._written, LOG_LEVELS)


@dataclass
class PrometheusPullExporter:
    """``readers: [{pull: {exporter: {prometheus: ...}}}]``: where /metrics is served."""

    host: str = "localhost"
    port: int = 9464
    without_units: bool = advisory("self-metric names are the collector's, with their units", default=False)
    without_type_suffix: bool = advisory("self-metric names are the collector's, with their suffixes",
                                         default=False)
    without_scope_info: bool = advisory("self-metrics carry no scope labels", default=False)
    without_target_info: bool = False
    with_resource_constant_labels: Any = advisory("resource attributes are served in target_info only",
                                                  default=None)
    translation_strategy: str = advisory("self-metric names are the collector's", default="")

    def validate(self) -> list[Problem]:
        if not 0 <= self.port <= 65535:
            return [Problem(("port",), "must be a port number (0-65535)")]
        return []

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


@dataclass
class PullExporter:
    prometheus: PrometheusPullExporter | None = None

    def validate(self) -> list[Problem]:
        return [] if self.prometheus is not None else [Problem(("prometheus",), "required key is missing")]


@dataclass
class PullReader:
    exporter: PullExporter

    def validate(self) -> list[Problem]:
        return []


TEMPORALITIES = ("cumulative", "delta", "low_memory")


@dataclass
class OtlpPushExporter(OtlpExporter):
    """``periodic.exporter.otlp``: the OTLP exporter, with what only a metric reader reads."""

    # The periodic reader has always taken host:port for OTLP/HTTP (https unless insecure):
    # kept, so that configs it loaded still load.
    bare_http_endpoint: ClassVar[bool] = True
    temporality_preference: str = "cumulative"
    default_histogram_aggregation: str = advisory("histograms are pushed with the buckets they are counted in",
                                                  default="")

    def validate(self) -> list[Problem]:
        problems = super().validate()
        if self.temporality_preference not in TEMPORALITIES:
            problems.append(Problem(("temporality_preference",),
                                    f'"{self.temporality_preference}" is not one of: {", ".join(TEMPORALITIES)}'))
        elif self.temporality_preference != "cumulative":
            note_advisory(("temporality_preference",), "self-metrics are pushed cumulative")
        return problems


@dataclass
class PushExporter:
    otlp: OtlpPushExporter | None = None

    def validate(self) -> list[Problem]:
        return [] if self.otlp is not None else [Problem(("otlp",), "required key is missing")]


@dataclass
class PeriodicReader:
    """``readers: [{periodic: ...}]``: self-metrics pushed over OTLP every ``interval``."""

    exporter: PushExporter
    # OpenTelemetry's declarative-config defaults, in milliseconds.
    interval: int = 60000
    timeout: int = 30000

    def validate(self) -> list[Problem]:
        return [Problem((name,), "must be positive (milliseconds)") for name in ("interval", "timeout")
                if getattr(self, name) <= 0]


@dataclass
class MetricReader:
    pull: PullReader | None = None
    periodic: PeriodicReader | None = None

    def validate(self) -> list[Problem]:
        if (self.pull is None) == (self.periodic is None):
            return [Problem((), "give exactly one of pull or periodic")]
        return []


DEFAULT_METRICS_ADDRESS = "0.0.0.0:8888"


@dataclass
class MetricsConfig:
    # Where /metrics is served: the collector's own default, on all interfaces, unless
    # ``readers`` says. An ``address`` given with readers is served too, as the collector
    # turned its deprecated address into one more pull reader. "none" level turns all off.
    address: str | None = None
    level: str = "normal"
    readers: list[MetricReader] | None = None
    views: list[Any] = advisory("self-metrics are served as they are; views do not change them",
                                default_factory=list)

    def __post_init__(self) -> None:
        self._written, self.level = self.level, self.level.lower()
        self._address = self.address
        # ``address`` reads as the first place served (what ``validate`` prints).
        self.address = next(iter(self.listen_addresses()), self._address or DEFAULT_METRICS_ADDRESS)

    def listen_addresses(self) -> list[str]:
        """Every address /metrics is served on."""
        if self.readers is None:
            return [self._address or DEFAULT_METRICS_ADDRESS]
        pulls = [reader.pull.exporter.prometheus.address for reader in self.readers
                 if reader is not None and reader.pull is not None and reader.pull.exporter.prometheus is not None]
        return pulls + ([self._address] if self._address else [])

    def validate(self) -> list[Problem]:
        problems = _level_problem(self.level, self._written, METRICS_LEVELS)
        if self.readers == [] and self.level != "none":
            # The collector's own rule: metrics at a level, served nowhere, is a mistake.
            problems.append(Problem(("readers",), 'at least one reader is needed unless level is "none"'))
        if self._address and (message := endpoint_problem(self._address)):
            problems.append(Problem(("address",), message))
        return problems


@dataclass
class TracesConfig:
    level: str = advisory("the relay records no spans of its own", default="basic")
    propagators: list[str] = advisory("the relay records no spans of its own", default_factory=list)
    processors: list[Any] = advisory("the relay records no spans of its own", default_factory=list)
    sampler: Any = advisory("the relay records no spans of its own", default=None)
    limits: Any = advisory("the relay records no spans of its own", default=None)

    def validate(self) -> list[Problem]:
        return _level_problem(self.level, self.level, METRICS_LEVELS)


@dataclass
class TelemetryConfig:
    logs: LogsConfig = field(default_factory=LogsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    traces: TracesConfig = field(default_factory=TracesConfig)
    # Attributes of the relay's own telemetry resource, served as target_info on /metrics.
    # Either the legacy map (a null value removes a default attribute) or, as the collector
    # also reads it, the declarative form ``{attributes: [{name, value}], schema_url: ...}``.
    resource: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> list[Problem]:
        if isinstance(self.resource.get("attributes"), list):
            return self._declarative_problems()
        return [Problem(("resource", key), "must be a string, number, boolean or null")
                for key, value in self.resource.items()
                if value is not None and not isinstance(value, (str, int, float, bool))]

    def _declarative_problems(self) -> list[Problem]:
        problems = []
        for key in self.resource:
            if key not in ("attributes", "schema_url", "detection/development"):
                problems.append(Problem(("resource", key), "unknown key (valid keys: attributes, "
                                                           "detection/development, schema_url)"))
            elif key != "attributes":
                note_advisory(("resource", key), "the resource is the configured attributes and the defaults")
        for index, item in enumerate(self.resource["attributes"]):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "value" not in item:
                problems.append(Problem(("resource", "attributes", str(index)), "expected {name: ..., value: ...}"))
        return problems

    def resource_attributes(self) -> dict[str, Any]:
        """The configured attributes by name (None: remove the default)."""
        if isinstance(self.resource.get("attributes"), list):
            return {item["name"]: item["value"] for item in self.resource["attributes"]}
        return dict(self.resource)
