"""The ``pricing:`` configuration section.

Example (rates are USD per million tokens, ``request`` is USD per call)::

    pricing:
      openrouter_models_file: openrouter-models.json   # saved GET /api/v1/models
      overrides:
        # A negotiated 20% discount on GPT-4o for 2025; list price outside it.
        - model: openai/gpt-4o
          input: 2.0
          output: 8.0
          cache_read: 1.0
          effective_from: 2025-01-01
          effective_until: 2026-01-01
        - model: 'regex:^anthropic/claude-3\\.5-sonnet(:beta)?$'
          input: 2.7
          output: 13.5
      fallback: {input: 5.0, output: 15.0}

``overrides`` is a list, not a mapping, so that one model can have several
entries with different date ranges and regex entries keep their written order.
``model`` is an exact name (compared case-insensitively with every normalised
form of the span's model, see ``names``) or ``regex:PATTERN`` (``re.search``
over those forms: the name as sent, then lower-case ones; anchor it with ``^``
and ``$`` so that ``openai/gpt-4o`` does not also catch ``openai/gpt-4o-mini``). Exact entries
are tried before regex entries, each in list order; the first entry in force at the span's
start wins.
``effective_from``/``effective_until`` take YYYY-MM-DD (00:00 UTC) or RFC 3339
and form the half-open range [from, until); either end may be left open.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from relay.config.decode import Duration
from relay.errors import Problem
from relay.pricing.times import EARLIEST, LATEST, describe, parse_instant

REGEX_PREFIX = "regex:"
RATE_KEYS = ("input", "output", "cache_read", "cache_write", "reasoning", "request")
HOURLY = Duration(3600)


def _rate_problems(owner, keys) -> list[Problem]:
    problems = []
    for key in keys:
        value = getattr(owner, key)
        if value is not None and not (math.isfinite(value) and value >= 0):
            problems.append(Problem((key,), "must be a finite number >= 0 (USD per million tokens, "
                                           "per call for request)"))
    return problems


@dataclass
class OverrideConfig:
    model: str
    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None
    request: float = 0.0
    # Any, not str: YAML reads an unquoted 2025-01-01 as a date.
    effective_from: Any = None
    effective_until: Any = None

    @property
    def is_regex(self) -> bool:
        return self.model.startswith(REGEX_PREFIX)

    def period(self) -> tuple[int, int]:
        """[since, until) in unix nanos; raises ValueError on a bad date."""
        since = EARLIEST if self.effective_from in (None, "") else parse_instant(self.effective_from)
        until = LATEST if self.effective_until in (None, "") else parse_instant(self.effective_until)
        return since, until

    def validate(self) -> list[Problem]:
        problems = []
        if not self.model.strip() or self.model.strip() == REGEX_PREFIX:
            problems.append(Problem(("model",), f'must be a model name or "{REGEX_PREFIX}PATTERN"'))
        elif self.is_regex:
            try:
                re.compile(self.model[len(REGEX_PREFIX):])
            except re.error as error:
                problems.append(Problem(("model",), f"invalid regex: {error}"))
        problems += _rate_problems(self, RATE_KEYS)
        for key in ("effective_from", "effective_until"):
            value = getattr(self, key)
            if value not in (None, ""):
                try:
                    parse_instant(value)
                except ValueError as error:
                    problems.append(Problem((key,), str(error)))
        if not problems:
            since, until = self.period()
            if since >= until:
                problems.append(Problem(("effective_until",), "must be later than effective_from"))
        return problems


@dataclass
class FallbackConfig:
    """Rates (USD per million tokens) for models no source knows; such costs say source "fallback"."""

    input: float
    output: float

    def validate(self) -> list[Problem]:
        return _rate_problems(self, ("input", "output"))


@dataclass
class PricingConfig:
    openrouter_models_file: str = ""
    overrides: list[OverrideConfig] = field(default_factory=list)
    fallback: FallbackConfig | None = None
    # Off by default: the relay makes no network request unless told to.
    auto_update: bool = False
    auto_update_interval: Duration = HOURLY
    currency: str = "USD"
    # Distinct (candidate models, provider) keys kept; bounds memory under a flood of names.
    cache_size: int = 4096
    # The models file as validate() read it, so that building the price book reads it once.
    models: dict | None = field(default=None, init=False, repr=False, compare=False)

    def validate(self) -> list[Problem]:
        problems = []
        if self.currency.strip().upper() != "USD":
            problems.append(Problem(("currency",), f'"{self.currency}": only USD is supported until '
                                                   "conversion exists"))
        if self.auto_update_interval < 60:
            problems.append(Problem(("auto_update_interval",), "must be at least 1m"))
        if self.cache_size < 1:
            problems.append(Problem(("cache_size",), "must be at least 1"))
        problems += _overlaps(self.overrides)
        if self.openrouter_models_file:
            from relay.pricing.models_file import load

            answers, file_problems = load(self.openrouter_models_file)
            problems += [Problem(("openrouter_models_file",), message) for message in file_problems]
            self.models = None if file_problems else answers
        return problems


def _overlaps(overrides: list[OverrideConfig]) -> list[Problem]:
    # Two entries for one key in force at once would make the written order decide
    # the price silently; a negotiated rate deserves an explicit error instead.
    seen: dict[str, list[tuple[int, int, int]]] = {}
    problems = []
    for index, override in enumerate(overrides):
        if override.validate():
            continue
        key = override.model if override.is_regex else override.model.strip().lower()
        since, until = override.period()
        for other, other_since, other_until in seen.get(key, []):
            if since < other_until and other_since < until:
                message = (f'"{override.model}" is in force from {describe(max(since, other_since))} '
                           f"in both overrides {other} and {index}")
                problems.append(Problem(("overrides", str(index)), message))
        seen.setdefault(key, []).append((index, since, until))
    return problems
