"""The drift histogram: (reported - computed) / computed per model, for spans that report a cost
the relay can also price. A stale price table shows as mass away from 0.

Observed once per such span on the hot path, so it is a plain bucket array per model (a
bisect and three additions), exposed to the registry as a collector, instead of a
prometheus_client Histogram whose observe takes a lock and walks the buckets.
"""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client.core import HistogramMetricFamily

# Relative differences between a reported and a computed cost: 1% to 10x either way.
BUCKETS = (-0.9, -0.5, -0.2, -0.1, -0.05, -0.01, 0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 10.0)
NAME = "otelcol_processor_genops_reported_cost_drift"


class Drift:
    def __init__(self, processor: str, max_models: int):
        self.processor = processor
        self.max_models = max_models
        self._models: dict[str, list] = {}  # model -> [counts per bucket (+Inf last), sum]

    def add(self, model: str, ratio: float) -> None:
        cell = self._models.get(model)
        if cell is None:
            if len(self._models) >= self.max_models:
                model = "other"
            cell = self._models.setdefault(model, [[0] * (len(BUCKETS) + 1), 0.0])
        cell[0][bisect_left(BUCKETS, ratio)] += 1
        cell[1] += ratio

    def collect(self):
        family = HistogramMetricFamily(NAME, "(reported - computed) / computed for spans that report a cost the "
                                             "relay can also price", labels=["processor", "model"])
        for model, (counts, total) in list(self._models.items()):
            running, buckets = 0, []
            for bound, count in zip(BUCKETS + (float("inf"),), counts):
                running += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            family.add_metric([self.processor, model], buckets, total)
        yield family
