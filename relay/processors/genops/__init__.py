"""The ``genops`` processor: GenOps attribution and LLM cost on trace spans, and attribution
on the data points of metrics.

See ``enrich`` for what it writes on spans, ``datapoints`` for metrics, and ``attribution``
for how team, project and the rest are resolved. Unpriced spans are counted per model, with the
model label bounded so that a flood of made-up names cannot grow memory.
"""

from __future__ import annotations

from relay import pricing
from relay.component import Settings
from relay.processors.genops import datapoints
from relay.processors.genops.config import Config, RuleConfig
from relay.processors.genops.drift import Drift
from relay.processors.genops.enrich import make
from relay.processors.helper import FunctionProcessor
from relay.signals import Signal, signal_of
from relay.telemetry import component_logger

TYPE = "genops"
SIGNALS = (Signal.TRACES, Signal.METRICS)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"defaults": {"team": "unassigned", "project": "unassigned"}}
MODEL_LABEL_LIMIT = 500

__all__ = ["TYPE", "SIGNALS", "Config", "RuleConfig", "create"]


def create(settings: Settings, config: Config, next_consumer):
    id_, telemetry = settings.id, settings.telemetry
    name = str(id_)
    spans = telemetry.counter("otelcol_processor_genops_spans", "LLM spans by where their cost came from",
                              ["processor", "source"])
    unpriced = telemetry.counter("otelcol_processor_genops_unpriced_spans",
                                 "LLM spans that got no cost, by model and reason "
                                 "(unknown_model, no_usage, invalid_usage)", ["processor", "model", "reason"])
    rejected = telemetry.counter("otelcol_processor_genops_reported_cost_rejected",
                                 "Reported costs not used (negative, not_finite, not_a_number, too_large, "
                                 "zero_for_priced_model); the span was priced as if it reported none",
                                 ["processor", "reason"])
    drift = Drift(name, MODEL_LABEL_LIMIT)
    telemetry.registry.register(drift)
    duplicates = telemetry.counter("otelcol_processor_genops_duplicate_calls",
                                   "LLM spans of a call already seen (same gen_ai.response.id): forwarded, "
                                   "booked once", ["processor"])
    overbooked = telemetry.counter("otelcol_processor_genops_overbooked_usd",
                                   "USD booked by a first copy above the provider's billed cost that a later "
                                   "copy of the same call reported (counters cannot go down)", ["processor"])
    truncated = telemetry.counter("otelcol_processor_genops_truncated_values",
                                  "Values cut to label_max_length before becoming attribution, model or provider "
                                  "labels (counted when a span kind is first planned)", ["processor"])
    log = component_logger(id_)
    seen_models: set[str] = set()

    def model_label(model: str, reason: str) -> str:
        if model in seen_models:
            return model
        if len(seen_models) >= MODEL_LABEL_LIMIT:
            return "other"
        seen_models.add(model)
        log.warning("cannot price LLM span", fields={"model": model, "reason": reason})
        return model

    def report(tally) -> None:
        for source, count in tally.sources.items():
            spans.labels(name, source).inc(count)
        for (model, reason), count in tally.unpriced.items():
            unpriced.labels(name, model_label(model, reason), reason).inc(count)
        for reason, count in tally.rejected.items():
            rejected.labels(name, reason).inc(count)
        if tally.duplicates:
            duplicates.labels(name).inc(tally.duplicates)
        if tally.overbooked:
            overbooked.labels(name).inc(tally.overbooked)
        if tally.truncated:
            truncated.labels(name).inc(tally.truncated)

    book = pricing.build(config.pricing)
    functions = {Signal.TRACES: make(config, book, report, drift),
                 Signal.METRICS: datapoints.make(config, truncated.labels(name).inc)}

    def process(request):
        return functions[signal_of(request)](request)

    return GenopsProcessor(id_, process, next_consumer, book)


class GenopsProcessor(FunctionProcessor):
    """Owns its price book: auto-updates (when configured) run between start and shutdown."""

    def __init__(self, id_, process, next_consumer, book):
        super().__init__(id_, process, next_consumer)
        self.book = book

    async def start(self) -> None:
        self.book.start()

    async def shutdown(self) -> None:
        self.book.close()
