"""The ``genops`` processor: GenOps attribution and LLM cost on trace spans.

See ``enrich`` for what it writes and ``attribution`` for how team, project
and the rest are resolved. Unpriced spans are counted per model, with the
model label bounded so that a flood of made-up names cannot grow memory.
"""

from __future__ import annotations

from relay import pricing
from relay.processors.genops.config import Config, RuleConfig
from relay.processors.genops.enrich import make
from relay.processors.helper import FunctionProcessor
from relay.signals import Signal
from relay.telemetry import component_logger

TYPE = "genops"
SIGNALS = (Signal.TRACES,)
MODEL_LABEL_LIMIT = 500

__all__ = ["TYPE", "SIGNALS", "Config", "RuleConfig", "create"]


def create(id_, config: Config, next_consumer, telemetry):
    spans = telemetry.counter("otelcol_processor_genops_spans", "LLM spans by where their cost came from",
                              ["processor", "source"])
    unpriced = telemetry.counter("otelcol_processor_genops_unpriced_spans",
                                 "LLM spans that got no cost, by model and reason (unknown_model, no_usage)",
                                 ["processor", "model", "reason"])
    log = component_logger(id_)
    name = str(id_)
    seen_models: set[str] = set()

    def on_unpriced(model: str, reason: str, count: int) -> None:
        if model not in seen_models:
            if len(seen_models) >= MODEL_LABEL_LIMIT:
                model = "other"
            else:
                seen_models.add(model)
                log.warning("cannot price LLM span", fields={"model": model, "reason": reason})
        unpriced.labels(name, model, reason).inc(count)

    def on_sources(counts) -> None:
        for source, count in counts.items():
            spans.labels(name, source).inc(count)

    book = pricing.build(config.pricing)
    return GenopsProcessor(id_, make(config, book, on_unpriced, on_sources), next_consumer, book)


class GenopsProcessor(FunctionProcessor):
    """Owns its price book: auto-updates (when configured) run between start and shutdown."""

    def __init__(self, id_, process, next_consumer, book):
        super().__init__(id_, process, next_consumer)
        self.book = book

    async def start(self) -> None:
        self.book.start()

    async def shutdown(self) -> None:
        self.book.close()
