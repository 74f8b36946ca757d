"""The ``debug`` exporter: logs what passes through, as the collector's does.

``basic`` logs one summary line per request; ``normal`` adds one line per
resource; ``detailed`` logs the whole request in OTLP/JSON.

Lines are sampled as the collector samples them (zap's sampler, ticking each
second): per signal, the first ``sampling_initial`` requests of a second are
logged, then every ``sampling_thereafter``-th (0: none) until the next second.

``logging`` is accepted as the old name of this exporter (removed from the
collector) with a one-time warning; its ``loglevel`` maps to a verbosity as the
collector mapped it (debug: detailed, info: normal, warn and error: basic), and
its verbosity without either setting is ``normal``, the logging exporter's default.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Literal

from relay import otlpjson
from relay.component import Settings
from relay.errors import Problem
from relay.exporters.helper.exporter import Exporter
from relay.signals import Signal, signal_of
from relay.telemetry import Sampler, component_logger

TYPE = "debug"
ALIASES = ("logging",)
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS, Signal.PROFILES)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"verbosity": "basic"}

_LOGLEVEL_VERBOSITY = {"debug": "detailed", "info": "normal", "warn": "basic", "error": "basic"}


@dataclass
class Config:
    # None: "basic" for debug, "normal" for the old logging exporter (the collector's defaults).
    verbosity: Literal["basic", "normal", "detailed"] | None = None
    sampling_initial: int = 2
    sampling_thereafter: int = 1
    # The logging exporter's setting, in any case as zap reads it.
    loglevel: str = ""

    def validate(self) -> list[Problem]:
        problems = []
        if self.loglevel and self.loglevel.lower() not in _LOGLEVEL_VERBOSITY:
            problems.append(Problem(("loglevel",), f'"{self.loglevel}" is not one of: '
                                                   + ", ".join(_LOGLEVEL_VERBOSITY)))
        if self.loglevel and self.verbosity is not None:
            problems.append(Problem(("loglevel",), "give verbosity or loglevel, not both (loglevel is the "
                                                   "logging exporter's old name for it)"))
        for name in ("sampling_initial", "sampling_thereafter"):
            if getattr(self, name) < 0:
                problems.append(Problem((name,), "must not be negative"))
        return problems

    def effective_verbosity(self, type_: str = TYPE) -> str:
        if self.verbosity is not None:
            return self.verbosity
        if self.loglevel:
            return _LOGLEVEL_VERBOSITY[self.loglevel.lower()]
        return "normal" if type_ == "logging" else "basic"


class DebugTransport:
    def __init__(self, id_, verbosity: str, sampler: Sampler):
        self.verbosity = verbosity
        self.sampler = sampler
        self.log = component_logger(id_)

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def send(self, request) -> None:
        signal = signal_of(request)
        if not self.sampler.allow(signal.value):
            return
        resources = signal.resources(request)
        summary = {"signal": signal.value, "resources": len(resources), signal.item: signal.count(request)}
        if signal is Signal.PROFILES:
            # Samples are what the collector counts; profiles are what a reader looks for.
            summary["profiles"] = sum(len(sp.profiles) for rp in resources for sp in rp.scope_profiles)
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


def create(settings: Settings, config: Config, clock=time.monotonic) -> Exporter:
    id_, telemetry = settings.id, settings.telemetry
    log = component_logger(id_)
    if id_.type == "logging":
        log.warning('the "logging" exporter was removed from the collector: use "debug" '
                    "(with verbosity instead of loglevel)", fields={"verbosity": config.effective_verbosity(id_.type)})
    elif config.loglevel:
        log.warning('loglevel is the old "logging" exporter\'s setting: use verbosity',
                    fields={"verbosity": config.effective_verbosity(id_.type)})
    sampler = Sampler(config.sampling_initial, config.sampling_thereafter, clock)
    return Exporter(id_, DebugTransport(id_, config.effective_verbosity(id_.type), sampler), telemetry, timeout=0)
