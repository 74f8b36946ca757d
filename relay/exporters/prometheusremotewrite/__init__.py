"""The ``prometheusremotewrite`` exporter: Prometheus remote write 1.0 over HTTP.

Each OTLP request becomes one or more snappy-compressed ``prometheus.WriteRequest``
POSTs (split at ``max_batch_size_bytes``), behind the sending queue, retry and timeout
every push exporter has. Series carry the names and labels the ``prometheus``
exporter exposes (see ``convert``), so Prometheus, Mimir, Thanos Receive or
VictoriaMetrics hold what a scrape of the relay would have given: any ``namespace``
goes, what a metric name cannot hold becoming "_" as in the ``prometheus`` exporter.
``auth: {authenticator: <id>}`` adds an authenticator extension's header
(``bearertokenauth``, or ``basicauth`` with ``client_auth``) to every POST, read per
POST so that a rotated token is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from relay.component import Settings
from relay.errors import Problem
from relay.exporters.helper.config import HelperSettings, QueueConfig
from relay.exporters.helper.exporter import Exporter
from relay.net.auth import CLIENT, AuthConfig, authenticator_for
from relay.net.http_client import header_problems
from relay.net.tls import TLSClientConfig
from relay.prometheus.naming import VALID_LABEL_NAME
from relay.prometheus.settings import ResourceToTelemetryConfig
from relay.signals import Signal

TYPE = "prometheusremotewrite"
SIGNALS = (Signal.METRICS,)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"endpoint": "http://127.0.0.1:9090/api/v1/write"}

# The headers that make a request remote write; configured headers cannot replace them.
PROTOCOL_HEADERS = frozenset({"content-encoding", "content-type", "x-prometheus-remote-write-version"})


@dataclass
class TargetInfoConfig:
    enabled: bool = True

    def validate(self) -> list[Problem]:
        return []


@dataclass
class OrderedQueueConfig(QueueConfig):
    # One consumer keeps each series' samples in time order across requests, as the spec
    # requires: Prometheus and Mimir answer 400 to an out-of-order sample, refusing the
    # whole WriteRequest, and two requests in flight at once (or a retry overtaken by a
    # later request) can arrive in either order. More consumers trade that for throughput.
    num_consumers: int = 1


@dataclass
class Config(HelperSettings):
    endpoint: str
    headers: dict[str, str] = field(default_factory=dict)
    namespace: str = ""
    external_labels: dict[str, str] = field(default_factory=dict)
    resource_to_telemetry_conversion: ResourceToTelemetryConfig = field(default_factory=ResourceToTelemetryConfig)
    add_metric_suffixes: bool = True
    # One target_info series per resource with job and instance, as the prometheus exporter exposes.
    target_info: TargetInfoConfig = field(default_factory=TargetInfoConfig)
    # Type, help and unit of each family, in the WriteRequest's metadata (off in the collector too).
    send_metadata: bool = False
    # Uncompressed size of one WriteRequest; a request's series are split over several.
    max_batch_size_bytes: int = 3_000_000
    tls: TLSClientConfig = field(default_factory=TLSClientConfig)
    auth: AuthConfig | None = None
    sending_queue: OrderedQueueConfig = field(default_factory=OrderedQueueConfig, kw_only=True)

    def extension_references(self) -> list[tuple[tuple[str, ...], str, str]]:
        refs = super().extension_references()
        return refs + [self.auth.reference()] if self.auth is not None else refs

    def validate(self) -> list[Problem]:
        problems = []
        if message := url_problem(self.endpoint):
            problems.append(Problem(("endpoint",), message))
        header_issues = header_problems(self.headers, credentials_in_url=False)
        for key in self.headers:  # in the order written
            problems += [p for p in header_issues if p.path == ("headers", key)]
            if key.lower() in PROTOCOL_HEADERS:
                problems.append(Problem(("headers", key), "is set by the remote write protocol and cannot be changed"))
        # Any namespace goes, as in the collector: what a name cannot hold becomes "_" (naming).
        for key, value in self.external_labels.items():
            if not VALID_LABEL_NAME.match(key) or key.startswith("__"):
                problems.append(Problem(("external_labels", key), "is not a valid Prometheus label name "
                                                                   "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"))
            elif not value:
                problems.append(Problem(("external_labels", key), "must not be empty (Prometheus drops "
                                                                   "empty labels)"))
        if self.max_batch_size_bytes < 1:
            problems.append(Problem(("max_batch_size_bytes",), "must be at least 1"))
        return problems


def url_problem(endpoint: str) -> str | None:
    message = f'"{endpoint}" must be a full http:// or https:// URL, e.g. http://127.0.0.1:9090/api/v1/write'
    try:
        parts = urlsplit(endpoint)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        return message
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return message
    return None


def create(settings: Settings, config: Config, **hooks) -> Exporter:
    from relay.exporters.prometheusremotewrite.transport import RemoteWriteTransport

    id_, telemetry, host = settings.id, settings.telemetry, settings.host
    authenticator = authenticator_for(host, config.auth, "exporters", str(id_), role=CLIENT)
    return Exporter(id_, RemoteWriteTransport(id_, config, telemetry, authenticator), telemetry, timeout=config.timeout,
                    settings=config, host=host, **hooks)
