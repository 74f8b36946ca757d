"""The ``debug`` exporter: logs what passes through, as the collector's does.

``normal`` logs one summary line per request and one per resource; ``detailed``
logs the whole request in OTLP/JSON. Their lines are sampled as the collector
samples them (zap's sampler, ticking each second): per signal, the first
``sampling_initial`` requests of a second are logged, then every
``sampling_thereafter``-th (0: none) until the next second.

``basic`` differs from the collector's, which writes a line per request: it is
the verbosity a deployment runs at for months, where an SDK exporting metrics
every few seconds would write a line every few seconds for ever. So it sums
each signal's requests and writes the sum at most once per ``BASIC_INTERVAL``:
the first request at once, so that a new user sees data arrive, and what is
still unwritten at shutdown.

``logging`` is accepted as the old name of this exporter (removed from the
collector) with a one-time warning; its ``loglevel`` maps to a verbosity as the
collector mapped it (debug: detailed, info: normal, warn and error: basic), and
its verbosity without either setting is ``normal``, the logging exporter's default.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
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

BASIC_INTERVAL = 60.0

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


@dataclass
class _Tally:
    """One signal's traffic at ``basic`` since its last line."""

    requests: int = 0
    counts: dict = field(default_factory=dict)
    written_at: float | None = None


class DebugTransport:
    def __init__(self, id_, verbosity: str, sampler: Sampler, clock=time.monotonic):
        self.verbosity = verbosity
        self.sampler = sampler
        self.clock = clock
        self.log = component_logger(id_)
        self.tallies: dict[Signal, _Tally] = {}

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        for signal, tally in self.tallies.items():
            if tally.requests:
                self._write(signal, tally)

    def _write(self, signal: Signal, tally: _Tally) -> None:
        self.log.info(f"{signal.value} received", fields={"signal": signal.value, "requests": tally.requests,
                                                          **tally.counts})
        tally.requests, tally.counts, tally.written_at = 0, {}, self.clock()

    async def send(self, request) -> None:
        signal = signal_of(request)
        resources = signal.resources(request)
        summary = {"resources": len(resources), signal.item: signal.count(request)}
        if signal is Signal.PROFILES:
            # Samples are what the collector counts; profiles are what a reader looks for.
            summary["profiles"] = sum(len(sp.profiles) for rp in resources for sp in rp.scope_profiles)
        if self.verbosity == "basic":
            tally = self.tallies.setdefault(signal, _Tally())
            tally.requests += 1
            for key, count in summary.items():
                tally.counts[key] = tally.counts.get(key, 0) + count
            if tally.written_at is None or self.clock() - tally.written_at >= BASIC_INTERVAL:
                self._write(signal, tally)
            return
        if not self.sampler.allow(signal.value):
            return
        summary = {"signal": signal.value, **summary}
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
    transport = DebugTransport(id_, config.effective_verbosity(id_.type), sampler, clock)
    return Exporter(id_, transport, telemetry, timeout=0)
