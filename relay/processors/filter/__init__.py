"""The ``filter`` processor: drops spans, span events, metrics, data points, log records and profiles.

Configured as in the collector, with OTTL conditions per context (an item
matching any condition is dropped) or with the older ``include`` / ``exclude``
match properties; see ``config.py`` for both forms and ``processor.py`` for
what is dropped with what, the counters and the error modes.
"""

from __future__ import annotations

from relay.component import Settings
from relay.processors.filter.config import Config
from relay.processors.filter.processor import Filter
from relay.processors.helper import FunctionProcessor
from relay.signals import Signal

TYPE = "filter"
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS, Signal.PROFILES)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"traces": {"span": ['attributes["http.route"] == "/health"']}}

__all__ = ["EXAMPLE", "SIGNALS", "TYPE", "Config", "create"]


def create(settings: Settings, config: Config, next_consumer) -> FunctionProcessor:
    return FunctionProcessor(settings.id, Filter(settings.id, config.compiled(), settings.telemetry), next_consumer,
                             mutates=True)
