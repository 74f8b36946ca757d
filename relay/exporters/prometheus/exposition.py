"""The store as prometheus_client metric families, for its text and OpenMetrics encoders.

Families are built with explicit sample names so that the text format shows exactly
the collector's names: a counter family is named without "_total" (both encoders
add it back to the TYPE line or expect it on the samples), and no unit is passed
(it would be appended to the name). Created timestamps are left out: the collector
writes none in either text format, and the text encoder would turn them into extra
``_created`` gauge families.
"""

from __future__ import annotations

import functools
from typing import Callable

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample, Timestamp

from relay.exporters.prometheus.naming import go_float_g
from relay.exporters.prometheus.store import Family, SeriesStore

TARGET_INFO_HELP = "Target metadata"


class _Milliseconds(Timestamp):
    """A timestamp the text encoder writes as the exact millisecond.

    That encoder writes int(float(ts) * 1000), and a float holding a whole millisecond
    can come out a hair below it and be truncated to the one before; aiming float() at
    the middle of the millisecond keeps the truncation on the right one.
    """

    def __float__(self) -> float:
        return (self.sec * 1000 + self.nsec // 1_000_000 + 0.5) / 1000


def _timestamp(time_unix_nano: int) -> Timestamp:
    # Millisecond precision, as the collector sends timestamps.
    ms = time_unix_nano // 1_000_000
    return _Milliseconds(ms // 1000, (ms % 1000) * 1_000_000)


class StoreCollector:
    """A prometheus_client collector reading the store at each scrape.

    ``before_collect`` runs first (the exporter sweeps expired series there), so a
    scrape never shows a series that has outlived its expiration.
    """

    def __init__(self, store: SeriesStore, *, send_timestamps: bool,
                 before_collect: Callable[[], object] | None = None):
        self.store = store
        self.send_timestamps = send_timestamps
        self.before_collect = before_collect

    def describe(self):
        # Families come and go with the data; nothing to check at registration.
        return []

    def collect(self):
        if self.before_collect is not None:
            self.before_collect()
        targets = self.store.targets()
        if targets:
            name = self.store.target_info_name
            metric = Metric(name, TARGET_INFO_HELP, "gauge")
            metric.samples.extend(Sample(name, dict(labels), 1) for labels in targets)
            yield metric
        for family in list(self.store.families.values()):
            yield family_metric(family, self.send_timestamps)


@functools.lru_cache(maxsize=256)
def _le(bounds: tuple[float, ...]) -> tuple[str, ...]:
    return tuple(go_float_g(b) for b in bounds)


class Snapshot:
    """Families collected once, for an encoder running off the event loop: the store
    keeps changing while the encoder works, these do not."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self):
        return self.families


def family_metric(family: Family, send_timestamps: bool) -> Metric:
    name, kind = family.name, family.kind
    if kind == "counter":
        # Without suffixes (add_metric_suffixes: false) a counter has no "_total", which
        # prometheus_client's counter type cannot express: it is exposed untyped instead.
        suffixed = name.endswith("_total")
        metric = Metric(name[:-6] if suffixed else name, family.help, "counter" if suffixed else "unknown")
    else:
        metric = Metric(name, family.help, kind)
    out = metric.samples
    for key, series in family.series.items():
        labels = dict(key)
        ts = _timestamp(series.time) if send_timestamps else None
        if kind == "histogram":
            bucket, cumulative = f"{name}_bucket", 0
            for le, count in zip(_le(series.bounds), series.counts):
                cumulative += count
                out.append(Sample(bucket, {**labels, "le": le}, cumulative, ts))
            out.append(Sample(bucket, {**labels, "le": "+Inf"}, series.count, ts))
            out.append(Sample(f"{name}_sum", labels, series.sum, ts))
            out.append(Sample(f"{name}_count", labels, series.count, ts))
        elif kind == "summary":
            for quantile, value in series.quantiles:
                out.append(Sample(name, {**labels, "quantile": go_float_g(quantile)}, value, ts))
            out.append(Sample(f"{name}_sum", labels, series.sum, ts))
            out.append(Sample(f"{name}_count", labels, series.count, ts))
        else:
            out.append(Sample(name, labels, series.value, ts))
    return metric
