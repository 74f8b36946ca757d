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
from collections.abc import Callable

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample, Timestamp

from relay.prometheus.naming import go_float_g
from relay.prometheus.store import Family, SeriesStore

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
    """A prometheus_client collector over the store, for the exporter's own registry.

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
        return self.snapshot().collect()

    def snapshot(self) -> Snapshot:
        """The store's current rows, cheap to take on the event loop; building and
        encoding the families from it can then run in another thread."""
        if self.before_collect is not None:
            self.before_collect()
        return Snapshot(self.store.target_info_name, self.store.targets(),
                        [_rows(family) for family in self.store.families.values()], self.send_timestamps)


def _rows(family: Family) -> tuple:
    # Series replace their fields on update and never change a list in place, so the
    # values referenced here stay as they are now.
    if family.kind == "histogram":
        rows = [(k, s.time, s.bounds, s.counts, s.sum, s.count) for k, s in family.series.items()]
    elif family.kind == "summary":
        rows = [(k, s.time, s.quantiles, s.sum, s.count) for k, s in family.series.items()]
    else:
        rows = [(k, s.time, s.value) for k, s in family.series.items()]
    return family.name, family.kind, family.help, rows


@functools.lru_cache(maxsize=256)
def _le(bounds: tuple[float, ...]) -> tuple[str, ...]:
    return tuple(go_float_g(b) for b in bounds)


class Snapshot:
    """Rows taken from the store at one moment, as metric families for an encoder."""

    def __init__(self, target_info_name: str, targets: list[tuple], families: list[tuple], send_timestamps: bool):
        self.target_info_name = target_info_name
        self.targets = targets
        self.families = families
        self.send_timestamps = send_timestamps

    def collect(self):
        if self.targets:
            name = self.target_info_name
            metric = Metric(name, TARGET_INFO_HELP, "gauge")
            metric.samples.extend(Sample(name, dict(labels), 1) for labels in self.targets)
            yield metric
        for family in self.families:
            yield family_metric(*family, send_timestamps=self.send_timestamps)


def family_metric(name: str, kind: str, help_: str, rows: list[tuple], *, send_timestamps: bool) -> Metric:
    if kind == "counter":
        # Without suffixes (add_metric_suffixes: false) a counter has no "_total", which
        # prometheus_client's counter type cannot express: it is exposed untyped instead.
        suffixed = name.endswith("_total")
        metric = Metric(name[:-6] if suffixed else name, help_, "counter" if suffixed else "unknown")
    else:
        metric = Metric(name, help_, kind)
    out = metric.samples
    for key, time_unix_nano, *state in rows:
        labels = dict(key)
        ts = _timestamp(time_unix_nano) if send_timestamps else None
        if kind == "histogram":
            bounds, counts, total, count = state
            bucket, cumulative = f"{name}_bucket", 0
            for le, n in zip(_le(bounds), counts):
                cumulative += n
                out.append(Sample(bucket, {**labels, "le": le}, cumulative, ts))
            out.append(Sample(bucket, {**labels, "le": "+Inf"}, count, ts))
            out.append(Sample(f"{name}_sum", labels, total, ts))
            out.append(Sample(f"{name}_count", labels, count, ts))
        elif kind == "summary":
            quantiles, total, count = state
            for quantile, value in quantiles:
                out.append(Sample(name, {**labels, "quantile": go_float_g(quantile)}, value, ts))
            out.append(Sample(f"{name}_sum", labels, total, ts))
            out.append(Sample(f"{name}_count", labels, count, ts))
        else:
            out.append(Sample(name, labels, state[0], ts))
    return metric
