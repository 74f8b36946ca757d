"""The ``resource`` processor: the attribute actions, applied to the resource of every signal.

The actions sit under ``attributes:``, as in the collector; their semantics
(and those of ``from_attribute``, which reads the resource's own attributes)
are documented in ``attraction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.attributes.attraction import ActionConfig, Actions
from relay.component import Settings
from relay.errors import Problem
from relay.processors.helper import FunctionProcessor
from relay.signals import Signal, signal_of

TYPE = "resource"
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS, Signal.PROFILES)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"attributes": [{"key": "service.namespace", "value": "llm", "action": "upsert"}]}



@dataclass
class Config:
    attributes: list[ActionConfig] = field(default_factory=list)

    def validate(self) -> list[Problem]:
        return [] if self.attributes else [Problem(("attributes",), "at least one action is required")]


def create(settings: Settings, config: Config, next_consumer):
    return FunctionProcessor(settings.id, process_function(config), next_consumer, mutates=True)


def process_function(config: Config):
    """The pure request -> request function of a validated config, compiled once."""
    actions = Actions(config.attributes)

    def process(request):
        run = actions.for_request()
        for entry in signal_of(request).resources(request):
            run(entry.resource.attributes)
        return request

    return process
