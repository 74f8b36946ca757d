"""The ``transform`` processor: a subset of OTTL over traces, metrics and logs.

Contexts resource, scope, span, spanevent, metric, datapoint and log; the
editors and converters of ``relay.ottl`` (set, delete_key, keep_keys,
replace_pattern, limit, ..., Concat, IsMatch, SHA256, ...); ``where``
clauses with comparisons, converters, and, or, not and parentheses. See
``relay.ottl.parse`` for the grammar and ``relay.ottl.contexts`` for the
paths of each context.
"""

from __future__ import annotations

from relay.component import Settings
from relay.processors.helper import FunctionProcessor
from relay.processors.transform.config import Config
from relay.processors.transform.processor import Transform
from relay.signals import Signal

TYPE = "transform"
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"trace_statements": [{"context": "span", "statements": ['set(attributes["genops.source"], "relay")']}]}

__all__ = ["SIGNALS", "TYPE", "Config", "create"]


def create(settings: Settings, config: Config, next_consumer) -> FunctionProcessor:
    id_, telemetry = settings.id, settings.telemetry
    return FunctionProcessor(id_, Transform(id_, config.compiled(), telemetry), next_consumer, mutates=True)
