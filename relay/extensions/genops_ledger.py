"""The ``genops_ledger`` extension: the cost ledger, the budgets and the cost report.

The ``genops_budget`` processor feeds it; the ``genops_metrics`` connector
(``budgets_from``) exposes its budget gauges; ``genops-relay report`` and
``GET /api/v1/cost/report`` on the telemetry port read it (``from`` and ``to``
default to this month so far). ``GET /api/v1/budgets/check?team=…`` answers a
gateway whether a call may still be made (relay.ledger.check), behind the
token of ``budget_check.auth`` when set. The built-in default config keeps one in the
relay's data directory (relay.datadir).

The ledger file holds this relay's share only: with many replicas (a
DaemonSet), fleet-wide budgets are evaluated in Prometheus from the budget
gauges summed over replicas (deploy/prometheus/budget-rules.yaml). The shared
PostgreSQL store (relay.ledger.postgres) is configured under ``postgres:``, but
``backend: postgres`` is refused until the running ledger books into it.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiohttp import web

from relay.component import Settings
from relay.config.decode import Duration
from relay.errors import Problem
from relay.ledger.budgets import BudgetConfig, duplicate_names
from relay.ledger.check import BudgetCheck, BudgetCheckConfig
from relay.ledger.postgres import PostgresConfig
from relay.ledger.query import CHECK_PATH, REPORT_PATH, parse_range, report_from_file
from relay.ledger.report import render
from relay.ledger.runtime import FILE_NAME, Ledger
from relay.ledger.webhook import Webhook, WebhookConfig
from relay.storage.directory import check_directory

TYPE = "genops_ledger"
SIGNALS = ()
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"directory": "/var/lib/genops-relay/ledger", "create_directory": True}
BY = ("team", "project", "model", "provider", "customer")


@dataclass
class Config:
    directory: str = "/var/lib/genops-relay/ledger"
    create_directory: bool = False
    granularity: Literal["hour", "day"] = "hour"
    timezone: str = "UTC"
    # What a kill -9 may lose: the spend recorded since the last flush.
    flush_interval: Duration = Duration(10.0)
    retention_days: int = 400
    fsync: bool = False
    budgets: list[BudgetConfig] = field(default_factory=list)
    webhook: WebhookConfig | None = None
    # GET /api/v1/budgets/check: answers cached for at most flush_interval.
    budget_check: BudgetCheckConfig | None = None
    # Where the ledger's rows live: this relay's SQLite file, or a PostgreSQL database the fleet shares.
    backend: Literal["sqlite", "postgres"] = "sqlite"
    postgres: PostgresConfig | None = None
    # This relay's name in the shared ledger: unique in the fleet, stable across restarts
    # ("" = the host name and a hash of directory).
    replica_id: str = ""

    def validate(self) -> list[Problem]:
        problems = []
        if not self.directory:
            problems.append(Problem(("directory",), "must name a directory"))
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(Problem(("timezone",), f'"{self.timezone}" is not an IANA time zone (e.g. UTC, '
                                                   "Europe/Berlin)"))
        if self.flush_interval <= 0:
            problems.append(Problem(("flush_interval",), "must be positive"))
        if self.retention_days < 1:
            problems.append(Problem(("retention_days",), "must be at least 1"))
        if self.backend == "postgres" and self.postgres is None:
            problems.append(Problem(("postgres",), "is required with backend: postgres (dsn, dsn_file or dsn_env)"))
        if self.backend == "postgres":
            # Refused rather than booked into the SQLite file unasked: the store
            # (relay.ledger.postgres) exists, the running ledger does not use it yet.
            problems.append(Problem(("backend",), "postgres is not available yet: this relay books into sqlite "
                                                  "only (remove backend, or set it to sqlite)"))
        return problems + [problem.under("budgets") for problem in duplicate_names(self.budgets)]

    def extension_references(self) -> list[tuple[tuple[str, ...], str, str]]:
        """The budget check's authenticator, for the loader to check against service::extensions."""
        if self.budget_check is None or self.budget_check.auth is None:
            return []
        return [self.budget_check.auth.reference("budget_check")]


class GenopsLedger:
    def __init__(self, id_, config: Config, telemetry, host=None):
        self.id = id_
        self.config = config
        webhook = Webhook(str(id_), config.webhook, telemetry) if config.webhook else None
        self.ledger = Ledger(id_, config, telemetry, webhook=webhook)
        self.host = host
        self.check = BudgetCheck(self.ledger, config.budget_check, ("extensions", str(id_), "budget_check"))
        if host is not None:
            host.routes.append(("GET", REPORT_PATH, self._report))
            host.routes.append(("GET", CHECK_PATH, self.check.handle))

    async def start(self) -> None:
        check_directory(Path(self.config.directory), self.config.create_directory, component=str(self.id))
        await self.ledger.start()
        self.check.start(self.host)

    async def shutdown(self) -> None:
        await self.ledger.shutdown()

    async def _report(self, request: web.Request) -> web.Response:
        try:
            start, end = parse_range(request.query.get("from", ""), request.query.get("to", ""),
                                     self.config.timezone)
            by = request.query.get("by") or None
            if by is not None and by not in BY:
                raise ValueError(f'by must be one of {", ".join(BY)}')
            fmt = request.query.get("format", "json")
            if fmt not in ("json", "csv", "table"):
                raise ValueError("format must be json, csv or table")
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        await self.ledger.flush()  # the report includes what is not written yet
        report = await report_from_file(self.ledger.path, start, end, by)
        if fmt == "json":
            return web.json_response(report)
        return web.Response(text=render(report, fmt),
                            content_type="text/csv" if fmt == "csv" else "text/plain")


def ledger_path(config: Config) -> Path:
    return Path(config.directory) / FILE_NAME


def create(settings: Settings, config: Config) -> GenopsLedger:
    id_, telemetry, host = settings.id, settings.telemetry, settings.host
    return GenopsLedger(id_, config, telemetry, host)
