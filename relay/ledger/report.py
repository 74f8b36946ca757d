"""Cost reports from ledger rows: one dict shape, rendered as JSON, CSV or a text table.

The shape extends the reference cost report (period, summary, breakdown,
top_consumers) with errors, customers, cost per token by model, a provider
comparison and rows grouped by one dimension. Sums of costs use ``math.fsum``,
so a report is the exact (correctly rounded) sum of its rows whatever their
order. Token types are disjoint, so a row's tokens are the sum over types. An
empty range gives the same shape with zeros, never an error.

Calls without a customer id are the customer ``(none)`` in every rendering (JSON too,
whose breakdown is keyed by name and so could not hold a null). The CSV's first column
is named for the dimension its rows are grouped by.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from datetime import datetime

from relay.ledger.periods import NS, ns_of, zone
from relay.ledger.store import Row

DIMENSIONS = ("team", "project", "model", "provider", "customer")
TOP = 10
# The name of an empty dimension value (a call without a customer id).
NONE = "(none)"
_COLUMNS = ("cost_usd", "tokens", "requests", "errors")


class _Sums:
    __slots__ = ("costs", "errors", "requests", "tokens")

    def __init__(self):
        self.costs: list[float] = []
        self.tokens = 0
        self.requests = 0
        self.errors = 0

    def add(self, row: Row, tokens: int) -> None:
        self.costs.append(row.cost)
        self.tokens += tokens
        self.requests += row.requests
        self.errors += row.errors

    @property
    def cost(self) -> float:
        return math.fsum(self.costs)


def _per_token(cost: float, tokens: int) -> float:
    return cost / tokens if tokens > 0 else 0.0


def _ranked(costs: dict[str, float]) -> list[list]:
    # Ties by name, so that equal spenders always come out in the same order.
    return [[name, cost] for name, cost in sorted(costs.items(), key=lambda item: (-item[1], item[0]))[:TOP]]


def _bound(value: int | datetime, tz: str) -> tuple[int, str]:
    """(nanoseconds, ISO 8601 text) of a bound given in nanoseconds or as an aware datetime."""
    if isinstance(value, datetime):
        return ns_of(value), value.isoformat()
    return value, datetime.fromtimestamp(value // NS, zone(tz)).isoformat()


def build_report(rows: Iterable[Row], start: int | datetime, end: int | datetime, by: str | None = None, *,
                 tz: str = "UTC") -> dict:
    """The report of the rows whose buckets start in [start, end).

    ``start`` and ``end`` are nanoseconds or aware datetimes; the period shows a datetime
    as given and nanoseconds in ``tz``. ``by`` (one of DIMENSIONS) selects the dimension
    of ``rows`` in the report; without it they are by team.
    """
    (start, start_text), (end, end_text) = _bound(start, tz), _bound(end, tz)
    group_by = by or "team"
    if group_by not in DIMENSIONS:
        raise ValueError(f'cannot group by "{by}" (choose one of: {", ".join(DIMENSIONS)})')
    total = _Sums()
    dims: dict[str, dict[str, _Sums]] = {dim: {} for dim in DIMENSIONS}
    by_provider_model: dict[str, dict[str, _Sums]] = {}
    for row in rows:
        if not start <= row.bucket_start_ns < end:
            continue
        tokens = sum(row.tokens.values())
        total.add(row, tokens)
        for dim in DIMENSIONS:
            name = getattr(row, dim) or NONE
            sums = dims[dim].get(name)
            if sums is None:
                sums = dims[dim][name] = _Sums()
            sums.add(row, tokens)
        models = by_provider_model.setdefault(row.provider, {})
        models.setdefault(row.model, _Sums()).add(row, tokens)
    breakdown = {dim: {name: sums.cost for name, sums in sorted(groups.items())} for dim, groups in dims.items()}
    total_cost = total.cost
    grouped = sorted(dims[group_by].items(), key=lambda item: (-item[1].cost, item[0]))
    return {
        "period": {"start": start_text, "end": end_text},
        "summary": {
            "total_cost_usd": total_cost,
            "total_tokens": total.tokens,
            "average_cost_per_token": _per_token(total_cost, total.tokens),
            "total_requests": total.requests,
            "total_errors": total.errors,
        },
        "breakdown": {f"by_{dim}": costs for dim, costs in breakdown.items()},
        "top_consumers": {
            "teams": _ranked(breakdown["team"]),
            "projects": _ranked(breakdown["project"]),
            "models": _ranked(breakdown["model"]),
        },
        "cost_per_token_by_model": {name: _per_token(sums.cost, sums.tokens)
                                    for name, sums in sorted(dims["model"].items()) if sums.tokens > 0},
        "provider_comparison": {
            provider: {model: {"total_cost": sums.cost, "total_tokens": sums.tokens,
                               "cost_per_token": _per_token(sums.cost, sums.tokens)}
                       for model, sums in sorted(models.items())}
            for provider, models in sorted(by_provider_model.items())
        },
        "by": group_by,
        "rows": [{group_by: name, "cost_usd": sums.cost, "tokens": sums.tokens, "requests": sums.requests,
                  "errors": sums.errors} for name, sums in grouped],
    }


def render(report: dict, fmt: str) -> str:
    """The report as "json" (indented, keys sorted), "csv" or "table"; each ends with a newline."""
    if fmt == "json":
        return json.dumps(report, indent=2, sort_keys=True) + "\n"
    if fmt == "csv":
        return _csv(report)
    if fmt == "table":
        return _table(report)
    raise ValueError(f'unknown report format "{fmt}" (choose table, json or csv)')


def _csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    by = report["by"]
    writer.writerow((by,) + _COLUMNS)
    for row in report["rows"]:
        writer.writerow([row[by]] + [row[column] for column in _COLUMNS])
    return out.getvalue()


def _table(report: dict) -> str:
    summary = report["summary"]
    lines = [f"Cost report {report['period']['start']} to {report['period']['end']}", ""]
    facts = [
        ("Total cost (USD)", f"{summary['total_cost_usd']:.6f}"),
        ("Total tokens", str(summary["total_tokens"])),
        ("Average cost per 1M tokens (USD)", f"{summary['average_cost_per_token'] * 1e6:.4f}"),
        ("Requests", str(summary["total_requests"])),
        ("Errors", str(summary["total_errors"])),
    ]
    label_width = max(len(label) for label, _ in facts)
    value_width = max(len(value) for _, value in facts)
    lines += [f"{label:<{label_width}}  {value:>{value_width}}" for label, value in facts]
    lines.append("")
    by = report["by"]
    total = summary["total_cost_usd"]
    header = (by, "cost_usd", "share", "tokens", "requests", "errors")
    body = [(row[by], f"{row['cost_usd']:.6f}",
             f"{100 * row['cost_usd'] / total:.1f}%" if total > 0 else "-",
             str(row["tokens"]), str(row["requests"]), str(row["errors"])) for row in report["rows"]]
    widths = [max(len(cells[i]) for cells in [header, *body]) for i in range(len(header))]

    def line(cells) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        return "  ".join([first] + [f"{cell:>{width}}" for cell, width in zip(cells[1:], widths[1:])]).rstrip()

    lines.append(line(header))
    lines.append("  ".join("-" * width for width in widths))
    lines += [line(cells) for cells in body]
    if not body:
        lines.append("(no spend recorded in this period)")
    return "\n".join(lines) + "\n"
