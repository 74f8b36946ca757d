"""The ``genops_budget`` processor: records every LLM span's spend in the ``genops_ledger``.

Put it after ``genops`` (which prices the spans). On the way it logs an
``openrouter_provider_failover`` event for a call OpenRouter routed to another
provider than predicted (or that used a fallback), and, with
``budget_attributes: true``, stamps ``genops.budget.*`` on the spans of a team
that has crossed a budget threshold in the current period.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from relay import attrs
from relay.component import Settings
from relay.errors import Problem
from relay.ledger.events import FAILOVER_EVENT
from relay.ledger.read import facts_of, failover_of, wanted
from relay.processors.helper import FunctionProcessor
from relay.signals import Signal
from relay.telemetry import component_logger

TYPE = "genops_budget"
SIGNALS = (Signal.TRACES,)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"ledger": "genops_ledger"}
# The extensions EXAMPLE names.
EXAMPLE_NEEDS = {"genops_ledger": {"directory": "/var/lib/genops-relay/ledger", "create_directory": True}}
# How long a team's budget standing is reused for the attributes, rather than looked up per span.
STANDING_TTL_NS = 10**9


@dataclass
class Config:
    ledger: str = "genops_ledger"
    failover_events: bool = True
    budget_attributes: bool = False

    def validate(self) -> list[Problem]:
        return [] if self.ledger else [Problem(("ledger",), "must name a genops_ledger extension")]

    def extension_references(self) -> list[tuple[tuple[str, ...], str, str]]:
        return [(("ledger",), self.ledger, "genops_ledger")]


def create(settings: Settings, config: Config, next_consumer):
    id_, telemetry, host = settings.id, settings.telemetry, settings.host
    ledger = host.extension(config.ledger).ledger
    return FunctionProcessor(id_, process_function(id_, config, ledger, telemetry), next_consumer,
                             mutates=config.budget_attributes)


def process_function(id_, config: Config, ledger, telemetry, clock=time.time_ns):
    log = component_logger(id_)
    failovers = telemetry.counter("otelcol_genops_provider_failovers",
                                  "LLM calls routed to another provider than predicted", ["model", "reason"])
    standing: dict[str, tuple[int, object]] = {}

    def team_standing(team: str, now: int):
        cached = standing.get(team)
        if cached is None or now - cached[0] > STANDING_TTL_NS:
            cached = standing[team] = (now, ledger.over_threshold(team, now))
        return cached[1]

    def process(request):
        now = clock()
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found = wanted(span)
                    facts = facts_of(span, found, now)
                    if facts is None:
                        continue
                    ledger.record(facts)
                    if config.failover_events and (moved := failover_of(found)) is not None:
                        failovers.labels(moved.model, moved.reason).inc()
                        log.warning(FAILOVER_EVENT, fields={
                            "original_provider": moved.original_provider,
                            "fallback_provider": moved.fallback_provider, "model": moved.model,
                            "reason": moved.reason, "team": facts.team,
                            "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex()})
                    if config.budget_attributes and (over := team_standing(facts.team, now)) is not None:
                        # Which budget is cached; what it has consumed is read fresh.
                        stamp(span, over, ledger.spent(over.budget, over.period))
        return request

    return process


def stamp(span, status, spent: float) -> None:
    attrs.put(span.attributes, "genops.budget.name", status.budget.name)
    attrs.put(span.attributes, "genops.budget.allocated", float(status.limit))
    attrs.put(span.attributes, "genops.budget.consumed", round(spent, 6))
    attrs.put(span.attributes, "genops.budget.remaining", round(max(0.0, status.limit - spent), 6))
    attrs.put(span.attributes, "genops.budget.utilization_percent", round(spent / status.limit * 100, 2))
