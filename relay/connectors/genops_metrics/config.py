"""Configuration of the ``genops_metrics`` connector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from relay.config.decode import Duration
from relay.errors import Problem
from relay.genai import bounds
from relay.pricing import PricingConfig

# LLM calls take from a tenth of a second to minutes; seconds, as the metrics contract says.
DEFAULT_BUCKETS = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0]


@dataclass
class DimensionConfig:
    name: str
    default: str | None = None

    def validate(self) -> list[Problem]:
        return [] if self.name else [Problem(("name",), "must not be empty")]


@dataclass
class Config:
    # Added to every metric, e.g. genops.customer_id or genops.environment.
    dimensions: list[DimensionConfig] = field(default_factory=list)
    # Short enough that a dashboard moves soon after a call; a flush is cheap next to a scrape.
    metrics_flush_interval: Duration = Duration(5.0)
    histogram_buckets: list[float] = field(default_factory=lambda: list(DEFAULT_BUCKETS))
    # Series per metric; past it, data points go into one overflow series.
    aggregation_cardinality_limit: int = 2000
    # Bytes of a label value (team, model, ...); longer values are cut and marked (relay.genai.bounds).
    label_max_length: int = bounds.DEFAULT_LIMIT
    # A genops_ledger extension whose budgets to report as gauges with every flush.
    budgets_from: str = ""
    # Where cost comes from (see usage): priced spans ("traces"), the GenAI usage metrics
    # ("metrics"), or per service instance, metrics where it sends them, else spans ("auto").
    cost_from: Literal["traces", "metrics", "auto"] = "traces"
    # Prices for the usage metrics (spans arrive priced by the genops processor).
    pricing: PricingConfig = field(default_factory=PricingConfig)

    def validate(self) -> list[Problem]:
        problems = []
        if self.metrics_flush_interval <= 0:
            problems.append(Problem(("metrics_flush_interval",), "must be positive"))
        buckets = self.histogram_buckets
        if not buckets or any(b <= a for a, b in zip(buckets, buckets[1:])) or buckets[0] <= 0:
            problems.append(Problem(("histogram_buckets",), "must be positive and strictly increasing"))
        if self.aggregation_cardinality_limit < 1:
            problems.append(Problem(("aggregation_cardinality_limit",), "must be at least 1"))
        if self.label_max_length < 32:
            problems.append(Problem(("label_max_length",), "must be at least 32 bytes"))
        names = [d.name for d in self.dimensions]
        for name in dict.fromkeys(n for n in names if names.count(n) > 1):
            problems.append(Problem(("dimensions",), f'"{name}" is listed twice'))
        return problems

    def extension_references(self) -> list[tuple[tuple[str, ...], str, str]]:
        return [(("budgets_from",), self.budgets_from, "genops_ledger")] if self.budgets_from else []
