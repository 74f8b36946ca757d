"""The ``prometheus`` exporter: serves the metrics it receives on /metrics for scraping.

Translation follows the collector's contrib prometheus exporter (names, labels,
target_info, temporality); see ``naming``, ``labels`` and ``store``. Where the relay
differs, on purpose: series expire on a timer even when nothing scrapes, the number
of stored series is capped (``max_series``), delta points that leave a gap are added
rather than starting the total over, and every dropped point is counted by reason
in ``otelcol_exporter_prometheus_dropped_points_total``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.component import Settings
from relay.config.decode import Duration
from relay.errors import Problem
from relay.exporters.helper.exporter import Exporter
from relay.net.endpoints import endpoint_problem
from relay.prometheus.naming import VALID_LABEL_NAME
from relay.prometheus.settings import ResourceToTelemetryConfig
from relay.signals import Signal

TYPE = "prometheus"
SIGNALS = (Signal.METRICS,)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"endpoint": "127.0.0.1:8889", "namespace": "genops"}


@dataclass
class Config:
    endpoint: str
    namespace: str = ""
    const_labels: dict[str, str] = field(default_factory=dict)
    send_timestamps: bool = False
    metric_expiration: Duration = Duration(300.0)
    enable_open_metrics: bool = False
    resource_to_telemetry_conversion: ResourceToTelemetryConfig = field(default_factory=ResourceToTelemetryConfig)
    # Deprecated in the collector in favour of translation_strategy; accepted so that
    # collector configs load unchanged.
    add_metric_suffixes: bool = True
    # Not a collector key: the collector caches every series it ever saw until it
    # expires (issues #33540, #34938). Past this many, new series are dropped and counted.
    max_series: int = 20000

    def validate(self) -> list[Problem]:
        problems = []
        if message := endpoint_problem(self.endpoint):
            problems.append(Problem(("endpoint",), message))
        # Any namespace goes, as in the collector: what a name cannot hold becomes "_" (naming).
        for key in self.const_labels:
            if not VALID_LABEL_NAME.match(key) or key.startswith("__"):
                problems.append(Problem(("const_labels", key), "is not a valid Prometheus label name "
                                                                "([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"))
        if self.metric_expiration <= 0:
            problems.append(Problem(("metric_expiration",), "must be positive"))
        if self.max_series < 1:
            problems.append(Problem(("max_series",), "must be at least 1"))
        return problems


def create(settings: Settings, config: Config) -> Exporter:
    from relay.exporters.prometheus.transport import PrometheusTransport

    id_, telemetry = settings.id, settings.telemetry
    return Exporter(id_, PrometheusTransport(id_, config, telemetry), telemetry, timeout=0)
