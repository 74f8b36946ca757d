"""A cost report as asked for: its range, read from the ledger file, and what to say without a ledger.

Shared by the ``genops_ledger`` extension (``GET /api/v1/cost/report``), ``genops-relay
report`` and the service, which answers the report path with how to turn a ledger on
when no ``genops_ledger`` extension is configured.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

from aiohttp import web

from relay.ledger.periods import zone as zone_of
from relay.ledger.report import build_report
from relay.ledger.store import LedgerStore

REPORT_PATH = "/api/v1/cost/report"
CHECK_PATH = "/api/v1/budgets/check"
# What a genops_ledger extension serves on the telemetry port.
LEDGER_PATHS = (REPORT_PATH, CHECK_PATH)
README_SECTION = "Budgets, the cost ledger and cost reports"
HOW_TO_ENABLE = (
    "to keep one, add the genops_ledger extension (extensions: genops_ledger: {directory: DIR, "
    "create_directory: true}, and genops_ledger in service.extensions) and the genops_budget processor "
    "after genops in the traces pipeline (processors: genops_budget: {ledger: genops_ledger}), as the "
    f'built-in default config does; see "{README_SECTION}" in the README'
)
NOT_CONFIGURED = "no cost ledger is configured: " + HOW_TO_ENABLE


async def not_configured(request: web.Request) -> web.Response:
    """A ledger path on a relay without a ledger: a 404 in the API's JSON error shape, saying how."""
    return web.json_response({"error": NOT_CONFIGURED}, status=404)


def with_report_hint(routes: list) -> list:
    """``routes`` (method, path, handler), plus the how-to answer on the report and budget check paths
    where no ledger serves them."""
    served = {path for _, path, _ in routes}
    return [*routes, *(("GET", path, not_configured) for path in LEDGER_PATHS if path not in served)]


def parse_range(start: str, end: str, tz: str, now: datetime.datetime | None = None
                ) -> tuple[datetime.datetime, datetime.datetime]:
    """``from`` and ``to`` as dates (YYYY-MM-DD, ``to`` inclusive) or ISO times, in the ledger's zone.

    Without ``to``: up to the end of today; without ``from``: from the first day of the month
    ``to`` falls in. So neither gives this month so far.
    """
    zone = zone_of(tz)

    def midnight(day: datetime.date) -> datetime.datetime:
        return datetime.datetime.combine(day, datetime.time(), zone)

    def one(text: str, name: str, end_of_day: bool) -> datetime.datetime:
        try:
            if len(text) == 10:
                moment = midnight(datetime.date.fromisoformat(text))
                return moment + datetime.timedelta(days=1) if end_of_day else moment
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f'{name} "{text}" is not a date (YYYY-MM-DD) or an ISO 8601 time') from None
        return moment if moment.tzinfo else moment.replace(tzinfo=zone)

    if end:
        last = one(end, "to", True)
    else:
        today = (now or datetime.datetime.now(datetime.timezone.utc)).astimezone(zone).date()
        last = midnight(today) + datetime.timedelta(days=1)
    if start:
        first = one(start, "from", False)
    else:
        # The month of the last instant in the range, not of its exclusive end.
        first = midnight((last - datetime.timedelta(microseconds=1)).astimezone(zone).date().replace(day=1))
    if last <= first:
        raise ValueError("to must not be before from")
    return first, last


def read_report(path: Path, start: datetime.datetime, end: datetime.datetime, by: str | None) -> dict:
    """The report of the ledger file at ``path``; OSError saying so where there is none."""
    store = LedgerStore.open_readonly(path)
    try:
        rows = store.rows(int(start.timestamp() * 10**9), int(end.timestamp() * 10**9))
    finally:
        store.close()
    return build_report(rows, start, end, by)


async def report_from_file(path: Path, start: datetime.datetime, end: datetime.datetime, by: str | None) -> dict:
    return await asyncio.to_thread(read_report, path, start, end, by)


def recorded_zone(path: Path) -> str:
    """The time zone the ledger at ``path`` was written in (UTC where it does not say)."""
    store = LedgerStore.open_readonly(path)
    store.close()
    return store.tz
