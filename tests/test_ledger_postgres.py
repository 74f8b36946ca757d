"""The PostgreSQL ledger store against a real server (tests/postgres.py): migrations, exactly-once
flushes, fleet sums, thresholds fired once, and a DSN that never shows."""

from __future__ import annotations

import asyncio
import logging
import math
import random

import asyncpg
import pytest

from relay.config.decode import decode
from relay.extensions import genops_ledger
from relay.ledger.budgets import BudgetConfig
from relay.ledger.check import Scope, totals
from relay.ledger.facts import SpanFacts
from relay.ledger.periods import period
from relay.ledger.pg_schema import LATEST, VERSION_TABLE, migrate
from relay.ledger.postgres import (
    BlockingPostgresStore,
    Flusher,
    LedgerDatabaseError,
    PostgresConfig,
    PostgresLedgerStore,
    redact,
    with_ssl,
)
from relay.ledger.store import Pending
from tests.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures

HOUR = 3600 * 10**9
T0 = 1_767_225_600 * 10**9   # 2026-01-01T00:00:00Z
TEAMS = ("search", "support", "billing")


def _store(dsn: str, **kwargs) -> PostgresLedgerStore:
    return PostgresLedgerStore(PostgresConfig(dsn=dsn, pool_size=2), **kwargs)


def _facts(rng: random.Random, team: str, when: int) -> SpanFacts:
    return SpanFacts(time_ns=when, team=team, project=rng.choice(("a", "b")), model=rng.choice(("gpt-4o", "o3")),
                     provider="openai", customer=rng.choice(("", "acme", "globex")),
                     cost=rng.uniform(0.0001, 0.5), tokens={"input": rng.randint(1, 900), "output": rng.randint(1, 90)},
                     error=rng.random() < 0.1)


# --- config -----------------------------------------------------------------------------------------


def _ledger_config(raw):
    return decode(genops_ledger.Config, {"directory": "ledger", **raw})


def test_sqlite_stays_the_default_backend():
    config, problems = _ledger_config({})
    assert problems == []
    assert config.backend == "sqlite" and config.postgres is None


def test_postgres_config_is_validated_in_place():
    _config, problems = _ledger_config({"postgres": {
        "dsn": "postgresql://u:pw@db/x", "dsn_env": "LEDGER_DSN", "pool_size": 0, "sslmode": "sometimes"}})
    assert {p.path for p in problems} == {("postgres",), ("postgres", "pool_size"), ("postgres", "sslmode")}
    _config, problems = _ledger_config({"backend": "mysql"})
    assert [p.path for p in problems] == [("backend",)]
    config, problems = _ledger_config({"postgres": {"dsn_env": "LEDGER_DSN"}})
    assert problems == [] and config.postgres.pool_size == 4


def test_backend_postgres_is_refused_until_the_running_ledger_uses_it():
    # Not booked into the SQLite file silently: the config says where spend goes.
    _config, problems = _ledger_config({"backend": "postgres"})
    assert {p.path for p in problems} == {("postgres",), ("backend",)}
    _config, problems = _ledger_config({"backend": "postgres", "postgres": {"dsn_env": "LEDGER_DSN"}})
    assert [p.path for p in problems] == [("backend",)]
    assert "not available yet" in problems[0].message


def test_ssl_settings_pass_through_to_the_driver():
    config = PostgresConfig(dsn="postgresql://u@db/x?application_name=relay&sslmode=prefer", sslmode="verify-full",
                            sslrootcert="ca.pem", sslcert="client.pem", sslkey="client.key")
    dsn = config.resolve_dsn()
    assert "sslmode=verify-full" in dsn and "sslmode=prefer" not in dsn
    assert "sslrootcert=ca.pem" in dsn and "sslcert=client.pem" in dsn and "sslkey=client.key" in dsn
    assert "application_name=relay" in dsn
    assert with_ssl("postgresql://u@db/x", PostgresConfig()) == "postgresql://u@db/x"


def test_dsn_from_a_file_or_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "dsn"
    path.write_text("postgresql://u:secret@db/x\n", encoding="utf-8")
    assert PostgresConfig(dsn_file=str(path)).resolve_dsn() == "postgresql://u:secret@db/x"
    monkeypatch.setenv("LEDGER_DSN", "postgresql://u:other@db/y")
    assert PostgresConfig(dsn_env="LEDGER_DSN").resolve_dsn() == "postgresql://u:other@db/y"
    path.write_text("host=db password=secret\n", encoding="utf-8")
    with pytest.raises(ValueError) as raised:
        PostgresConfig(dsn_file=str(path)).resolve_dsn()
    assert "secret" not in str(raised.value) and "dsn_file" in str(raised.value)
    monkeypatch.delenv("LEDGER_DSN")
    with pytest.raises(ValueError, match="LEDGER_DSN"):
        PostgresConfig(dsn_env="LEDGER_DSN").resolve_dsn()


def test_the_dsn_is_never_shown_by_config():
    config = PostgresConfig(dsn="user=u password=hunter2hunter2")
    assert "hunter2" not in repr(config)
    assert all("hunter2" not in str(problem) for problem in config.validate())
    assert config.validate()   # not a URL: refused, without quoting it
    text = "could not connect to postgresql://relay:hunter2@db:5432/x (password=hunter2)"
    assert "hunter2" not in redact(text)
    assert "hunter2" not in redact("auth failed for hunter2", "postgresql://relay:hunter2@db/x")


# --- the real server --------------------------------------------------------------------------------


def test_migrations_apply_once_also_when_three_replicas_start_together(postgres_dsn):  # noqa: F811 - the imported fixtures
    async def main():
        connections = [await asyncpg.connect(postgres_dsn) for _ in range(3)]
        try:
            applied = await asyncio.gather(*(migrate(connection) for connection in connections))
            again = await migrate(connections[0])
            versions = await connections[0].fetch(f"SELECT version FROM {VERSION_TABLE} ORDER BY version")
            tables = await connections[0].fetchval(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN "
                "('ledger', 'ledger_flushes', 'ledger_fired', 'ledger_meta')")
        finally:
            for connection in connections:
                await connection.close()
        return applied, again, [record[0] for record in versions], tables

    applied, again, versions, tables = asyncio.run(main())
    assert sorted(applied, key=len) == [[], [], list(range(1, LATEST + 1))]
    assert again == []
    assert versions == list(range(1, LATEST + 1))
    assert tables == 4


def test_a_flush_applied_twice_is_counted_once(postgres_dsn):  # noqa: F811 - the imported fixtures
    rng = random.Random(17)
    pending = Pending()
    for index in range(40):
        pending.add(_facts(rng, rng.choice(TEAMS), T0 + index * HOUR // 10))
    rows = pending.take()
    expected = math.fsum(values.cost for values in rows.values())
    requests = sum(values.requests for values in rows.values())

    async def main():
        store = _store(postgres_dsn)
        await store.open()
        try:
            first = await store.write("node-a", 7, rows)
            retried = await store.write("node-a", 7, rows)
            # The same batch retried while the first attempt is still in flight: one of them applies it.
            racing = await asyncio.gather(store.write("node-a", 8, rows), store.write("node-a", 8, rows))
            other_replica = await store.write("node-b", 7, rows)
            total = await store.sum_cost(T0, T0 + 24 * HOUR)
            stored = await store.rows(T0, T0 + 24 * HOUR)
        finally:
            await store.close()
        return first, retried, racing, other_replica, total, stored

    first, retried, racing, other_replica, total, stored = asyncio.run(main())
    assert (first, retried, other_replica) == (True, False, True)
    assert sorted(racing) == [False, True]
    assert total == pytest.approx(3 * expected, abs=1e-9)
    assert sum(row.requests for row in stored) == 3 * requests
    assert {row.key for row in stored} == set(rows)


def test_three_replicas_sum_to_the_independent_total(postgres_dsn):  # noqa: F811 - the imported fixtures
    rng = random.Random(3)
    spans = [(_facts(rng, rng.choice(TEAMS), T0 + rng.randrange(0, 6 * HOUR)), rng.randrange(3)) for _ in range(900)]
    by_team = {team: math.fsum(facts.cost for facts, _ in spans if facts.team == team) for team in TEAMS}
    acme_support = math.fsum(facts.cost for facts, _ in spans if facts.team == "support" and facts.customer == "acme")
    tokens = sum(facts.tokens["input"] for facts, _ in spans)

    async def replica(index: int) -> None:
        store = _store(postgres_dsn)
        await store.open()
        try:
            pending = Pending()
            mine = [facts for facts, owner in spans if owner == index]
            for seq, start in enumerate(range(0, len(mine), 50)):   # a flush per 50 spans
                for facts in mine[start:start + 50]:
                    pending.add(facts)
                assert await store.write(f"node-{index}", seq, pending.take())
        finally:
            await store.close()

    async def main():
        await asyncio.gather(*(replica(index) for index in range(3)))
        store = _store(postgres_dsn)
        await store.open()
        try:
            sums = {team: await store.sum_cost(T0, T0 + 6 * HOUR, team=team) for team in TEAMS}
            total = await store.sum_cost(T0, T0 + 6 * HOUR)
            scoped = await store.sum_cost(T0, T0 + 6 * HOUR, team="support", customer="acme")
            stored = await store.rows(T0, T0 + 6 * HOUR)
        finally:
            await store.close()
        return sums, total, scoped, stored

    sums, total, scoped, stored = asyncio.run(main())
    for team in TEAMS:
        assert abs(sums[team] - by_team[team]) <= 1e-9
    assert abs(total - math.fsum(by_team.values())) <= 1e-9
    assert abs(scoped - acme_support) <= 1e-9
    assert sum(row.tokens["input"] for row in stored) == tokens
    assert sum(row.requests for row in stored) == len(spans)


def test_a_threshold_crossing_is_won_by_exactly_one_of_three_replicas(postgres_dsn):  # noqa: F811 - the imported fixtures
    when = period("monthly", T0, "UTC")

    async def main():
        stores = [_store(postgres_dsn) for _ in range(3)]
        for store in stores:
            await store.open()
        try:
            won = await asyncio.gather(*(store.mark_fired("search-monthly", when.key, 0.8, f"node-{index}")
                                         for index, store in enumerate(stores)))
            later = await asyncio.gather(*(store.mark_fired("search-monthly", when.key, 1.0, f"node-{index}")
                                           for index, store in enumerate(stores)))
            fired = await stores[0].fired()
        finally:
            for store in stores:
                await store.close()
        return won, later, fired

    won, later, fired = asyncio.run(main())
    assert sorted(won) == [False, False, True]
    assert sorted(later) == [False, False, True]
    assert fired == {("search-monthly", when.key, 0.8), ("search-monthly", when.key, 1.0)}


def test_replicas_must_bucket_alike(postgres_dsn):  # noqa: F811 - the imported fixtures
    async def main():
        first = _store(postgres_dsn, granularity="hour")
        await first.open()
        await first.close()
        second = _store(postgres_dsn, granularity="day")
        with pytest.raises(LedgerDatabaseError, match="granularity=hour"):
            await second.open()
        assert second.pool is None

    asyncio.run(main())


def test_prune_deletes_ended_buckets_and_periods(postgres_dsn):  # noqa: F811 - the imported fixtures
    rng = random.Random(5)
    pending = Pending()
    for hour in range(48):
        pending.add(_facts(rng, "search", T0 + hour * HOUR))
    rows = pending.take()
    cutoff = T0 + 24 * HOUR
    kept = math.fsum(values.cost for key, values in rows.items() if key[0] >= cutoff)
    old, new = period("daily", T0, "UTC"), period("daily", cutoff, "UTC")

    async def main():
        store = _store(postgres_dsn)
        await store.open()
        try:
            await store.write("node-a", 0, rows)
            await store.mark_fired("search-daily", old.key, 0.5, "node-a")
            await store.mark_fired("search-daily", new.key, 0.5, "node-a")
            deleted = await store.prune(cutoff)
            return deleted, await store.sum_cost(T0, T0 + 48 * HOUR), await store.fired()
        finally:
            await store.close()

    deleted, total, fired = asyncio.run(main())
    assert deleted == 24
    assert abs(total - kept) <= 1e-9
    assert fired == {("search-daily", new.key, 0.5)}


def test_a_crash_replay_applies_each_journalled_batch_once(postgres_dsn, tmp_path):  # noqa: F811 - the imported fixtures
    rng = random.Random(11)
    batches = []
    for _ in range(3):
        pending = Pending()
        for index in range(20):
            pending.add(_facts(rng, "search", T0 + index * HOUR // 4))
        batches.append(pending.take())
    expected = math.fsum(values.cost for rows in batches for values in rows.values())

    async def main():
        store = _store(postgres_dsn)
        await store.open()
        try:
            flusher = Flusher(store, tmp_path, "node-a")
            assert await flusher.flush(batches[0])
            # Killed after the commit, before the journal entry went: the batch is both applied and journalled.
            committed = flusher.add(batches[1])
            assert await store.write("node-a", committed, batches[1])
            # Killed before the transaction: journalled only.
            flusher.add(batches[2])
            # The restarted relay: same directory, same replica id.
            restarted = Flusher(store, tmp_path, "node-a")
            replayed = await restarted.replay()
            again = await restarted.replay()
            next_seq = restarted.take_seq()
            return replayed, again, next_seq, await store.sum_cost(T0, T0 + 24 * HOUR), restarted.journalled()
        finally:
            await store.close()

    replayed, again, next_seq, total, left = asyncio.run(main())
    assert replayed == (1, 1)
    assert again == (0, 0)
    assert next_seq == 3   # seqs 0, 1 and 2 went to the three batches: never handed out twice
    assert abs(total - expected) <= 1e-9
    assert left == []


def test_a_failed_flush_stays_journalled_for_a_retry_with_its_seq(postgres_server, postgres_dsn, tmp_path):  # noqa: F811 - the imported fixtures
    rng = random.Random(2)
    pending = Pending()
    pending.add(_facts(rng, "search", T0))
    rows = pending.take()

    async def main():
        broken = _store(postgres_server.dsn("no_such_database"))
        flusher = Flusher(broken, tmp_path, "node-a")
        with pytest.raises(LedgerDatabaseError):
            await broken.open()
        with pytest.raises(RuntimeError):
            await flusher.flush(rows)
        [(seq, journalled)] = flusher.journalled()
        store = _store(postgres_dsn)
        await store.open()
        try:
            flusher.store = store
            assert await flusher.replay() == (1, 0)
            return seq, journalled, await store.sum_cost(T0, T0 + HOUR)
        finally:
            await store.close()

    seq, journalled, total = asyncio.run(main())
    assert seq == 0
    assert journalled == rows
    assert total == pytest.approx(math.fsum(values.cost for values in rows.values()), abs=1e-9)


def test_the_dsn_never_appears_in_errors_or_logs(postgres_server, postgres_dsn, caplog, monkeypatch):  # noqa: F811 - the imported fixtures
    wrong = postgres_server.dsn(postgres_dsn.rsplit("/", 1)[1].split("?")[0], password="Wr0ngPassw0rdXyz")
    monkeypatch.setenv("LEDGER_DSN", wrong)
    errors = []

    async def main():
        for config in (PostgresConfig(dsn=wrong), PostgresConfig(dsn_env="LEDGER_DSN"),
                       # TLS demanded of a server without it: the driver's own error, redacted too.
                       PostgresConfig(dsn=postgres_dsn.replace("?sslmode=disable", ""), sslmode="require")):
            store = PostgresLedgerStore(config)
            with pytest.raises(LedgerDatabaseError) as raised:
                await store.open()
            errors.append(str(raised.value))
            assert store.pool is None

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
    assert len(errors) == 3, errors
    assert "password authentication failed" in errors[0] and "password authentication failed" in errors[1]
    assert "SSL" in errors[2]   # sslmode reached the driver: it asked a server without TLS for it
    for secret in ("Wr0ngPassw0rdXyz", postgres_server.password, wrong, postgres_dsn):
        assert all(secret not in error for error in errors)
        assert secret not in caplog.text


def test_the_blocking_store_answers_the_budget_check_and_replays_at_open(postgres_dsn, tmp_path):  # noqa: F811 - the imported fixtures
    rng = random.Random(23)
    pending = Pending()
    for index in range(30):
        pending.add(_facts(rng, rng.choice(TEAMS), T0 + index * HOUR // 8))
    rows = pending.take()
    budget = BudgetConfig(team="support", daily_usd=5.0)
    scope = Scope(budget, period("daily", T0, "UTC"), 5.0)
    expected = math.fsum(values.cost for key, values in rows.items() if key[1] == "support")

    # A batch journalled by a relay that died before writing it.
    Flusher(_store(postgres_dsn), tmp_path, "node-a").add(rows)
    store = BlockingPostgresStore(_store(postgres_dsn), tmp_path, "node-a")
    with pytest.raises(RuntimeError):
        store.sum_cost(T0, T0 + HOUR)
    store.open()
    try:
        assert store.db is not None
        assert store.replayed == (1, 0)
        [stored] = totals(store, [scope])   # the budget check's own read
        assert abs(stored - expected) <= 1e-9
        seq = store.journal(rows)
        assert store.send(seq, rows) is True
        assert store.send(seq, rows) is False   # the retry of a flush whose answer was lost
        assert abs(totals(store, [scope])[0] - 2 * expected) <= 1e-9
        assert [store.mark_fired(budget.name, scope.period.key, 0.5) for _ in range(2)] == [True, False]
        assert store.fired() == {(budget.name, scope.period.key, 0.5)}
    finally:
        store.close()
    assert store.db is None
