"""The cost ledger in PostgreSQL, shared by a fleet of relays: exactly-once flushes, fleet totals.

``PostgresLedgerStore`` is the async counterpart of ``relay.ledger.store.LedgerStore``
(same rows, dimensions and buckets), on an asyncpg pool:

- ``open()`` creates the pool, applies the migrations (relay.ledger.pg_schema) and checks
  that the database buckets as this relay does (granularity, time zone).
- ``write(replica_id, seq, rows) -> bool`` adds ``rows`` in one transaction. Its first
  statement inserts (replica_id, seq) into ``ledger_flushes``; when that row exists
  already the flush was applied before and nothing is added (False). Each row is an
  ``INSERT ... ON CONFLICT DO UPDATE SET cost = ledger.cost + EXCLUDED.cost``: the
  database adds, so replicas never read a total to write it back.
- ``mark_fired(budget, period_key, threshold, replica_id) -> bool``: True for the one
  replica whose insert made the row, False for every other (stay quiet).
- ``sum_cost``, ``rows``, ``fired``, ``prune`` read and prune the fleet's totals.

``Flusher`` gives a relay its side of exactly-once: a stable ``replica_id`` and a
sequence number per batch, kept in the ledger's directory. ``BlockingPostgresStore``
offers all of it with ``LedgerStore``'s blocking calls, for the runtime's writer thread
(relay.ledger.runtime) and the budget check's ``totals`` (relay.ledger.check); the
runtime does not use it yet, and ``backend: postgres`` is refused until it does.

How a crash replay stays exactly-once
-------------------------------------
A batch gets its seq *before* the first attempt to write it, and the pair goes to a
journal file (``<directory>/pg-journal/<seq>.json``, written to a temporary name,
fsynced, renamed) before the transaction starts. The seq counter file records the
next free seq, also before any write. Then:

- a write that times out or loses its acknowledgement is retried with the same seq:
  if the first attempt committed, ``ledger_flushes`` already holds (replica, seq)
  and the retry applies nothing;
- a kill -9 anywhere leaves the batch in the journal; at start ``replay()`` writes
  every journalled batch with its recorded seq, once more applying it only if its
  commit never happened, and deletes the entry after a commit (or a "seen before");
- a seq is never reused for a different batch, because the counter is advanced
  on disk before the seq is handed out (a crash may skip numbers, which is harmless).

What is lost in a crash is what had not been taken into a batch yet: at most one
flush interval. ``replica_id`` must be unique in the fleet and stable across
restarts (default: the host name and a hash of the ledger directory); two relays
sharing one would drop each other's batches as replays.

The DSN holds a password: it never appears in a log line or an error. Every error
leaving this module goes through ``redact``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from relay.errors import Problem
from relay.ledger.facts import TOKEN_TYPES
from relay.ledger.periods import bucket_start, period_of_key, zone
from relay.ledger.pg_schema import migrate
from relay.ledger.store import Row, RowKey, RowValues
from relay.status import describe

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
# Past the driver's own bounds: a blocked caller always gets an answer.
CALL_TIMEOUT_S = 120.0
JOURNAL = "pg-journal"
SEQ_FILE = "pg-seq"

_DIMENSIONS = ("team", "project", "model", "provider", "customer")
_KEY_COLUMNS = ("bucket_start_ns",) + _DIMENSIONS
_TOKEN_COLUMNS = tuple(f"{kind}_tokens" for kind in TOKEN_TYPES)
_VALUE_COLUMNS = ("cost",) + _TOKEN_COLUMNS + ("requests", "errors")
_COLUMNS = _KEY_COLUMNS + _VALUE_COLUMNS

_UPSERT = (
    f"INSERT INTO ledger ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_COLUMNS) + 1))}) "
    f"ON CONFLICT ({', '.join(_KEY_COLUMNS)}) DO UPDATE SET "
    + ", ".join(f"{name} = ledger.{name} + EXCLUDED.{name}" for name in _VALUE_COLUMNS)
)
_CLAIM_FLUSH = ("INSERT INTO ledger_flushes (replica_id, seq, rows) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING RETURNING seq")
_CLAIM_FIRED = ("INSERT INTO ledger_fired (budget, period_key, threshold, fired_at, replica_id) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING fired_at")


@dataclass
class PostgresConfig:
    """``postgres:`` under ``genops_ledger`` (with ``backend: postgres``)."""

    # Exactly one of the three. dsn is kept out of repr(): a config dump must not show it.
    dsn: str = field(default="", repr=False)
    dsn_file: str = ""     # a file holding the DSN (a mounted Secret)
    dsn_env: str = ""      # an environment variable holding it
    pool_size: int = 4
    # Passed to the driver as the DSN's own parameters of these names (libpq's meaning).
    sslmode: str = ""
    sslrootcert: str = ""
    sslcert: str = ""
    sslkey: str = ""

    def validate(self) -> list[Problem]:
        problems = []
        given = [name for name in ("dsn", "dsn_file", "dsn_env") if getattr(self, name)]
        if len(given) != 1:
            problems.append(Problem((), "set exactly one of dsn, dsn_file or dsn_env" +
                                    (f" (found {', '.join(given)})" if given else "")))
        if self.dsn and not _is_url(self.dsn):
            # The value is not quoted: it may hold a password.
            problems.append(Problem(("dsn",), "must be a postgresql:// or postgres:// URL"))
        if self.pool_size < 1:
            problems.append(Problem(("pool_size",), "must be at least 1"))
        if self.sslmode and self.sslmode not in SSL_MODES:
            problems.append(Problem(("sslmode",), f'"{self.sslmode}" is not one of: {", ".join(SSL_MODES)}'))
        return problems

    def resolve_dsn(self) -> str:
        """The DSN from where the config says, with the ssl settings added. Raises ValueError
        naming the source (never the value) when it cannot be had."""
        if self.dsn:
            dsn, source = self.dsn, "dsn"
        elif self.dsn_file:
            source = f"dsn_file {self.dsn_file}"
            try:
                dsn = Path(self.dsn_file).read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ValueError(f"cannot read the ledger's {source}: {error.strerror or 'unreadable'}") from None
        else:
            source = f"dsn_env {self.dsn_env}"
            dsn = os.environ.get(self.dsn_env, "").strip()
            if not dsn:
                raise ValueError(f"the environment variable {self.dsn_env} (the ledger's dsn_env) is not set")
        if not _is_url(dsn):
            raise ValueError(f"the ledger's {source} does not hold a postgresql:// or postgres:// URL")
        return with_ssl(dsn, self)


def with_ssl(dsn: str, config: PostgresConfig) -> str:
    """``dsn`` with the config's ssl settings as query parameters (they win over the DSN's own)."""
    extra = {name: getattr(config, name) for name in ("sslmode", "sslrootcert", "sslcert", "sslkey")
             if getattr(config, name)}
    if not extra:
        return dsn
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(extra)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _is_url(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


# user:password@ in any URL, also one a driver quotes back in part.
_USERINFO = re.compile(r"(://)[^@/\s]*@")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def redact(text: str, dsn: str = "") -> str:
    """``text`` with the DSN, its password and any URL credentials replaced by ``***``."""
    if dsn:
        text = text.replace(dsn, "***")
        password = urlsplit(dsn).password if _is_url(dsn) else None
        if password:
            text = text.replace(password, "***")
    return _PASSWORD_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


class LedgerDatabaseError(OSError):
    """The ledger database could not be reached or refused a statement; the message is redacted."""


def default_replica_id(directory: str | os.PathLike) -> str:
    """The host name and a short hash of the ledger's directory: stable across restarts of one relay."""
    digest = hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:12]
    return f"{socket.gethostname()}-{digest}"


class PostgresLedgerStore:
    def __init__(self, config: PostgresConfig, *, granularity: str = "hour", tz: str = "UTC"):
        if granularity not in ("hour", "day"):
            raise ValueError(f'granularity must be "hour" or "day", not "{granularity}"')
        zone(tz)
        self.config = config
        self.granularity = granularity
        self.tz = tz
        self.pool = None
        self._dsn = ""
        self.migrated: list[int] = []   # the versions open() applied

    async def open(self) -> None:
        """Connect, migrate and check the settings. Raises LedgerDatabaseError (redacted)."""
        import asyncpg  # only relays with backend: postgres need the driver

        try:
            self._dsn = self.config.resolve_dsn()
        except ValueError as error:
            raise LedgerDatabaseError(str(error)) from None
        try:
            # Bounded waits: a database that stops answering fails a flush, which is kept and retried.
            self.pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self.config.pool_size,
                                                  timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S)
            async with self.pool.acquire() as connection:
                self.migrated = await migrate(connection)
                await self._check_settings(connection)
        except LedgerDatabaseError:
            await self.close()
            raise
        except Exception as error:  # noqa: BLE001 - any driver or socket error becomes one redacted error
            await self.close()
            raise self._error("cannot open the ledger database", error) from None

    async def _check_settings(self, connection) -> None:
        async with connection.transaction():
            await connection.executemany(
                "INSERT INTO ledger_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                [("granularity", self.granularity), ("tz", self.tz)])
            stored = dict(await connection.fetch("SELECT key, value FROM ledger_meta"))
        mine = {"granularity": self.granularity, "tz": self.tz}
        differ = {key: stored.get(key) for key in mine if stored.get(key) != mine[key]}
        if differ:
            raise LedgerDatabaseError(
                "the ledger database buckets with " + ", ".join(f"{k}={v}" for k, v in differ.items())
                + ", this relay with " + ", ".join(f"{k}={mine[k]}" for k in differ)
                + ": every replica must use the same granularity and timezone")

    async def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()

    def _error(self, what: str, error: BaseException) -> LedgerDatabaseError:
        return LedgerDatabaseError(redact(f"{what}: {describe(error)}", self._dsn))

    def _ready(self):
        if self.pool is None:
            raise RuntimeError("the ledger database is not open")
        return self.pool

    # --- writing ------------------------------------------------------------------------

    async def write(self, replica_id: str, seq: int, rows: dict[RowKey, RowValues]) -> bool:
        """Apply one flush once: True if this call applied it, False if (replica_id, seq) was
        applied before. Raises LedgerDatabaseError with nothing applied."""
        pool = self._ready()
        try:
            async with pool.acquire() as connection, connection.transaction():
                claimed = await connection.fetchval(_CLAIM_FLUSH, replica_id, seq, len(rows))
                if claimed is None:
                    return False
                if rows:
                    # In key order: replicas adding to the same rows then lock them in the same order,
                    # where any other order lets two flushes deadlock.
                    await connection.executemany(_UPSERT, [key + rows[key].as_tuple() for key in sorted(rows)])
        except Exception as error:  # noqa: BLE001 - rolled back; the caller keeps the batch and its seq
            raise self._error("cannot write the ledger database", error) from None
        return True

    async def mark_fired(self, budget: str, period_key: str, threshold: float, replica_id: str) -> bool:
        """Record a crossing for the fleet: True for the one caller whose insert made the row."""
        pool = self._ready()
        try:
            won = await pool.fetchval(_CLAIM_FIRED, budget, period_key, float(threshold), time.time_ns(),
                                      replica_id)
        except Exception as error:  # noqa: BLE001 - reported redacted
            raise self._error("cannot write the ledger database", error) from None
        return won is not None

    async def prune(self, before_ns: int, *, flushes_before_s: float | None = None) -> int:
        """Delete buckets that ended by ``before_ns``, fired marks of periods that did and flush
        records older than ``flushes_before_s`` (unix seconds; default ``before_ns``)."""
        pool = self._ready()
        cutoff = bucket_start(before_ns, self.granularity, self.tz)
        flushes = before_ns / 1e9 if flushes_before_s is None else flushes_before_s
        try:
            async with pool.acquire() as connection, connection.transaction():
                status = await connection.execute("DELETE FROM ledger WHERE bucket_start_ns < $1", cutoff)
                ended = []
                for record in await connection.fetch("SELECT DISTINCT period_key FROM ledger_fired"):
                    try:
                        if period_of_key(record[0], self.tz).end_ns <= before_ns:
                            ended.append((record[0],))
                    except ValueError:
                        continue   # not a key this code writes: left alone
                await connection.executemany("DELETE FROM ledger_fired WHERE period_key = $1", ended)
                await connection.execute("DELETE FROM ledger_flushes WHERE applied_at < to_timestamp($1)", flushes)
        except Exception as error:  # noqa: BLE001 - reported redacted
            raise self._error("cannot prune the ledger database", error) from None
        return int(status.split()[-1])

    # --- reading ------------------------------------------------------------------------

    async def sum_cost(self, start_ns: int, end_ns: int, *, team: str | None = None, project: str | None = None,
                       customer: str | None = None) -> float:
        """The fleet's cost of the buckets starting in [start_ns, end_ns), optionally of one scope."""
        where, args = _range(start_ns, end_ns, team=team, project=project, customer=customer)
        try:
            total = await self._ready().fetchval(f"SELECT COALESCE(SUM(cost), 0) FROM ledger WHERE {where}", *args)
        except Exception as error:  # noqa: BLE001 - reported redacted
            raise self._error("cannot read the ledger database", error) from None
        return float(total)

    async def rows(self, start_ns: int, end_ns: int) -> list[Row]:
        """The fleet's rows of the buckets starting in [start_ns, end_ns), in key order."""
        where, args = _range(start_ns, end_ns)
        try:
            records = await self._ready().fetch(
                f"SELECT {', '.join(_COLUMNS)} FROM ledger WHERE {where} ORDER BY {', '.join(_KEY_COLUMNS)}", *args)
        except Exception as error:  # noqa: BLE001 - reported redacted
            raise self._error("cannot read the ledger database", error) from None
        tokens = len(TOKEN_TYPES)
        return [Row(*record[:7], dict(zip(TOKEN_TYPES, record[7:7 + tokens])), record[7 + tokens],
                    record[8 + tokens]) for record in records]

    async def fired(self) -> set[tuple[str, str, float]]:
        try:
            records = await self._ready().fetch("SELECT budget, period_key, threshold FROM ledger_fired")
        except Exception as error:  # noqa: BLE001 - reported redacted
            raise self._error("cannot read the ledger database", error) from None
        return {tuple(record) for record in records}


def _range(start_ns: int, end_ns: int, **scope: str | None) -> tuple[str, list]:
    where, args = ["bucket_start_ns >= $1", "bucket_start_ns < $2"], [start_ns, end_ns]
    for name, value in scope.items():
        if value is not None:
            args.append(value)
            where.append(f"{name} = ${len(args)}")
    return " AND ".join(where), args


# --- this replica's side: seq numbers and the journal -----------------------------------------------


class Flusher:
    """One relay's flushes into the shared store, each applied exactly once (see the module's doc)."""

    def __init__(self, store: PostgresLedgerStore, directory: str | os.PathLike, replica_id: str = ""):
        self.store = store
        self.directory = Path(directory)
        self.replica_id = replica_id or default_replica_id(directory)
        self.journal = self.directory / JOURNAL
        self.seq_path = self.directory / SEQ_FILE

    def journalled(self) -> list[tuple[int, dict[RowKey, RowValues]]]:
        """The batches taken but not known to be applied, in seq order."""
        if not self.journal.is_dir():
            return []
        out = []
        for path in self.journal.glob("*.json"):
            try:
                seq = int(path.stem)
                entries = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, OSError):
                continue   # a temporary or foreign file: left alone
            out.append((seq, {tuple(key): RowValues(*values) for key, values in entries}))
        return sorted(out, key=lambda item: item[0])

    def take_seq(self) -> int:
        """The next seq, recorded as used on disk before it is returned."""
        try:
            seq = int(self.seq_path.read_text(encoding="ascii").strip() or 0)
        except FileNotFoundError:
            seq = 0
        # Never below a journalled seq: the counter file may be older than the journal.
        seq = max([seq] + [found + 1 for found, _rows in self.journalled()])
        _write_atomically(self.seq_path, str(seq + 1))
        return seq

    def add(self, rows: dict[RowKey, RowValues]) -> int:
        """Journal ``rows`` under a new seq; returns the seq."""
        seq = self.take_seq()
        self.journal.mkdir(parents=True, exist_ok=True)
        entries = [[list(key), list(values.as_tuple())] for key, values in rows.items()]
        _write_atomically(self.journal / f"{seq}.json", json.dumps(entries))
        return seq

    async def send(self, seq: int, rows: dict[RowKey, RowValues]) -> bool:
        """Write one journalled batch; its entry goes once the database has it (now or before)."""
        applied = await self.store.write(self.replica_id, seq, rows)
        (self.journal / f"{seq}.json").unlink(missing_ok=True)
        return applied

    async def flush(self, rows: dict[RowKey, RowValues]) -> bool:
        """Journal and write ``rows``. On LedgerDatabaseError the batch stays journalled: ``replay``
        (or a retry of ``send`` with the same seq) writes it later, once."""
        return await self.send(self.add(rows), rows)

    async def replay(self) -> tuple[int, int]:
        """Write every journalled batch with its own seq: (applied now, applied before)."""
        applied = before = 0
        for seq, rows in self.journalled():
            if await self.send(seq, rows):
                applied += 1
            else:
                before += 1
        return applied, before


class BlockingPostgresStore:
    """The shared ledger for a caller that blocks, as the runtime's writer thread calls
    ``LedgerStore``: each call runs on a private event loop in a thread of its own and
    waits for the result. ``db`` is set while open, as ``LedgerStore.db`` is.

    Writing is two steps where the SQLite store has one, because a retry must reuse the
    seq: ``journal(rows) -> seq`` once per batch, then ``send(seq, rows)`` until it returns
    (True: applied now, False: applied before). ``open`` replays what a crash left journalled.
    """

    def __init__(self, store: PostgresLedgerStore, directory: str | os.PathLike, replica_id: str = ""):
        self.store = store
        self.flusher = Flusher(store, directory, replica_id)
        self.replica_id = self.flusher.replica_id
        self.replayed = (0, 0)   # (applied, applied before) by open()'s replay
        self.db = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _call(self, coroutine):
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the ledger database is not open")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT_S)

    def open(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ledger-postgres", daemon=True)
        self._thread.start()
        try:
            self._call(self.store.open())
            self.replayed = self._call(self.flusher.replay())
        except BaseException:
            self.close()
            raise
        self.db = self.store.pool

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            self._call(self.store.close())
        finally:
            loop, self._loop, self.db = self._loop, None, None
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(CALL_TIMEOUT_S)
            loop.close()

    def journal(self, rows: dict[RowKey, RowValues]) -> int:
        return self.flusher.add(rows)

    def send(self, seq: int, rows: dict[RowKey, RowValues]) -> bool:
        return self._call(self.flusher.send(seq, rows))

    def mark_fired(self, budget: str, period_key: str, threshold: float) -> bool:
        return self._call(self.store.mark_fired(budget, period_key, threshold, self.replica_id))

    def prune(self, before_ns: int) -> int:
        return self._call(self.store.prune(before_ns))

    def sum_cost(self, start_ns: int, end_ns: int, *, team: str | None = None, project: str | None = None,
                 customer: str | None = None) -> float:
        return self._call(self.store.sum_cost(start_ns, end_ns, team=team, project=project, customer=customer))

    def rows(self, start_ns: int, end_ns: int) -> list[Row]:
        return self._call(self.store.rows(start_ns, end_ns))

    def fired(self) -> set[tuple[str, str, float]]:
        return self._call(self.store.fired())


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

