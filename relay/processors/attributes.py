"""The ``attributes`` processor: insert, update, upsert, delete, hash, extract and convert attributes.

Actions apply to span attributes, to the attributes of every data point of
every metric (all five point types), and to log record attributes; an
``include`` / ``exclude`` block narrows which of them (see ``filterspec``).
The action semantics are the collector's; ``attraction`` documents them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.attributes.attraction import ActionConfig, Actions
from relay.attributes.filterspec import MatchProperties, selection
from relay.component import Settings
from relay.errors import Problem
from relay.processors.helper import FunctionProcessor
from relay.signals import Signal, signal_of

TYPE = "attributes"
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"actions": [{"key": "deployment.environment", "value": "production", "action": "upsert"}]}


@dataclass
class Config:
    actions: list[ActionConfig] = field(default_factory=list)
    include: MatchProperties | None = None
    exclude: MatchProperties | None = None

    def validate(self) -> list[Problem]:
        return [] if self.actions else [Problem(("actions",), "at least one action is required")]


def create(settings: Settings, config: Config, next_consumer):
    return FunctionProcessor(settings.id, process_function(config), next_consumer, mutates=True)


def process_function(config: Config):
    """The pure request -> request function of a validated config, compiled once."""
    actions = Actions(config.actions)
    selections = {signal: selection(config.include, config.exclude, signal) for signal in SIGNALS}

    def process(request):
        signal = signal_of(request)
        run = actions.for_request()
        items = _chosen(request, signal.layout, selections[signal])
        if signal is Signal.METRICS:
            for metric in items:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    for point in getattr(metric, kind).data_points:
                        run(point.attributes)
        else:
            for item in items:
                run(item.attributes)
        return request

    return process


def _chosen(request, layout, chosen_by):
    resources_field, scopes_field, items_field = layout
    for resource_entry in getattr(request, resources_field):
        for scope_entry in getattr(resource_entry, scopes_field):
            items = getattr(scope_entry, items_field)
            if chosen_by is None:
                yield from items
                continue
            choose = chosen_by.chooser(resource_entry.resource, scope_entry.scope)
            if choose is not None:
                yield from filter(choose, items)
