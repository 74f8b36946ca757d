"""Configuration of the ``genops`` processor."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from relay.errors import Problem
from relay.pricing import PricingConfig
from relay.genai.keys import ATTRIBUTION

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
class Config:
    # Documented defaults: spend nobody claimed is still visible, as "unassigned".
    defaults: dict[str, str] = field(default_factory=lambda: {"team": "unassigned", "project": "unassigned"})
    rules: list[RuleConfig] = field(default_factory=list)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    # Whether input/output token counts already include cache and reasoning tokens
    # (the current GenAI convention) or exclude them (some providers' native usage).
    token_counting: Literal["inclusive", "exclusive"] = "inclusive"

    def validate(self) -> list[Problem]:
        return [Problem(("defaults", key), f"unknown field (valid: {FIELDS})")
                for key in self.defaults if key not in ATTRIBUTION]
