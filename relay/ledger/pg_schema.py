"""The PostgreSQL ledger's schema: numbered migrations, applied once however many replicas start.

Each replica calls ``migrate`` at start. It runs in one transaction that first takes
a transaction-scoped advisory lock, so replicas starting together queue on the lock
and the second finds the first's work recorded in ``genops_ledger_schema`` and
applies nothing. DDL is transactional in PostgreSQL: a migration that fails leaves
no half-made table, and the lock goes with the transaction whichever way it ends.

A migration, once shipped, is never edited: a change is a new, higher number.
The columns are the SQLite ledger's (relay.ledger.store): one row per bucket start
and (team, project, model, provider, customer), the same token types.
"""

from __future__ import annotations

from relay.ledger.facts import TOKEN_TYPES

# Any fixed 64-bit number, the same in every replica: it names the lock, not a row.
LOCK_KEY = 0x67656E6F70730001   # "genops" + 1

VERSION_TABLE = "genops_ledger_schema"

_TOKENS = ",\n        ".join(f"{kind}_tokens BIGINT NOT NULL DEFAULT 0" for kind in TOKEN_TYPES)

MIGRATIONS: list[tuple[int, str, tuple[str, ...]]] = [
    (1, "ledger rows, flushes applied, thresholds fired, settings", (
        f"""CREATE TABLE ledger (
        bucket_start_ns BIGINT NOT NULL,
        team TEXT NOT NULL,
        project TEXT NOT NULL,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        customer TEXT NOT NULL,
        cost DOUBLE PRECISION NOT NULL DEFAULT 0,
        {_TOKENS},
        requests BIGINT NOT NULL DEFAULT 0,
        errors BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (bucket_start_ns, team, project, model, provider, customer))""",
        # Budgets sum one team's time range.
        "CREATE INDEX ledger_team_time ON ledger (team, bucket_start_ns)",
        # One row per flush a replica committed: the key that makes a retried flush a no-op.
        """CREATE TABLE ledger_flushes (
        replica_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        rows INTEGER NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (replica_id, seq))""",
        "CREATE INDEX ledger_flushes_applied ON ledger_flushes (applied_at)",
        # One row per threshold crossed in a period, for the whole fleet: the insert that wins fires.
        """CREATE TABLE ledger_fired (
        budget TEXT NOT NULL,
        period_key TEXT NOT NULL,
        threshold DOUBLE PRECISION NOT NULL,
        fired_at BIGINT NOT NULL,
        replica_id TEXT NOT NULL,
        PRIMARY KEY (budget, period_key, threshold))""",
        # How rows are bucketed: every replica must bucket alike, or sums mix periods.
        "CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )),
]

LATEST = MIGRATIONS[-1][0]


async def migrate(connection) -> list[int]:
    """Bring the schema to ``LATEST``; returns the versions this call applied (often none).

    ``connection`` is an asyncpg connection outside a transaction.
    """
    applied = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER PRIMARY KEY, "
            "description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        current = await connection.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}")
        if current > LATEST:
            raise RuntimeError(f"the ledger database has schema version {current}, newer than this relay's "
                               f"{LATEST}: upgrade the relay")
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                await connection.execute(statement)
            await connection.execute(f"INSERT INTO {VERSION_TABLE} (version, description) VALUES ($1, $2)",
                                     version, description)
            applied.append(version)
    return applied
