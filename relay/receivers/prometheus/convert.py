"""One scrape's exposition as an OTLP ``ExportMetricsServiceRequest``, as the collector maps it.

- Parsing is prometheus_client's: the text format (0.0.4), or OpenMetrics when the target
  answers with that content type.
- Names are kept as exposed: a counter's metric is named by its samples, with ``_total``
  (``http_requests_total``), as the collector does by default (``trim_metric_suffixes:
  false``), so a Prometheus exporter downstream exposes the same name again. Histograms and
  summaries take the family name (without ``_bucket``/``_count``/``_sum``).
- counter -> monotonic cumulative Sum; histogram -> cumulative Histogram (explicit bounds
  from ``le`` except +Inf, bucket counts de-cumulated); summary -> cumulative Summary;
  gauge, untyped and the OpenMetrics-only kinds -> one Gauge per sample name.
- HELP is the description, UNIT (OpenMetrics) the unit. A sample's own timestamp is kept,
  else the scrape's start time is used, as Prometheus does.
- ``job`` and ``instance`` become the resource (service.name, service.instance.id,
  server.address, server.port, url.scheme; as in the collector, the port is a string and a
  loopback host gives no server.address); every other label is a data point attribute.
  Target labels win over scraped ones, which are kept as ``exported_<name>``, unless
  ``honor_labels``. Empty label values are absent labels, as in Prometheus.
- A cumulative point starts at its OpenMetrics ``_created`` time when given, else when this
  receiver first saw the series (``StartTimes``); a value going down is a reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

SCOPE = "genops-relay/prometheus"
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
OPENMETRICS = "application/openmetrics-text"

# The collector leaves server.address out for these: they name no particular host.
_LOOPBACK = {"localhost", "127.0.0.1", "0.0.0.0", "::1", "::", "[::1]", "[::]"}


def parse(text: str, content_type: str = "") -> list:
    """The metric families of one exposition; ValueError (or another parser error) if malformed."""
    parser = parse_openmetrics if content_type.split(";")[0].strip() == OPENMETRICS else parse_text
    return list(parser(text))


@dataclass(frozen=True)
class TargetLabels:
    """What a target adds to each series: job, instance, its static labels, and who wins a clash."""

    job: str
    instance: str
    scheme: str = "http"
    labels: tuple[tuple[str, str], ...] = ()
    honor_labels: bool = False
    # global.external_labels: set last, over any label of the same name, as the collector does.
    external: tuple[tuple[str, str], ...] = ()

    def own(self) -> dict[str, str]:
        # Static labels may override job and instance, as in Prometheus.
        return {"job": self.job, "instance": self.instance, **dict(self.labels)}

    def resolve(self, scraped: dict[str, str]) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """(job, instance, sorted attributes) of a series with the ``scraped`` labels."""
        own = self.own()
        if self.honor_labels:
            merged = {**own, **{k: v for k, v in scraped.items() if v}}
        else:
            merged = dict(scraped)
            for name, value in own.items():
                if merged.get(name):
                    exported = "exported_" + name
                    while exported in merged:
                        exported = "exported_" + exported
                    merged[exported] = merged[name]
                merged[name] = value
        merged.update(self.external)
        job = merged.pop("job", "")
        instance = merged.pop("instance", "")
        return job, instance, tuple(sorted((k, v) for k, v in merged.items() if v))


@dataclass
class _Series:
    start_ns: int
    value: float
    time_ns: int


@dataclass
class StartTimes:
    """Start times of one target's cumulative series, kept between its scrapes.

    A series starts when first seen. When its value goes down the source restarted: the
    new start is the previous point's time, the last moment the old count was known.
    Series absent from a scrape are forgotten, so the memory follows what the target exposes.
    """

    _series: dict[tuple, _Series] = field(default_factory=dict)
    _seen: set = field(default_factory=set)

    def start(self, key: tuple, value: float, time_ns: int) -> int:
        self._seen.add(key)
        known = self._series.get(key)
        if known is None:
            self._series[key] = known = _Series(time_ns, value, time_ns)
        elif value < known.value:
            known.start_ns = known.time_ns
        known.value, known.time_ns = value, time_ns
        return known.start_ns

    def sweep(self) -> None:
        """Forget the series the last scrape did not have."""
        self._series = {key: series for key, series in self._series.items() if key in self._seen}
        self._seen = set()

    def __len__(self) -> int:
        return len(self._series)


def time_ns(timestamp, default_ns: int) -> int:
    if timestamp is None:
        return default_ns
    if hasattr(timestamp, "sec"):  # OpenMetrics: exact seconds and nanoseconds
        return timestamp.sec * 1_000_000_000 + timestamp.nsec
    # The text format carries milliseconds; rounding there keeps them exact.
    return round(timestamp * 1000) * 1_000_000


class _Builder:
    """The request under construction: one resource per (job, instance), one metric per name."""

    def __init__(self, target: TargetLabels):
        self.target = target
        self.request = ExportMetricsServiceRequest()
        self._scopes: dict[tuple[str, str], metrics_pb2.ScopeMetrics] = {}
        self._metrics: dict[tuple, metrics_pb2.Metric] = {}

    def metric(self, job: str, instance: str, name: str, description: str, unit: str) -> metrics_pb2.Metric:
        key = (job, instance, name)
        metric = self._metrics.get(key)
        if metric is None:
            scope = self._scopes.get((job, instance))
            if scope is None:
                scope = self._scopes[(job, instance)] = self._new_scope(job, instance)
            metric = self._metrics[key] = scope.metrics.add(name=name, description=description, unit=unit)
        return metric

    def _new_scope(self, job: str, instance: str) -> metrics_pb2.ScopeMetrics:
        rm = self.request.resource_metrics.add()
        host, port = _split_instance(instance)
        attributes = [("service.name", job), ("service.instance.id", instance)]
        if host and host not in _LOOPBACK:
            attributes.append(("server.address", host))
        if port:
            attributes.append(("server.port", port))
        attributes.append(("url.scheme", self.target.scheme))
        _set_attributes(rm.resource.attributes, [(k, v) for k, v in attributes if v])
        sm = rm.scope_metrics.add()
        sm.scope.name = SCOPE
        return sm


def _split_instance(instance: str) -> tuple[str, str]:
    host, sep, port = instance.rpartition(":")
    if not sep or not port.isdigit() or (":" in host and not host.startswith("[")):
        return instance, ""
    return host.strip("[]"), port


def _set_attributes(target, pairs) -> None:
    for key, value in pairs:
        kv = target.add()
        kv.key = key
        kv.value.string_value = value


class Conversion:
    """The request built from one scrape, with what was counted and left out along the way."""

    def __init__(self, target: TargetLabels):
        self._builder = _Builder(target)
        self.samples = 0
        # "name{labels}: why" for each series left out as malformed.
        self.skipped: list[str] = []

    @property
    def request(self) -> ExportMetricsServiceRequest:
        return self._builder.request

    def add_scrape_series(self, scrape_ns: int, up: bool, duration: float) -> None:
        """Prometheus' per-scrape series, with the target's own labels: up,
        scrape_duration_seconds and scrape_samples_scraped."""
        builder = self._builder
        job, instance, attributes = builder.target.resolve({})
        for name, description, value in (
                ("up", "1 if the target was scraped and its exposition parsed, else 0", 1.0 if up else 0.0),
                ("scrape_duration_seconds", "How long the scrape took", duration),
                ("scrape_samples_scraped", "How many samples the target exposed", float(self.samples))):
            metric = builder.metric(job, instance, name, description, "")
            point = metric.gauge.data_points.add(time_unix_nano=scrape_ns, as_double=value)
            _set_attributes(point.attributes, attributes)


def convert(families, target: TargetLabels, scrape_ns: int, starts: StartTimes) -> Conversion:
    """The request for one scrape's ``families``; ``starts`` is the target's memory of its series."""
    conversion = Conversion(target)
    builder, skipped = conversion._builder, conversion.skipped
    for family in families:
        conversion.samples += len(family.samples)
        if family.type == "counter":
            _counter(builder, family, scrape_ns, starts)
        elif family.type == "histogram":
            _histogram(builder, family, scrape_ns, starts, skipped)
        elif family.type == "summary":
            _summary(builder, family, scrape_ns, starts, skipped)
        else:
            _gauges(builder, family, scrape_ns)
    starts.sweep()
    return conversion


def _describe(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _counter(builder: _Builder, family, scrape_ns: int, starts: StartTimes) -> None:
    total, created_name = family.name + "_total", family.name + "_created"
    created = {_key(s.labels): s.value for s in family.samples if s.name == created_name}
    for sample in family.samples:
        if sample.name != total:
            continue
        job, instance, attributes = builder.target.resolve(sample.labels)
        metric = builder.metric(job, instance, total, family.documentation, family.unit)
        metric.sum.is_monotonic = True
        metric.sum.aggregation_temporality = CUMULATIVE
        point = metric.sum.data_points.add(time_unix_nano=time_ns(sample.timestamp, scrape_ns),
                                           as_double=sample.value)
        point.start_time_unix_nano = _start(created.get(_key(sample.labels)), starts,
                                            (total, job, instance, attributes), sample.value,
                                            point.time_unix_nano)
        _set_attributes(point.attributes, attributes)


def _gauges(builder: _Builder, family, scrape_ns: int) -> None:
    for sample in family.samples:
        job, instance, attributes = builder.target.resolve(sample.labels)
        metric = builder.metric(job, instance, sample.name, family.documentation, family.unit)
        point = metric.gauge.data_points.add(time_unix_nano=time_ns(sample.timestamp, scrape_ns),
                                             as_double=sample.value)
        _set_attributes(point.attributes, attributes)


def _key(labels: dict[str, str], without: str = "") -> tuple:
    return tuple(sorted((k, v) for k, v in labels.items() if k != without))


@dataclass
class _Group:
    """The samples of one histogram or summary series."""

    labels: dict[str, str]
    parts: list[tuple[float, float]] = field(default_factory=list)  # (le or quantile, value)
    count: float | None = None
    sum: float | None = None
    created: float | None = None
    timestamp: object = None


def _groups(family, part: str, part_label: str, skipped: list[str]) -> dict[tuple, _Group]:
    """Samples by series (labels without ``part_label``); ``part`` names the bucket or
    quantile samples. Suffixes are matched on the family's own name only."""
    groups: dict[tuple, _Group] = {}
    bad: set[tuple] = set()
    name = family.name
    for sample in family.samples:
        key = _key(sample.labels, part_label)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group({k: v for k, v in sample.labels.items() if k != part_label})
        if group.timestamp is None:
            group.timestamp = sample.timestamp
        if sample.name == part:
            try:
                bound = float(sample.labels[part_label])
            except (KeyError, ValueError):
                if key not in bad:
                    skipped.append(f"{_describe(name, group.labels)}: {part_label} label missing or not a number")
                bad.add(key)
                continue
            group.parts.append((bound, sample.value))
        elif sample.name == name + "_count":
            group.count = sample.value
        elif sample.name == name + "_sum":
            group.sum = sample.value
        elif sample.name == name + "_created":
            group.created = sample.value
    return {key: group for key, group in groups.items() if key not in bad}


def _as_count(value: float | None) -> int | None:
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return round(value)


def _histogram(builder: _Builder, family, scrape_ns: int, starts: StartTimes, skipped: list[str]) -> None:
    for group in _groups(family, family.name + "_bucket", "le", skipped).values():
        buckets = sorted(group.parts)
        finite = [(bound, value) for bound, value in buckets if not math.isinf(bound)]
        overflow = next((value for bound, value in buckets if math.isinf(bound) and bound > 0), None)
        total = _as_count(overflow if overflow is not None else group.count)
        if total is None and finite:
            total = _as_count(finite[-1][1])
        cumulative = [_as_count(value) for _, value in finite] + [total]
        if total is None or any(c is None for c in cumulative) or any(
                later < earlier for earlier, later in zip(cumulative, cumulative[1:])):
            skipped.append(f"{_describe(family.name, group.labels)}: bucket counts are not "
                           "non-negative and non-decreasing")
            continue
        job, instance, attributes = builder.target.resolve(group.labels)
        metric = builder.metric(job, instance, family.name, family.documentation, family.unit)
        metric.histogram.aggregation_temporality = CUMULATIVE
        point = metric.histogram.data_points.add(time_unix_nano=time_ns(group.timestamp, scrape_ns),
                                                 count=total)
        point.explicit_bounds.extend(bound for bound, _ in finite)
        point.bucket_counts.extend(c - p for p, c in zip([0] + cumulative, cumulative))
        if group.sum is not None:
            point.sum = group.sum
        point.start_time_unix_nano = _start(group.created, starts, (family.name, job, instance, attributes),
                                            total, point.time_unix_nano)
        _set_attributes(point.attributes, attributes)


def _summary(builder: _Builder, family, scrape_ns: int, starts: StartTimes, skipped: list[str]) -> None:
    for group in _groups(family, family.name, "quantile", skipped).values():
        count = _as_count(group.count if group.count is not None else 0)
        if count is None:
            skipped.append(f"{_describe(family.name, group.labels)}: count is not a non-negative number")
            continue
        job, instance, attributes = builder.target.resolve(group.labels)
        metric = builder.metric(job, instance, family.name, family.documentation, family.unit)
        point = metric.summary.data_points.add(time_unix_nano=time_ns(group.timestamp, scrape_ns),
                                               count=count, sum=group.sum or 0.0)
        for quantile, value in sorted(group.parts):
            point.quantile_values.add(quantile=quantile, value=value)
        point.start_time_unix_nano = _start(group.created, starts, (family.name, job, instance, attributes),
                                            count, point.time_unix_nano)
        _set_attributes(point.attributes, attributes)


def _start(created: float | None, starts: StartTimes, key: tuple, value: float, point_ns: int) -> int:
    tracked = starts.start(key, value, point_ns)
    if created is None or not math.isfinite(created):
        return tracked
    # Through the shortest decimal form: float seconds times 1e9 would be off by some nanoseconds.
    return int(Decimal(repr(created)) * 1_000_000_000)
