"""The running ledger: spend recorded as spans pass, flushed to SQLite, budgets checked on the way.

``record`` is on the data path and never waits on the disk: spend collects in
memory (``Pending``) and a background task writes it every ``flush_interval``
in one transaction, so a kill -9 loses at most that interval's spend. The
budgets' running totals per period live in memory too, seeded from the file
(plus what is not yet written) the first time a period is seen; a threshold
that fires is written down at once, so a restart neither fires it again nor
forgets it.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from relay import tasks
from relay.ledger.budgets import BudgetConfig, crossed
from relay.ledger.events import BUDGET_EVENT
from relay.ledger.facts import SpanFacts
from relay.ledger.periods import Period, period
from relay.ledger.store import LedgerStore, Pending
from relay.status import describe
from relay.telemetry import component_logger

FILE_NAME = "ledger.sqlite"


@dataclass
class BudgetStatus:
    budget: BudgetConfig
    period: Period
    limit: float
    spent: float

    @property
    def utilization(self) -> float:
        return self.spent / self.limit if self.limit else 0.0


def _scope(budget: BudgetConfig) -> dict:
    return {"team": budget.team, "project": budget.project or None, "customer": budget.customer or None}


class Ledger:
    def __init__(self, id_, config, telemetry, *, webhook=None, clock=time.time_ns):
        self.id = id_
        self.config = config
        self.path = Path(config.directory) / FILE_NAME
        self.tz = config.timezone
        self.budgets: list[BudgetConfig] = list(config.budgets)
        self.webhook = webhook
        self.clock = clock
        self.log = component_logger(id_)
        self.store = LedgerStore(self.path, granularity=config.granularity, tz=self.tz, fsync=config.fsync)
        self.pending = Pending(config.granularity, self.tz)
        self._unwritten: list[_Batch] = []    # taken from pending, not yet known to be committed
        self._flushing = asyncio.Lock()
        self._spent: dict[tuple[str, str], float] = {}
        self._fired: dict[tuple[str, str], set[float]] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self._task: asyncio.Task | None = None
        self._writes: set[asyncio.Future] = set()
        name = str(id_)
        self._crossings = telemetry.counter(
            "otelcol_genops_budget_threshold_crossings", "Budget thresholds crossed (each once per period)",
            ["ledger", "budget", "period", "threshold"])
        self._flushed = telemetry.counter(
            "otelcol_genops_ledger_flushed_rows", "Ledger rows written to disk", ["ledger"]).labels(name)
        self._flush_failures = telemetry.counter(
            "otelcol_genops_ledger_flush_failures", "Ledger flushes that failed (kept for the next one)",
            ["ledger"]).labels(name)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def on_writer(self, fn, *args):
        """``fn`` on the ledger's one writer thread, after every write already queued there."""
        return await self._run(fn, *args)

    def unwritten(self) -> list:
        """The batches taken from pending whose commit is not yet known."""
        return list(self._unwritten)

    async def start(self) -> None:
        await self._run(self.store.open)
        for budget, key, threshold in await self._run(self.store.fired):
            self._fired.setdefault((budget, key), set()).add(threshold)
        retention_ns = self.config.retention_days * 86400 * 10**9
        pruned = await self._run(self.store.prune, self.clock() - retention_ns)
        self.log.info("cost ledger open", fields={"file": str(self.path), "budgets": len(self.budgets),
                                                  "pruned_rows": pruned})
        if self.webhook is not None:
            await self.webhook.start()
        self._task = tasks.every(float(self.config.flush_interval), self.flush, f"{self.id} flush")

    async def shutdown(self) -> None:
        await tasks.stop(self._task)
        self._task = None
        await self.flush()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self.webhook is not None:
            await self.webhook.shutdown()
        await self._run(self.store.close)
        self._thread.shutdown(wait=False)

    async def flush(self) -> None:
        """Write what collected since the last flush, in one transaction; on failure keep it."""
        async with self._flushing:  # a report's flush and the timer's must not write a batch twice
            taken = self.pending.take()
            if taken:
                self._unwritten.append(_Batch(taken))
            while self._unwritten:
                batch = self._unwritten[0]
                try:
                    await self._run(self._write, batch)
                except Exception as error:  # noqa: BLE001 - kept, counted, logged; retried next flush
                    self._flush_failures.inc()
                    self.log.error("could not write the cost ledger; kept for the next flush",
                                   fields={"rows": len(batch.rows), "error": describe(error)})
                    return
                self._unwritten.pop(0)
                self._flushed.inc(len(batch.rows))

    def _write(self, batch: "_Batch") -> None:
        # On the writer's thread, so that _sum_written (same thread) sees either the rows in the
        # file or the batch still uncommitted, never both.
        self.store.write(batch.rows)
        batch.committed = True

    # --- the data path ------------------------------------------------------------------

    def record(self, facts: SpanFacts) -> None:
        for budget in self.budgets:
            if budget.matches(facts):
                for kind, limit in budget.limits():
                    self._add_to_budget(budget, period(kind, facts.time_ns, self.tz), limit, facts.cost)
        self.pending.add(facts)

    def _add_to_budget(self, budget: BudgetConfig, when: Period, limit: float, cost: float) -> None:
        before = self.spent(budget, when)
        after = before + cost
        self._spent[(budget.name, when.key)] = after
        fired = self._fired.setdefault((budget.name, when.key), set())
        for threshold in crossed(before, after, limit, budget.thresholds, fired):
            fired.add(threshold)
            self._fire(budget, when, limit, threshold, after)

    def spent(self, budget: BudgetConfig, when: Period) -> float:
        """The budget's spend in the period: the file, plus what is not written yet."""
        key = (budget.name, when.key)
        found = self._spent.get(key)
        if found is None:
            scope = _scope(budget)
            # Rare (once per budget and period): the data path waits for the writer's thread
            # rather than count a batch twice or not at all while it is being committed.
            written = self._thread.submit(self._sum_written, when, scope).result()
            found = written + self.pending.sum_cost(when.start_ns, when.end_ns, **scope)
            self._spent[key] = found
        return found

    def _sum_written(self, when: Period, scope: dict) -> float:
        total = self.store.sum_cost(when.start_ns, when.end_ns, **scope)
        for batch in list(self._unwritten):
            if not batch.committed:
                total += _sum_rows(batch.rows, when, scope)
        return total

    def _fire(self, budget: BudgetConfig, when: Period, limit: float, threshold: float, spent: float) -> None:
        write = asyncio.ensure_future(self._run(self.store.mark_fired, budget.name, when.key, threshold))
        self._writes.add(write)
        write.add_done_callback(self._written)
        event = {
            "event": BUDGET_EVENT, "team": budget.team, "project": budget.project, "customer": budget.customer,
            "budget": budget.name, "period": when.kind, "period_key": when.key,
            f"{when.kind}_cost_usd": round(spent, 6), "cost_usd": round(spent, 6), "budget_usd": limit,
            "threshold": threshold, "threshold_usd": round(limit * threshold, 6),
            "utilization": round(spent / limit, 6),
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        self._crossings.labels(str(self.id), budget.name, when.kind, f"{threshold:g}").inc()
        self.log.warning(BUDGET_EVENT, fields={k: v for k, v in event.items() if k != "event"})
        if self.webhook is not None:
            self.webhook.notify(event)

    def _written(self, future: asyncio.Future) -> None:
        self._writes.discard(future)
        if not future.cancelled() and future.exception() is not None:
            self.log.error("could not record a fired budget threshold", fields={"error": str(future.exception())})

    # --- what others read ---------------------------------------------------------------

    def status(self, now_ns: int | None = None) -> list[BudgetStatus]:
        """Every budget's current periods (by the wall clock, in the ledger's time zone)."""
        now_ns = self.clock() if now_ns is None else now_ns
        out = []
        for budget in self.budgets:
            for kind, limit in budget.limits():
                when = period(kind, now_ns, self.tz)
                out.append(BudgetStatus(budget, when, limit, self.spent(budget, when)))
        return out

    def over_threshold(self, team: str, now_ns: int) -> BudgetStatus | None:
        """The most used budget of ``team`` that crossed a threshold this period, if any."""
        worst = None
        for status in self.status(now_ns):
            if status.budget.team != team or not self._fired.get((status.budget.name, status.period.key)):
                continue
            if worst is None or status.utilization > worst.utilization:
                worst = status
        return worst


@dataclass
class _Batch:
    rows: dict
    committed: bool = False


def _sum_rows(rows: dict, when: Period, scope: dict) -> float:
    total = 0.0
    for key, values in rows.items():
        bucket, team, project, _model, _provider, customer = key
        if not when.start_ns <= bucket < when.end_ns or team != scope["team"]:
            continue
        if scope["project"] is not None and project != scope["project"]:
            continue
        if scope["customer"] is not None and customer != scope["customer"]:
            continue
        total += values.cost
    return total
