"""The drift histogram: (reported - computed) / computed per model, for spans that report a cost
the relay can also price. A stale price table shows as mass away from 0.

Observed once per such span on the hot path, so it is a plain array of doubles per model
(its bounds, its bucket counts and its sum) that the C pricing path counts into directly,
exposed to the registry as a collector, instead of a prometheus_client Histogram whose
observe takes a lock and walks the buckets.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

from prometheus_client.core import HistogramMetricFamily

# Relative differences between a reported and a computed cost: 1% to 10x either way.
BUCKETS = (-0.9, -0.5, -0.2, -0.1, -0.05, -0.01, 0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 10.0)
NAME = "otelcol_processor_genops_reported_cost_drift"


class Drift:
    def __init__(self, processor: str, max_models: int):
        self.processor = processor
        self.max_models = max_models
        self._cells: dict[str, array] = {}

    def cell(self, model: str) -> array:
        """The model's cell, doubles [bounds..., count per bucket (+Inf last)..., sum]: the C path
        counts into it directly."""
        cell = self._cells.get(model)
        if cell is None:
            if len(self._cells) >= self.max_models:
                model = "other"
            cell = self._cells.setdefault(model, array("d", BUCKETS + (0.0,) * (len(BUCKETS) + 2)))
        return cell

    def add(self, model: str, ratio: float) -> None:
        cell = self.cell(model)
        cell[len(BUCKETS) + bisect_left(BUCKETS, ratio)] += 1
        cell[-1] += ratio

    def collect(self):
        family = HistogramMetricFamily(NAME, "(reported - computed) / computed for spans that report a cost the "
                                             "relay can also price", labels=["processor", "model"])
        n = len(BUCKETS)
        for model, cell in list(self._cells.items()):
            running, buckets = 0, []
            for bound, count in zip(BUCKETS + (float("inf"),), cell[n:2 * n + 1]):
                running += int(count)
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            family.add_metric([self.processor, model], buckets, cell[-1])
        yield family
