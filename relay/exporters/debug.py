"""The ``debug`` exporter: logs what passes through, as the collector's does.

``basic`` logs one summary line per request; ``normal`` adds one line per
resource; ``detailed`` logs the whole request in OTLP/JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from relay import otlpjson
from relay.component import Settings
from relay.errors import Problem
from relay.exporters.helper.exporter import Exporter
from relay.signals import Signal, signal_of
from relay.telemetry import component_logger

TYPE = "debug"
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"verbosity": "basic"}



@dataclass
class Config:
    verbosity: Literal["basic", "normal", "detailed"] = "basic"

    def validate(self) -> list[Problem]:
        return []


class DebugTransport:
    def __init__(self, id_, verbosity: str):
        self.verbosity = verbosity
        self.log = component_logger(id_)

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def send(self, request) -> None:
        signal = signal_of(request)
        resources = signal.resources(request)
        summary = {"signal": signal.value, "resources": len(resources), signal.item: signal.count(request)}
        if self.verbosity == "detailed":
            summary["content"] = json.loads(otlpjson.encode(request))
        self.log.info(f"{signal.value} received", fields=summary)
        if self.verbosity == "normal":
            for resource in resources:
                attrs = {kv.key: _plain(kv.value) for kv in resource.resource.attributes}
                self.log.info("resource", fields={"signal": signal.value, "attributes": attrs})


def _plain(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("string_value", "bool_value", "int_value", "double_value") else kind


def create(settings: Settings, config: Config) -> Exporter:
    id_, telemetry = settings.id, settings.telemetry
    return Exporter(id_, DebugTransport(id_, config.verbosity), telemetry, timeout=0)
