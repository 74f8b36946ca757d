"""The ledger's file and its in-memory front: spend per bucket and dimensions, summed.

One SQLite file in WAL mode, as the persistent sending queue keeps: a flush
is one transaction of UPSERTs that add to the stored values, so a kill -9
leaves each flush wholly in or wholly out, and a reader in another process
(the ``report`` command) sees every committed flush while the relay writes.
``synchronous=NORMAL`` keeps committed transactions across a killed process;
``fsync`` selects FULL to survive power loss too. A file SQLite finds
malformed is moved aside, its readable rows copied to a fresh one, so a damaged
ledger costs what was damaged and never a crash loop.

Every ``LedgerStore`` call blocks; the relay runs them on one worker thread.
``Pending`` collects spend between flushes on the data path.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from relay.ledger.facts import TOKEN_TYPES, SpanFacts
from relay.ledger.periods import Granularity, bucket_start, period, period_of_key, zone
from relay.sqlitefile import is_corruption, move_aside

# (bucket_start_ns, team, project, model, provider, customer)
RowKey = tuple[int, str, str, str, str, str]

_DIMENSIONS = ("team", "project", "model", "provider", "customer")
_KEY_COLUMNS = ("bucket_start_ns",) + _DIMENSIONS
_TOKEN_COLUMNS = tuple(f"{kind}_tokens" for kind in TOKEN_TYPES)
_VALUE_COLUMNS = ("cost",) + _TOKEN_COLUMNS + ("requests", "errors")
_COLUMNS = _KEY_COLUMNS + _VALUE_COLUMNS

_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS ledger (
        bucket_start_ns INTEGER NOT NULL,
        {", ".join(f"{name} TEXT NOT NULL" for name in _DIMENSIONS)},
        cost REAL NOT NULL DEFAULT 0,
        {", ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in _TOKEN_COLUMNS)},
        requests INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY ({", ".join(_KEY_COLUMNS)})) WITHOUT ROWID""",
    # The primary key serves plain time ranges; budgets sum one team's range.
    "CREATE INDEX IF NOT EXISTS ledger_team_time ON ledger (team, bucket_start_ns)",
    """CREATE TABLE IF NOT EXISTS fired (
        budget TEXT NOT NULL,
        period_key TEXT NOT NULL,
        threshold REAL NOT NULL,
        fired_at INTEGER NOT NULL,
        PRIMARY KEY (budget, period_key, threshold)) WITHOUT ROWID""",
    # How the rows were bucketed, so a reader computes periods as the writer did.
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
)

_UPSERT = (
    f"INSERT INTO ledger ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    f"ON CONFLICT ({', '.join(_KEY_COLUMNS)}) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in _VALUE_COLUMNS)
)


@dataclass(slots=True)
class RowValues:
    """The running sums of one row; token counts by type are disjoint (their sum is the total)."""

    cost: float = 0.0
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0
    requests: int = 0
    errors: int = 0

    def add(self, facts: SpanFacts) -> None:
        self.cost += facts.cost
        tokens = facts.tokens
        if tokens:
            get = tokens.get
            self.input += get("input", 0)
            self.output += get("output", 0)
            self.cache_read += get("cache_read", 0)
            self.cache_write += get("cache_write", 0)
            self.reasoning += get("reasoning", 0)
        self.requests += facts.calls
        if facts.error and facts.calls:
            self.errors += 1

    def merge(self, other: RowValues) -> None:
        self.cost += other.cost
        self.input += other.input
        self.output += other.output
        self.cache_read += other.cache_read
        self.cache_write += other.cache_write
        self.reasoning += other.reasoning
        self.requests += other.requests
        self.errors += other.errors

    @property
    def tokens(self) -> dict[str, int]:
        return {kind: getattr(self, kind) for kind in TOKEN_TYPES}

    def as_tuple(self) -> tuple:
        return (self.cost, self.input, self.output, self.cache_read, self.cache_write, self.reasoning,
                self.requests, self.errors)


@dataclass(slots=True)
class Row:
    bucket_start_ns: int
    team: str
    project: str
    model: str
    provider: str
    customer: str
    cost: float
    tokens: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    errors: int = 0

    @property
    def key(self) -> RowKey:
        return (self.bucket_start_ns, self.team, self.project, self.model, self.provider, self.customer)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())


class LedgerStore:
    def __init__(self, path: Path, *, granularity: Granularity = "hour", tz: str = "UTC", fsync: bool = False):
        if granularity not in ("hour", "day"):
            raise ValueError(f'granularity must be "hour" or "day", not "{granularity}"')
        zone(tz)
        self.path = Path(path)
        self.granularity = granularity
        self.tz = tz
        self.fsync = fsync
        self.readonly = False
        self.moved_aside: Path | None = None   # where a malformed file went, when open() found one
        self.salvaged = 0                      # rows copied from it
        self.db: sqlite3.Connection | None = None

    # --- opening ------------------------------------------------------------------------

    def open(self) -> None:
        """Open for writing, creating the file or recovering a malformed one.

        Raises OSError (naming the file) when the path cannot be opened at all.
        """
        try:
            self.db = self._connect()
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError) and not is_corruption(error):
                self.close()
                raise OSError(f"cannot open the cost ledger {self.path}: {error}") from None
            self._recover()
        try:
            self._write_settings()
        except sqlite3.Error as error:
            self.close()
            raise OSError(f"cannot write the cost ledger {self.path}: {error}") from None

    @classmethod
    def open_readonly(cls, path: Path) -> LedgerStore:
        """An opened store that only reads, safe beside a relay writing the same file.

        Its granularity and tz are the writer's, as recorded in the file. Raises OSError
        when there is no readable ledger at ``path``; never moves or changes the file.
        """
        store = cls(path)
        store.readonly = True
        if not store.path.is_file():
            raise OSError(f"no cost ledger at {store.path}")
        uri = f"file:{quote(str(store.path.resolve()))}?mode=ro"
        try:
            store.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            settings = dict(store.db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as error:
            store.close()
            if "no such table" in str(error):
                raise OSError(f"{store.path} is not a cost ledger") from None
            raise OSError(f"cannot read the cost ledger {store.path}: {error}") from None
        if settings.get("granularity") in ("hour", "day"):
            store.granularity = settings["granularity"]
        try:
            store.tz = zone(settings.get("tz", "UTC")).key
        except ValueError:
            pass
        return store

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are the explicit BEGIN/COMMIT in write().
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
            for statement in _SCHEMA:
                db.execute(statement)
        except BaseException:
            db.close()
            raise
        return db

    def _write_settings(self) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                            [("granularity", self.granularity), ("tz", self.tz)])

    def _recover(self) -> None:
        """Move a malformed file aside, keeping whatever rows can still be read."""
        self.close()
        rows, fired = [], []
        try:
            old = sqlite3.connect(self.path, isolation_level=None)
            try:
                rows = _readable(old, "ledger", _COLUMNS, len(_KEY_COLUMNS))
                fired = _readable(old, "fired", ("budget", "period_key", "threshold", "fired_at"), 3)
            finally:
                old.close()
        except sqlite3.DatabaseError:
            pass
        self.moved_aside = move_aside(self.path)
        try:
            self.db = self._connect()
        except sqlite3.Error as error:
            raise OSError(f"cannot create the cost ledger {self.path}: {error}") from None
        self.db.execute("BEGIN")
        self.db.executemany(_UPSERT, rows)
        self.db.executemany("INSERT OR IGNORE INTO fired (budget, period_key, threshold, fired_at) "
                            "VALUES (?, ?, ?, ?)", fired)
        self.db.execute("COMMIT")
        self.salvaged = len(rows)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    # --- writing ------------------------------------------------------------------------

    def write(self, rows: dict[RowKey, RowValues]) -> None:
        """Add ``rows`` to the stored values, in one transaction.

        On failure nothing is applied and OSError is raised: the caller keeps the rows
        and writes them again later.
        """
        self._writable()
        if not rows:
            return
        try:
            self.db.execute("BEGIN")
            self.db.executemany(_UPSERT, [key + values.as_tuple() for key, values in rows.items()])
            self.db.execute("COMMIT")
        except sqlite3.Error as error:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise OSError(f"cannot write the cost ledger {self.path}: {error}") from None

    def mark_fired(self, budget: str, period_key: str, threshold: float) -> None:
        """Record a threshold as fired; recording it again changes nothing. Committed at once."""
        self._writable()
        try:
            self.db.execute("INSERT OR IGNORE INTO fired (budget, period_key, threshold, fired_at) "
                            "VALUES (?, ?, ?, ?)", (budget, period_key, float(threshold), time.time_ns()))
        except sqlite3.Error as error:
            raise OSError(f"cannot write the cost ledger {self.path}: {error}") from None

    def prune(self, before_ns: int) -> int:
        """Delete the rows of buckets that ended by ``before_ns`` and the fired marks of
        periods that did; returns the number of rows deleted."""
        self._writable()
        cutoff = bucket_start(before_ns, self.granularity, self.tz)
        try:
            self.db.execute("BEGIN")
            deleted = self.db.execute("DELETE FROM ledger WHERE bucket_start_ns < ?", (cutoff,)).rowcount
            ended = []
            for (key,) in self.db.execute("SELECT DISTINCT period_key FROM fired").fetchall():
                try:
                    if period_of_key(key, self.tz).end_ns <= before_ns:
                        ended.append((key,))
                except ValueError:
                    continue   # not a key this code writes: left alone
            self.db.executemany("DELETE FROM fired WHERE period_key = ?", ended)
            self.db.execute("COMMIT")
        except sqlite3.Error as error:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise OSError(f"cannot prune the cost ledger {self.path}: {error}") from None
        return deleted

    def _writable(self) -> None:
        if self.db is None:
            raise RuntimeError("the cost ledger is not open")
        if self.readonly:
            raise PermissionError(f"the cost ledger {self.path} was opened read-only")

    # --- reading ------------------------------------------------------------------------

    def sum_cost(self, start_ns: int, end_ns: int, *, team: str | None = None, project: str | None = None,
                 customer: str | None = None) -> float:
        """The cost of the buckets starting in [start_ns, end_ns), optionally of one scope."""
        where, args = _range(start_ns, end_ns, team=team, project=project, customer=customer)
        # Summed inside SQLite: a budget's month can be many rows, and this is read on demand.
        return self.db.execute(f"SELECT TOTAL(cost) FROM ledger WHERE {where}", args).fetchone()[0]

    def rows(self, start_ns: int, end_ns: int) -> list[Row]:
        """The rows of the buckets starting in [start_ns, end_ns), in key order."""
        where, args = _range(start_ns, end_ns)
        out = []
        for record in self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM ledger WHERE {where} "
                                      f"ORDER BY {', '.join(_KEY_COLUMNS)}", args):
            out.append(Row(*record[:7], dict(zip(TOKEN_TYPES, record[7:12])), record[12], record[13]))
        return out

    def fired(self) -> set[tuple[str, str, float]]:
        return set(self.db.execute("SELECT budget, period_key, threshold FROM fired"))


class Pending:
    """Spend collected in memory between flushes, keyed and bucketed as the file's rows.

    ``granularity`` and ``tz`` must be the store's, so that rows land in the same buckets.
    """

    def __init__(self, granularity: Granularity = "hour", tz: str = "UTC"):
        if granularity not in ("hour", "day"):
            raise ValueError(f'granularity must be "hour" or "day", not "{granularity}"')
        zone(tz)
        self.granularity = granularity
        self.tz = tz
        self.rows: dict[RowKey, RowValues] = {}
        # The last bucket found and the instants it covers: most spans land in the current one.
        self._bucket = 0
        self._low = 0
        self._high = 0

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, facts: SpanFacts) -> None:
        when = facts.time_ns
        if self._low <= when < self._high:
            bucket = self._bucket
        else:
            bucket = self._find(when)
        key = (bucket, facts.team, facts.project, facts.model, facts.provider, facts.customer)
        values = self.rows.get(key)
        if values is None:
            values = self.rows[key] = RowValues()
        values.add(facts)

    def _find(self, time_ns: int) -> int:
        bucket = bucket_start(time_ns, self.granularity, self.tz)
        if self.granularity == "day":
            high = period("daily", time_ns, self.tz).end_ns
        else:
            # Offsets change on local hour boundaries, and a local hour never holds a midnight.
            high = bucket + 3600 * 1_000_000_000
        self._bucket, self._low, self._high = bucket, bucket, high
        return bucket

    def take(self) -> dict[RowKey, RowValues]:
        """What collected since the last take; the collection starts empty again."""
        rows, self.rows = self.rows, {}
        return rows

    def restore(self, rows: dict[RowKey, RowValues]) -> None:
        """Put back rows taken but not written, added to whatever collected since."""
        for key, values in rows.items():
            mine = self.rows.get(key)
            if mine is None:
                self.rows[key] = mine = RowValues()
            mine.merge(values)

    def sum_cost(self, start_ns: int, end_ns: int, *, team: str | None = None, project: str | None = None,
                 customer: str | None = None) -> float:
        """As ``LedgerStore.sum_cost``, over what is not written yet."""
        costs = []
        for (bucket, row_team, row_project, _model, _provider, row_customer), values in self.rows.items():
            if not start_ns <= bucket < end_ns:
                continue
            if (team is not None and row_team != team) or (project is not None and row_project != project) \
                    or (customer is not None and row_customer != customer):
                continue
            costs.append(values.cost)
        return math.fsum(costs)


def _range(start_ns: int, end_ns: int, **scope: str | None) -> tuple[str, list]:
    where, args = ["bucket_start_ns >= ?", "bucket_start_ns < ?"], [start_ns, end_ns]
    for name, value in scope.items():
        if value is not None:
            where.append(f"{name} = ?")
            args.append(value)
    return " AND ".join(where), args


def _readable(db: sqlite3.Connection, table: str, columns: tuple[str, ...], key_length: int) -> list[tuple]:
    """The rows of ``table`` a scan reaches from either end of its primary key, in key order.

    A damaged page ends a scan with "malformed"; scanning from both ends keeps the
    rows on either side of it, where one scan would lose all after it.
    """
    found: dict[tuple, tuple] = {}
    for direction in ("ASC", "DESC"):
        order = ", ".join(f"{name} {direction}" for name in columns[:key_length])
        try:
            for row in db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"):
                if None not in row:   # a damaged record can read back NULLs
                    found.setdefault(row[:key_length], row)
        except sqlite3.DatabaseError:
            pass
    return [found[key] for key in sorted(found)]
