"""Budgets: a spend limit per day and/or month for a team (or one project or customer of it).

A budget alerts at each of its thresholds (fractions of the limit) once per
period. Which thresholds were already reached is decided from the spend after
a call and the set already fired, not from the spend before it: a relay that
restarts, or a budget added mid-month, fires the thresholds already passed,
once each, and a single expensive call that jumps from 40% to 120% fires all
four defaults together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from relay.errors import Problem
from relay.ledger.facts import SpanFacts

DEFAULT_THRESHOLDS = (0.5, 0.8, 0.95, 1.0)
MAX_THRESHOLD = 10.0


@dataclass
class BudgetConfig:
    # Defaults to team[/project][/customer]; names the budget in alerts, metrics and the file.
    name: str = ""
    # Required: a budget without a team would have nothing to match.
    team: str = ""
    project: str = ""       # "" = every project of the team
    customer: str = ""      # "" = every customer
    daily_usd: float = 0.0  # 0 = no daily limit
    monthly_usd: float = 0.0
    thresholds: list[float] = field(default_factory=lambda: list(DEFAULT_THRESHOLDS))

    def __post_init__(self) -> None:
        if not self.name:
            self.name = "/".join(part for part in (self.team, self.project, self.customer) if part)

    def validate(self) -> list[Problem]:
        """Every problem, each at its key; sorts the thresholds when they are valid."""
        problems = []
        if not self.team:
            problems.append(Problem(("team",), "required: the team whose spend this budget limits"))
        for key in ("daily_usd", "monthly_usd"):
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0:
                problems.append(Problem((key,), f"must be a finite amount of USD, not negative (got {value})"))
        if not (self.daily_usd > 0 or self.monthly_usd > 0):
            problems.append(Problem(("daily_usd",), "set daily_usd or monthly_usd (or both) to a positive amount"))
        seen = set()
        for index, threshold in enumerate(self.thresholds):
            if not 0 < threshold <= MAX_THRESHOLD:
                problems.append(Problem(("thresholds", str(index)),
                                        f"must be a fraction of the limit in (0, {MAX_THRESHOLD:g}] "
                                        f"(1.0 = the whole budget), got {threshold}"))
            elif threshold in seen:
                problems.append(Problem(("thresholds", str(index)), f"{threshold} is listed twice"))
            seen.add(threshold)
        if not problems:
            self.thresholds = sorted(self.thresholds)
        return problems

    def matches(self, facts: SpanFacts) -> bool:
        return (facts.team == self.team and (not self.project or facts.project == self.project)
                and (not self.customer or facts.customer == self.customer))

    def limits(self) -> list[tuple[str, float]]:
        """(period kind, limit in USD) for each period this budget limits."""
        out = []
        if self.daily_usd > 0:
            out.append(("daily", float(self.daily_usd)))
        if self.monthly_usd > 0:
            out.append(("monthly", float(self.monthly_usd)))
        return out


def duplicate_names(budgets: list[BudgetConfig]) -> list[Problem]:
    """A problem (at ``<index>::name``) for each budget whose name an earlier one has."""
    problems, seen = [], set()
    for index, budget in enumerate(budgets):
        if budget.name in seen:
            problems.append(Problem((str(index), "name"), f'another budget is named "{budget.name}" '
                                                         f"(set name to tell them apart)"))
        seen.add(budget.name)
    return problems


def crossed(before: float, after: float, limit: float, thresholds, fired: set) -> list[float]:
    """The thresholds reached at spend ``after`` (after / limit >= t) not yet in ``fired``, ascending.

    ``before`` is not consulted: see the module's note on restarts and jumps.
    """
    if not limit > 0:
        return []
    used = after / limit
    return [threshold for threshold in sorted(set(thresholds)) if used >= threshold and threshold not in fired]
