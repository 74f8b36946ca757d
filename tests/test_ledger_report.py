"""Cost reports: the numbers are the rows' exact sums, the shape holds when empty, renderings parse."""

from __future__ import annotations

import csv
import io
import json
import random
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from relay.ledger.facts import TOKEN_TYPES, SpanFacts
from relay.ledger.periods import NS
from relay.ledger.report import DIMENSIONS, build_report, render
from relay.ledger.store import LedgerStore, Pending, Row

HOUR = 3600 * NS
START = 1795755600 * NS       # 2026-11-27T05:00:00Z
END = START + 24 * HOUR

MODELS = {"openai": ["gpt-4o", "gpt-4o-mini"], "anthropic": ["claude-sonnet-4", "claude-haiku"],
          "google": ["gemini-2.5-pro"]}


def random_facts(rng: random.Random, count: int) -> list[SpanFacts]:
    out = []
    for _ in range(count):
        provider = rng.choice(sorted(MODELS))
        tokens = {kind: rng.choice([0, rng.randrange(1, 5000)]) for kind in TOKEN_TYPES}
        if rng.random() < 0.05:
            tokens = dict.fromkeys(TOKEN_TYPES, 0)   # a call that used no tokens (or did not say)
        out.append(SpanFacts(
            # Some before and after the range, which the report must leave out.
            time_ns=START + rng.randrange(-3 * HOUR, 27 * HOUR),
            team=rng.choice(["alpha", "beta", "gamma", "delta"]),
            project=rng.choice(["chat", "search", "agents", "unknown"]),
            model=rng.choice(MODELS[provider]),
            provider=provider,
            customer=rng.choice(["", "acme", "globex", "initech"]),
            # Multiples of 1/1024: every sum of them is exact, so any order gives the same number.
            cost=rng.randrange(0, 4096) / 1024,
            tokens=tokens,
            error=rng.random() < 0.1,
        ))
    return out


def expected_report(facts: list[SpanFacts], by: str) -> dict:
    """The report computed straight from the facts, without the ledger's code."""
    inside = [f for f in facts if START <= f.time_ns < END]
    cost = {dim: defaultdict(float) for dim in DIMENSIONS}
    tokens = {dim: defaultdict(int) for dim in DIMENSIONS}
    counts = defaultdict(lambda: [0, 0])
    pair_cost, pair_tokens = defaultdict(float), defaultdict(int)

    def name(f, dim):
        return getattr(f, dim) or "(none)"   # a call without a customer id

    for f in inside:
        used = sum(f.tokens.values())
        for dim in DIMENSIONS:
            cost[dim][name(f, dim)] += f.cost
            tokens[dim][name(f, dim)] += used
        counts[name(f, by)][0] += 1
        counts[name(f, by)][1] += f.error
        pair_cost[f.provider, f.model] += f.cost
        pair_tokens[f.provider, f.model] += used
    total_cost, total_tokens = sum(f.cost for f in inside), sum(sum(f.tokens.values()) for f in inside)

    def top(dim):
        return [[name, value] for name, value in sorted(cost[dim].items(), key=lambda kv: (-kv[1], kv[0]))][:10]

    providers: dict = {}
    for (provider, model), value in pair_cost.items():
        used = pair_tokens[provider, model]
        providers.setdefault(provider, {})[model] = {
            "total_cost": value, "total_tokens": used, "cost_per_token": value / used if used else 0.0}
    return {
        "summary": {"total_cost_usd": total_cost, "total_tokens": total_tokens,
                    "average_cost_per_token": total_cost / total_tokens,
                    "total_requests": len(inside), "total_errors": sum(f.error for f in inside)},
        "breakdown": {f"by_{dim}": dict(cost[dim]) for dim in DIMENSIONS},
        "top_consumers": {"teams": top("team"), "projects": top("project"), "models": top("model")},
        "cost_per_token_by_model": {m: cost["model"][m] / tokens["model"][m]
                                    for m in cost["model"] if tokens["model"][m]},
        "provider_comparison": providers,
        "by": by,
        "rows": [{by: name, "cost_usd": value, "tokens": tokens[by][name], "requests": counts[name][0],
                  "errors": counts[name][1]}
                 for name, value in sorted(cost[by].items(), key=lambda kv: (-kv[1], kv[0]))],
    }


@pytest.fixture
def ledger(tmp_path):
    """A ledger file holding 2000 random calls (in 3 flushes), and the calls."""
    rng = random.Random(20261127)
    facts = random_facts(rng, 2000)
    store = LedgerStore(tmp_path / "ledger.sqlite")
    store.open()
    pending = Pending()
    for index, fact in enumerate(facts):
        pending.add(fact)
        if index % 700 == 0:
            store.write(pending.take())
    store.write(pending.take())
    yield store, facts
    store.close()


@pytest.mark.parametrize("by", [None, *DIMENSIONS])
def test_the_numbers_are_the_sums_of_the_calls(ledger, by):
    store, facts = ledger
    report = build_report(store.rows(START, END), START, END, by)
    expected = expected_report(facts, by or "team")
    assert report["period"] == {"start": "2026-11-27T05:00:00+00:00", "end": "2026-11-28T05:00:00+00:00"}
    for key, value in expected.items():
        assert report[key] == value, key
    assert set(report) == set(expected) | {"period"}
    # Rows outside the range given are not counted, whatever the caller passed.
    assert build_report(store.rows(0, END + 10 * HOUR), START, END, by) == report


def test_sums_do_not_depend_on_the_order_of_the_rows():
    rng = random.Random(7)
    rows = [Row(START + rng.randrange(24) * HOUR, rng.choice("abc"), "p", rng.choice("xyz"), "q", "",
                rng.random() / 10, {"input": rng.randrange(100)}, 1, 0) for _ in range(500)]
    report = build_report(rows, START, END, "model")
    for _ in range(5):
        rng.shuffle(rows)
        assert build_report(rows, START, END, "model") == report


def test_an_empty_range_has_the_whole_shape_with_zeros():
    report = build_report([], START, START + HOUR, tz="Europe/Berlin")
    assert report == {
        "period": {"start": "2026-11-27T06:00:00+01:00", "end": "2026-11-27T07:00:00+01:00"},
        "summary": {"total_cost_usd": 0.0, "total_tokens": 0, "average_cost_per_token": 0.0,
                    "total_requests": 0, "total_errors": 0},
        "breakdown": {"by_team": {}, "by_project": {}, "by_model": {}, "by_provider": {}, "by_customer": {}},
        "top_consumers": {"teams": [], "projects": [], "models": []},
        "cost_per_token_by_model": {},
        "provider_comparison": {},
        "by": "team",
        "rows": [],
    }
    assert render(report, "csv") == "team,cost_usd,tokens,requests,errors\n"
    assert json.loads(render(report, "json")) == report
    assert render(report, "table").endswith("(no spend recorded in this period)\n")


def test_top_consumers_are_the_ten_largest_ties_by_name():
    rows = [Row(START, f"team-{n:02d}", "p", "m", "q", "", float(n % 12), {}, 1, 0) for n in range(15)]
    report = build_report(rows, START, END)
    assert report["top_consumers"]["teams"] == [
        ["team-11", 11.0], ["team-10", 10.0], ["team-09", 9.0], ["team-08", 8.0], ["team-07", 7.0],
        ["team-06", 6.0], ["team-05", 5.0], ["team-04", 4.0], ["team-03", 3.0], ["team-02", 2.0]]   # team-14 too
    assert len(report["rows"]) == 15 and report["rows"][-2:] == [
        {"team": "team-00", "cost_usd": 0.0, "tokens": 0, "requests": 1, "errors": 0},
        {"team": "team-12", "cost_usd": 0.0, "tokens": 0, "requests": 1, "errors": 0}]
    assert report["cost_per_token_by_model"] == {}   # no tokens: no ratio rather than a division by zero
    assert report["provider_comparison"]["q"]["m"]["cost_per_token"] == 0.0


def tokens(input=0, output=0, cache_read=0, cache_write=0, reasoning=0) -> dict:
    return {"input": input, "output": output, "cache_read": cache_read, "cache_write": cache_write,
            "reasoning": reasoning}


SMALL = [
    Row(START, "alpha", "chat", "gpt-4o", "openai", "acme", 1.25, tokens(1000, 500, 200), 10, 1),
    Row(START, "beta", "search", "claude-sonnet-4", "anthropic", "", 0.5, tokens(2000, 100, cache_write=300), 4, 0),
    Row(START + HOUR, "alpha", "chat", "gpt-4o-mini", "openai", "", 0.0625, tokens(3000, 1000, reasoning=250), 20, 2),
]

TABLE_BY_MODEL = """\
Cost report 2026-11-27T06:00:00+01:00 to 2026-11-28T06:00:00+01:00

Total cost (USD)                  1.812500
Total tokens                          8350
Average cost per 1M tokens (USD)  217.0659
Requests                                34
Errors                                   3

model            cost_usd  share  tokens  requests  errors
---------------  --------  -----  ------  --------  ------
gpt-4o           1.250000  69.0%    1700        10       1
claude-sonnet-4  0.500000  27.6%    2400         4       0
gpt-4o-mini      0.062500   3.4%    4250        20       2
"""

TABLE_BY_CUSTOMER = """\
Cost report 2026-11-27T05:00:00+00:00 to 2026-11-28T05:00:00+00:00

Total cost (USD)                  1.812500
Total tokens                          8350
Average cost per 1M tokens (USD)  217.0659
Requests                                34
Errors                                   3

customer  cost_usd  share  tokens  requests  errors
--------  --------  -----  ------  --------  ------
acme      1.250000  69.0%    1700        10       1
(none)    0.562500  31.0%    6650        24       2
"""


def test_the_table_rendering():
    assert render(build_report(SMALL, START, END, "model", tz="Europe/Berlin"), "table") == TABLE_BY_MODEL
    assert render(build_report(SMALL, START, END, "customer"), "table") == TABLE_BY_CUSTOMER


def test_csv_parses_into_one_line_per_group_under_the_dimensions_name():
    for by, groups in ((None, ["alpha", "beta"]), ("provider", ["openai", "anthropic"]),
                       ("customer", ["acme", "(none)"])):
        report = build_report(SMALL, START, END, by)
        lines = list(csv.DictReader(io.StringIO(render(report, "csv"))))
        assert [line[by or "team"] for line in lines] == groups
        for line, row in zip(lines, report["rows"]):
            assert float(line["cost_usd"]) == row["cost_usd"]            # written exactly
            assert (int(line["tokens"]), int(line["requests"]), int(line["errors"])) == (
                row["tokens"], row["requests"], row["errors"])
    lines = list(csv.reader(io.StringIO(render(build_report(SMALL, START, END), "csv"))))
    assert lines == [["team", "cost_usd", "tokens", "requests", "errors"],
                     ["alpha", "1.3125", "5950", "30", "3"], ["beta", "0.5", "2400", "4", "0"]]
    # A name with a comma or a quote stays one field.
    odd = [Row(START, 'team "a", the first', "p", "m", "q", "", 1.0, {}, 1, 0)]
    [_, line] = list(csv.reader(io.StringIO(render(build_report(odd, START, END), "csv"))))
    assert line[0] == 'team "a", the first'


def test_json_is_the_report_indented_with_sorted_keys():
    report = build_report(SMALL, START, END, "project")
    text = render(report, "json")
    assert json.loads(text) == report
    assert text.startswith('{\n  "breakdown": {\n    "by_customer": {\n      "(none)": 0.5625,')
    assert text == render(json.loads(text), "json")


def test_bounds_may_be_aware_datetimes():
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 11, 27, 6, tzinfo=berlin)           # = START
    report = build_report(SMALL, start, start + timedelta(hours=1), "model")
    assert report["period"] == {"start": "2026-11-27T06:00:00+01:00", "end": "2026-11-27T07:00:00+01:00"}
    assert [row["model"] for row in report["rows"]] == ["gpt-4o", "claude-sonnet-4"]   # the next hour left out
    assert report == build_report(SMALL, START, START + HOUR, "model", tz="Europe/Berlin")
    with pytest.raises(ValueError, match="no time zone"):
        build_report(SMALL, datetime(2026, 11, 27), END)


def test_unknown_dimension_or_format_is_an_error():
    with pytest.raises(ValueError, match="cannot group by"):
        build_report(SMALL, START, END, "region")
    with pytest.raises(ValueError, match="unknown report format"):
        render(build_report(SMALL, START, END), "xml")


def test_a_call_without_a_customer_id_is_the_customer_none_in_every_rendering():
    report = build_report(SMALL, START, END, "customer")
    assert [row["customer"] for row in report["rows"]] == ["acme", "(none)"]
    assert report["breakdown"]["by_customer"] == {"(none)": 0.5625, "acme": 1.25}
    assert "" not in json.loads(render(report, "json"))["breakdown"]["by_customer"]
    [_, _, none] = list(csv.reader(io.StringIO(render(report, "csv"))))
    assert none[0] == "(none)"
    assert "\n(none)    0.562500" in render(report, "table")
    # Only the report names it: the other dimensions keep their own values.
    assert set(report["breakdown"]["by_team"]) == {"alpha", "beta"}
