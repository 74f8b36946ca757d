"""The budget check a gateway asks before an LLM call: ``GET /api/v1/budgets/check?team=…``.

The relay is not in the LLM request path, so a gateway (a LiteLLM pre-call hook,
an Envoy external authoriser, the app itself) that wants a hard limit asks
here. Of the configured budgets that apply to the call (its team, and the
budget's project and customer when the budget narrows to one), the one with
the least USD remaining in its current period decides; ``allowed`` is false
once its spend has reached its limit.

Spend is what the ledger's store holds plus what this relay has recorded and
not yet written (``spend: "stored+unflushed"``). ``totals`` asks the store for
sums only, through ``sum_cost``, so a store kept elsewhere (a shared database)
answers with the fleet's totals by the same call.

Answers are cached per query for at most the ledger's ``flush_interval``: a
call booked since may be missing from an answer for that long
(``max_staleness_s``). A cached answer is served without touching the store;
a miss sums on the ledger's writer thread, off the event loop, and concurrent
misses of one query share one read.
"""

from __future__ import annotations

import asyncio
import datetime
import math
from dataclasses import dataclass

from aiohttp import web

from relay.ledger.budgets import BudgetConfig
from relay.ledger.periods import NS, Period, period
from relay.net.auth import AuthConfig, authenticator_for
from relay.telemetry import Throttled

PARAMETERS = ("team", "project", "customer")
SPEND = "stored+unflushed"
NO_BUDGET = "no budget applies to this team, project and customer"
# Queries are the caller's to choose; the cache must not grow with them without end.
MAX_CACHED = 10_000


@dataclass
class BudgetCheckConfig:
    """``budget_check:`` under ``genops_ledger``."""

    # ``{authenticator: <bearertokenauth id>}``: refuse checks without its token.
    auth: AuthConfig | None = None

    def validate(self) -> list:
        return []


@dataclass(frozen=True)
class Query:
    team: str
    project: str = ""     # "" = the call names none
    customer: str = ""


@dataclass(frozen=True)
class Scope:
    """One sum to ask a store for: a budget's spend over one of its periods."""

    budget: BudgetConfig
    period: Period
    limit: float

    def sum_args(self) -> tuple[tuple[int, int], dict]:
        budget = self.budget
        return ((self.period.start_ns, self.period.end_ns),
                {"team": budget.team, "project": budget.project or None, "customer": budget.customer or None})


def parse_query(params) -> Query:
    """The query of a check; ValueError saying what is wrong with it."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ValueError(f'unknown parameter {", ".join(unknown)} (use {", ".join(PARAMETERS)})')
    for name in PARAMETERS:
        if len(params.getall(name, [])) > 1:
            raise ValueError(f"{name} is given more than once")
    team = params.get("team", "")
    if not team:
        raise ValueError("team is required: the team whose call is to be checked (team=…)")
    return Query(team, params.get("project", ""), params.get("customer", ""))


def applies(budget: BudgetConfig, query: Query) -> bool:
    """Whether a call of ``query``'s scope would be counted by ``budget`` (as ``BudgetConfig.matches``)."""
    return (budget.team == query.team and (not budget.project or budget.project == query.project)
            and (not budget.customer or budget.customer == query.customer))


def scopes(budgets: list[BudgetConfig], query: Query, now_ns: int, tz: str) -> list[Scope]:
    """Each applicable budget's current periods, in the ledger's time zone."""
    return [Scope(budget, period(kind, now_ns, tz), limit)
            for budget in budgets if applies(budget, query) for kind, limit in budget.limits()]


def totals(store, wanted: list[Scope]) -> list[float]:
    """The stored spend of each scope: blocking, one ``sum_cost`` per scope.

    Any store with ``sum_cost(start_ns, end_ns, *, team, project, customer)`` answers it; the
    SQLite ledger with this relay's spend, a shared one with the fleet's.
    """
    out = []
    for scope in wanted:
        (start, end), narrowing = scope.sum_args()
        out.append(store.sum_cost(start, end, **narrowing))
    return out


def decide(query: Query, wanted: list[Scope], spent: list[float]) -> dict:
    """The answer: the scope with the least remaining decides (ties: the most used, then by name)."""
    answer = {"team": query.team, "project": query.project or None, "customer": query.customer or None}
    if not wanted:
        return {"allowed": True, **answer, "spent_usd": None, "limit_usd": None, "remaining_usd": None,
                "utilization": None, "period": None, "period_key": None, "budget": None, "reason": NO_BUDGET}

    def tightness(item):
        scope, used = item
        return (scope.limit - used, -(used / scope.limit), scope.budget.name, scope.period.kind)

    scope, used = min(zip(wanted, spent), key=tightness)
    budget = scope.budget
    return {
        "allowed": used < scope.limit, **answer,
        "spent_usd": used, "limit_usd": scope.limit, "remaining_usd": max(0.0, scope.limit - used),
        "utilization": used / scope.limit, "period": scope.period.kind, "period_key": scope.period.key,
        "budget": {"name": budget.name, "team": budget.team, "project": budget.project or None,
                   "customer": budget.customer or None, "daily_usd": budget.daily_usd or None,
                   "monthly_usd": budget.monthly_usd or None},
        "budgets_applied": len({s.budget.name for s in wanted}),
    }


class BudgetCheck:
    """The check's handler over a running ``relay.ledger.runtime.Ledger``, with its cache."""

    def __init__(self, ledger, config: BudgetCheckConfig | None, where: tuple[str, ...] = ()):
        self.ledger = ledger
        self.config = config or BudgetCheckConfig()
        self.where = where
        self.ttl_ns = int(float(ledger.config.flush_interval) * NS)
        self.authenticator = None
        self._started = False
        self._cache: dict[Query, tuple[int, dict]] = {}
        self._reading: dict[Query, asyncio.Future] = {}
        self._refusals = Throttled(ledger.log, 10.0)
        self.reads = 0   # misses that read the store, for tests and the benchmark

    def start(self, host) -> None:
        """Look up the authenticator (the extensions all exist by now); until then checks get 503."""
        if self.config.auth is not None:
            self.authenticator = authenticator_for(host, self.config.auth, *self.where)
        self._started = True

    async def handle(self, request: web.Request) -> web.Response:
        if not self._started or self.ledger.store.db is None:
            return web.json_response({"error": "the cost ledger is not open yet; retry shortly"}, status=503,
                                     headers={"Retry-After": "1"})
        if self.authenticator is not None and not await self._allows(request):
            scheme = getattr(self.authenticator, "scheme", "") or "Bearer"
            return web.json_response({"error": "missing or invalid credentials"}, status=401,
                                     headers={"WWW-Authenticate": scheme})
        try:
            query = parse_query(request.query)
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(await self.answer(query))

    async def _allows(self, request: web.Request) -> bool:
        check = getattr(self.authenticator, "authenticate_async", None)
        allowed = await check(request.headers) if check is not None else self.authenticator.authenticate(
            request.headers)
        if not allowed:
            # Never the header's value: a mistyped token is still close to the real one.
            self._refusals.warning("refused a budget check without valid credentials",
                                   {"peer": request.remote or ""})
        return allowed

    async def answer(self, query: Query) -> dict:
        now = self.ledger.clock()
        cached = self._cache.get(query)
        if cached is not None and cached[0] <= now < cached[0] + self.ttl_ns:
            return cached[1]
        reading = self._reading.get(query)
        if reading is None:
            reading = self._reading[query] = asyncio.ensure_future(self._read(query, now))
            reading.add_done_callback(lambda _: self._reading.pop(query, None))
        return await asyncio.shield(reading)

    async def _read(self, query: Query, now_ns: int) -> dict:
        ledger = self.ledger
        wanted = scopes(ledger.budgets, query, now_ns, ledger.tz)
        spent = []
        if wanted:
            # Taken together, with no await between: a batch taken from pending after this is in
            # the pending sums, and its write queues behind the read on the one writer thread.
            unflushed = [ledger.pending.sum_cost(s.period.start_ns, s.period.end_ns, **s.sum_args()[1])
                         for s in wanted]
            batches = ledger.unwritten()
            self.reads += 1
            stored = await ledger.on_writer(_stored_and_uncommitted, ledger.store, wanted, batches)
            spent = [math.fsum(pair) for pair in zip(stored, unflushed)]
        answer = decide(query, wanted, spent)
        answer.update({"spend": SPEND, "max_staleness_s": self.ttl_ns / NS,
                       "as_of": datetime.datetime.fromtimestamp(now_ns / NS, datetime.timezone.utc)
                       .isoformat(timespec="milliseconds")})
        self._remember(query, now_ns, answer)
        return answer

    def _remember(self, query: Query, now_ns: int, answer: dict) -> None:
        if len(self._cache) >= MAX_CACHED:
            self._cache = {q: c for q, c in self._cache.items() if c[0] <= now_ns < c[0] + self.ttl_ns}
            while len(self._cache) >= MAX_CACHED:
                self._cache.pop(next(iter(self._cache)))
        self._cache[query] = (now_ns, answer)


def _stored_and_uncommitted(store, wanted: list[Scope], batches: list) -> list[float]:
    # On the writer's thread: a batch is either committed (in the store) or counted here.
    stored = totals(store, wanted)
    for batch in batches:
        if batch.committed:
            continue
        for index, scope in enumerate(wanted):
            stored[index] += _sum_rows(batch.rows, scope)
    return stored


def _sum_rows(rows: dict, scope: Scope) -> float:
    (start, end), narrowing = scope.sum_args()
    total = 0.0
    for (bucket, team, project, _model, _provider, customer), values in rows.items():
        if not start <= bucket < end or team != narrowing["team"]:
            continue
        if narrowing["project"] is not None and project != narrowing["project"]:
            continue
        if narrowing["customer"] is not None and customer != narrowing["customer"]:
            continue
        total += values.cost
    return total
