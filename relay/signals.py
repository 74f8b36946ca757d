"""The OTLP signals: their request and response types, message layout, item names and counts.

Profiles are the collector's development signal (``v1development``): the relay carries them
through, it does not read them, so only components that leave the items alone (or touch only
the resource) take them. Their requests hold a request-wide ``dictionary`` that the items point
into by index, which is why nothing merges two profiles requests.
"""

from __future__ import annotations

import enum

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from relay import points


class Signal(enum.Enum):
    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"
    PROFILES = "profiles"

    @property
    def request_type(self):
        return _REQUEST[self]

    @property
    def response_type(self):
        return _RESPONSE[self]

    @property
    def item(self) -> str:
        """The collector's name for one unit of this signal, used in metric names."""
        return _ITEM[self]

    @property
    def layout(self) -> tuple[str, str, str]:
        """The field names of its resource list, each resource's scope list and each scope's
        item list: ("resource_spans", "scope_spans", "spans") for traces."""
        return _LAYOUT[self]

    def resources(self, request):
        """The request's resource entries (ResourceSpans, ResourceMetrics, ResourceLogs or ResourceProfiles)."""
        return getattr(request, _LAYOUT[self][0])

    @property
    def service(self) -> str:
        return _SERVICE[self]

    @property
    def method(self) -> str:
        return f"/{self.service}/Export"

    def count(self, request, data: bytes | None = None) -> int:
        """The request's items; ``data``, its wire form where the caller has it, lets metrics
        be counted without walking the message (``relay.points.count``)."""
        if self is Signal.METRICS:
            return points.count(request, data)
        return _COUNT[self](request)

    def is_empty(self, request, count: int) -> bool:
        """Whether the request carries nothing to forward, given its ``count`` of items. A profile
        without samples still carries its own data (its time, attributes, dropped counts), so a
        profiles request is empty only when it holds no profiles."""
        if self is Signal.PROFILES:
            return count == 0 and count_profiles(request) == 0
        return count == 0


def _count_spans(request) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def _count_log_records(request) -> int:
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def _count_profile_samples(request) -> int:
    # The collector counts profiles in samples (otelcol_receiver_accepted_profile_samples).
    return sum(len(p.samples) for rp in request.resource_profiles for sp in rp.scope_profiles for p in sp.profiles)


def count_profiles(request) -> int:
    """Whole profiles, with or without samples (what a downstream's ``rejected_profiles`` counts)."""
    return sum(len(sp.profiles) for rp in request.resource_profiles for sp in rp.scope_profiles)


_REQUEST = {
    Signal.TRACES: trace_service_pb2.ExportTraceServiceRequest,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceRequest,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceRequest,
    Signal.PROFILES: profiles_service_pb2.ExportProfilesServiceRequest,
}
_RESPONSE = {
    Signal.TRACES: trace_service_pb2.ExportTraceServiceResponse,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceResponse,
    Signal.PROFILES: profiles_service_pb2.ExportProfilesServiceResponse,
}
_LAYOUT = {
    Signal.TRACES: ("resource_spans", "scope_spans", "spans"),
    Signal.METRICS: ("resource_metrics", "scope_metrics", "metrics"),
    Signal.LOGS: ("resource_logs", "scope_logs", "log_records"),
    Signal.PROFILES: ("resource_profiles", "scope_profiles", "profiles"),
}
_ITEM = {Signal.TRACES: "spans", Signal.METRICS: "metric_points", Signal.LOGS: "log_records",
         Signal.PROFILES: "profile_samples"}
_SERVICE = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
    Signal.PROFILES: "opentelemetry.proto.collector.profiles.v1development.ProfilesService",
}
_COUNT = {
    Signal.TRACES: _count_spans,
    Signal.LOGS: _count_log_records,
    Signal.PROFILES: _count_profile_samples,
}
_BY_TYPE = {request_type: signal for signal, request_type in _REQUEST.items()}


def signal_of(request) -> Signal:
    return _BY_TYPE[type(request)]


def rejected_count(signal: Signal, response) -> tuple[int, str]:
    """(rejected items, message) from a response's partial_success, (0, "") when unset.
    For profiles the downstream counts whole profiles (``rejected_profiles``), not samples."""
    if not response.HasField("partial_success"):
        return 0, ""
    ps = response.partial_success
    field = {Signal.TRACES: "rejected_spans", Signal.METRICS: "rejected_data_points",
             Signal.LOGS: "rejected_log_records", Signal.PROFILES: "rejected_profiles"}[signal]
    return getattr(ps, field), ps.error_message
