"""Configuration of the ``genops`` processor."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from relay.config.decode import Duration
from relay.errors import Problem
from relay.genai import bounds, numbers
from relay.genai.keys import ATTRIBUTION
from relay.pricing import PricingConfig

FIELDS = ", ".join(ATTRIBUTION)


@dataclass
class RuleConfig:
    """Either map an attribute's value to attribution (``attribute`` + ``value``/``pattern`` + ``set``)
    or take one attribution field from the request's client metadata (``from_context`` + ``target``)."""

    attribute: str = ""
    value: str = ""
    pattern: str = ""
    set: dict[str, str] = field(default_factory=dict)
    from_context: str = ""
    target: str = ""

    def validate(self) -> list[Problem]:
        problems = []
        if bool(self.attribute) == bool(self.from_context):
            return [Problem((), "a rule needs exactly one of attribute or from_context")]
        if self.attribute:
            if bool(self.value) == bool(self.pattern):
                problems.append(Problem(("attribute",), "needs exactly one of value (exact) or pattern (regex)"))
            if self.pattern:
                try:
                    re.compile(self.pattern)
                except re.error as error:
                    problems.append(Problem(("pattern",), f"invalid regex: {error}"))
            if not self.set:
                problems.append(Problem(("set",), f"must set at least one of: {FIELDS}"))
            problems += [Problem(("set", key), f"unknown field (valid: {FIELDS})")
                         for key in self.set if key not in ATTRIBUTION]
            if self.target:
                problems.append(Problem(("target",), "only goes with from_context"))
        else:
            if not (self.from_context.startswith("metadata.") or self.from_context == "client.address"):
                problems.append(Problem(("from_context",), 'must be "metadata.<key>" or "client.address"'))
            if self.target not in ATTRIBUTION:
                problems.append(Problem(("target",), f"must be one of: {FIELDS}"))
            if self.set or self.value or self.pattern:
                problems.append(Problem((), "a from_context rule takes only from_context and target"))
        return problems


@dataclass
class DuplicatesConfig:
    """The window in which a second span with the same ``gen_ai.response.id`` is the same call.

    A call is remembered for 5 to 10 minutes and among the last 10,000 to 20,000 calls,
    whichever ends first (see ``calls``). The native window's memory is fixed by ``max_calls``
    (1 MiB for the default); the Python one takes about 150 bytes per call held.
    The count bound is kept small because the window is touched for every LLM span: at
    more than about 30 LLM calls a second it, not the time, decides; raise it there."""

    window: Duration = Duration(600.0)
    max_calls: int = 20_000

    def validate(self) -> list[Problem]:
        problems = []
        if self.window < 0:
            problems.append(Problem(("window",), "must not be negative (0 turns duplicate detection off)"))
        if self.max_calls < 0:
            problems.append(Problem(("max_calls",), "must not be negative (0 turns duplicate detection off)"))
        return problems


@dataclass
class MetricsConfig:
    """What ``genops`` writes on the data points of a metrics pipeline.

    Each field becomes a label wherever the metric is exported, so only these are written
    (default: team and project); every value is cut to ``label_max_length``."""

    attributes: list[str] = field(default_factory=lambda: ["team", "project"])

    def validate(self) -> list[Problem]:
        return [Problem(("attributes", str(i)), f"unknown field (valid: {FIELDS})")
                for i, name in enumerate(self.attributes) if name not in ATTRIBUTION]


@dataclass
class Config:
    # Documented defaults: spend nobody claimed is still visible, as "unassigned".
    defaults: dict[str, str] = field(default_factory=lambda: {"team": "unassigned", "project": "unassigned"})
    rules: list[RuleConfig] = field(default_factory=list)
    # OpenRouter API key name (Broadcast's trace.metadata.openrouter.api_key_name) -> attribution.
    api_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    # Whether input/output token counts already include cache and reasoning tokens
    # (the current GenAI convention) or exclude them (some providers' native usage).
    token_counting: Literal["inclusive", "exclusive"] = "inclusive"
    duplicates: DuplicatesConfig = field(default_factory=DuplicatesConfig)
    # Past these a span's usage or reported cost is not believed (see relay.genai.numbers).
    max_tokens_per_span: int = numbers.MAX_TOKENS
    max_cost_per_span: float = numbers.MAX_COST_USD
    # Bytes of a value that becomes a metric label or cache key (model, team, ...).
    label_max_length: int = bounds.DEFAULT_LIMIT
    # "minimal" writes only what cost accounting needs downstream (see MINIMAL), for
    # backends billed by the byte; "full" writes every genops key.
    attributes: Literal["full", "minimal"] = "full"
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def validate(self) -> list[Problem]:
        problems = [Problem(("defaults", key), f"unknown field (valid: {FIELDS})")
                    for key in self.defaults if key not in ATTRIBUTION]
        for name, fields in self.api_keys.items():
            if not fields:
                problems.append(Problem(("api_keys", name), f"must set at least one of: {FIELDS}"))
            problems += [Problem(("api_keys", name, key), f"unknown field (valid: {FIELDS})")
                         for key in fields if key not in ATTRIBUTION]
        if self.max_tokens_per_span < 1:
            problems.append(Problem(("max_tokens_per_span",), "must be at least 1"))
        if not self.max_cost_per_span > 0:
            problems.append(Problem(("max_cost_per_span",), "must be positive"))
        if self.label_max_length < 32:
            problems.append(Problem(("label_max_length",), "must be at least 32 bytes"))
        return problems
