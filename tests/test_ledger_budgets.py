"""Budgets: which thresholds a call crosses, which spans a budget counts, what configs are refused."""

from __future__ import annotations

import pytest

from relay.config.decode import decode
from relay.errors import Problem
from relay.ledger.budgets import BudgetConfig, crossed, duplicate_names
from relay.ledger.facts import SpanFacts

DEFAULT = [0.5, 0.8, 0.95, 1.0]


@pytest.mark.parametrize("before, after, limit, fired, expected", [
    (0.0, 0.0, 100.0, set(), []),
    (0.0, 49.99, 100.0, set(), []),
    (49.0, 50.0, 100.0, set(), [0.5]),                       # reaching a threshold exactly crosses it
    (50.0, 60.0, 100.0, {0.5}, []),                          # already fired this period
    (79.0, 81.0, 100.0, {0.5}, [0.8]),
    (40.0, 120.0, 100.0, set(), [0.5, 0.8, 0.95, 1.0]),      # one jump crosses all four, ascending
    (40.0, 120.0, 100.0, {0.8}, [0.5, 0.95, 1.0]),
    (120.0, 130.0, 100.0, {0.5, 0.8, 0.95, 1.0}, []),        # each fires once
    (0.0, 96.0, 100.0, set(), [0.5, 0.8, 0.95]),             # a restart or new budget: passed ones fire once
    (0.0, 4.0, 5.0, set(), [0.5, 0.8]),
    (0.0, 1e9, 0.0, set(), []),                              # no limit, nothing to cross
])
def test_crossed(before, after, limit, fired, expected):
    assert crossed(before, after, limit, DEFAULT, fired) == expected


def test_crossed_takes_thresholds_in_any_order_and_past_the_limit():
    assert crossed(0, 250, 100, [2.0, 1.0, 3.0, 0.5], set()) == [0.5, 1.0, 2.0]
    assert crossed(0, 300, 100, (3.0, 1.0), {1.0}) == [3.0]


def facts(team="alpha", project="chat", customer="acme") -> SpanFacts:
    return SpanFacts(0, team, project, "m", "p", customer, 1.0, {}, False)


def test_a_budget_counts_its_team_and_narrows_to_project_and_customer():
    team = BudgetConfig(team="alpha", daily_usd=10)
    assert team.matches(facts()) and team.matches(facts(project="other", customer=""))
    assert not team.matches(facts(team="beta"))
    project = BudgetConfig(team="alpha", project="chat", monthly_usd=10)
    assert project.matches(facts()) and not project.matches(facts(project="search"))
    customer = BudgetConfig(team="alpha", customer="acme", daily_usd=1)
    assert customer.matches(facts(project="x")) and not customer.matches(facts(customer="globex"))
    assert not BudgetConfig(team="alpha", project="chat", customer="acme").matches(facts(customer=""))


def test_names_and_limits():
    assert BudgetConfig(team="alpha").name == "alpha"
    assert BudgetConfig(team="alpha", project="chat").name == "alpha/chat"
    assert BudgetConfig(team="alpha", customer="acme").name == "alpha/acme"
    assert BudgetConfig(team="alpha", project="chat", customer="acme").name == "alpha/chat/acme"
    assert BudgetConfig(name="ml-daily", team="alpha").name == "ml-daily"
    assert BudgetConfig(team="a", daily_usd=5).limits() == [("daily", 5.0)]
    assert BudgetConfig(team="a", monthly_usd=100).limits() == [("monthly", 100.0)]
    assert BudgetConfig(team="a", daily_usd=5, monthly_usd=100).limits() == [("daily", 5.0), ("monthly", 100.0)]
    assert BudgetConfig(team="a", daily_usd=5).thresholds == DEFAULT


@pytest.mark.parametrize("raw, problems", [
    ({"team": "alpha", "daily_usd": 10}, []),
    ({"team": "alpha", "monthly_usd": 0.5, "thresholds": [10, 0.25]}, []),
    ({"daily_usd": 10}, ["team: required: the team whose spend this budget limits"]),
    ({"team": "", "daily_usd": 10}, ["team: required: the team whose spend this budget limits"]),
    ({"team": "alpha"}, ["daily_usd: set daily_usd or monthly_usd (or both) to a positive amount"]),
    ({"team": "alpha", "daily_usd": 0, "monthly_usd": 0},
     ["daily_usd: set daily_usd or monthly_usd (or both) to a positive amount"]),
    ({"team": "alpha", "daily_usd": -1, "monthly_usd": 5},
     ["daily_usd: must be a finite amount of USD, not negative (got -1.0)"]),
    ({"team": "alpha", "monthly_usd": float("inf")},
     ["monthly_usd: must be a finite amount of USD, not negative (got inf)"]),
    ({"team": "alpha", "daily_usd": 1, "thresholds": [0, 0.5, 10.5]},
     ["thresholds::0: must be a fraction of the limit in (0, 10] (1.0 = the whole budget), got 0.0",
      "thresholds::2: must be a fraction of the limit in (0, 10] (1.0 = the whole budget), got 10.5"]),
    ({"team": "alpha", "daily_usd": 1, "thresholds": [0.5, 0.8, 0.5]}, ["thresholds::2: 0.5 is listed twice"]),
    ({"team": "alpha", "daily_usd": 1, "thresholds": ["half"]}, ["thresholds::0: expected a number, got string"]),
    ({"team": "alpha", "weekly_usd": 1}, None),   # an unknown key, reported by decode with the valid ones
])
def test_validation(raw, problems):
    config, found = decode(BudgetConfig, raw, ())
    if problems is None:
        assert [p.path for p in found] == [("weekly_usd",)] and "unknown key" in found[0].message
        return
    assert [str(p) for p in found] == problems
    if not problems:
        assert config.thresholds == sorted(config.thresholds)


def test_validation_sorts_the_thresholds():
    config, problems = decode(BudgetConfig, {"team": "a", "daily_usd": 1, "thresholds": [1.0, 0.5, 2, 0.75]}, ())
    assert problems == [] and config.thresholds == [0.5, 0.75, 1.0, 2.0]


def test_two_budgets_with_one_name_are_refused():
    budgets = [BudgetConfig(team="alpha", daily_usd=1), BudgetConfig(team="alpha", monthly_usd=9),
               BudgetConfig(team="alpha", project="chat", daily_usd=1)]
    assert duplicate_names(budgets) == [
        Problem(("1", "name"), 'another budget is named "alpha" (set name to tell them apart)')]
    budgets[1].name = "alpha-monthly"
    assert duplicate_names(budgets) == []
