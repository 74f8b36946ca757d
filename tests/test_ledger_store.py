"""The cost ledger's periods, its SQLite file and the in-memory pending spend.

What is checked is the promise to the operator: a day and a month are the local
calendar's, whatever the clocks do; every flush the relay reported committed is
in the file after a restart or a kill -9, readable by the report command while
the relay writes; a fired threshold stays fired; a damaged file costs what was
damaged, never the relay.
"""

from __future__ import annotations

import os
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.ledger.facts import SpanFacts
from relay.ledger.periods import NS, Period, bucket_start, period, period_of_key
from relay.ledger.store import LedgerStore, Pending, Row, RowValues
from tests.support import kill_after_commit

HOUR = 3600 * NS


def at(text: str) -> int:
    """Nanoseconds of an ISO 8601 instant with its offset."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1) * 1000


def facts(time_ns: int, cost: float = 1.0, *, team="alpha", project="chat", model="gpt-4o", provider="openai",
          customer="", tokens=None, error=False) -> SpanFacts:
    return SpanFacts(time_ns, team, project, model, provider, customer, cost,
                     tokens if tokens is not None else {"input": 10, "output": 5, "cache_read": 0,
                                                        "cache_write": 0, "reasoning": 0}, error)


def values(cost: float, requests: int = 1, errors: int = 0, **tokens) -> RowValues:
    return RowValues(cost=cost, requests=requests, errors=errors, **tokens)


def opened(path: Path, **kwargs) -> LedgerStore:
    store = LedgerStore(path, **kwargs)
    store.open()
    return store


# --- periods ----------------------------------------------------------------------------

def test_a_day_ends_at_utc_midnight_by_default():
    before, after = at("2026-11-27T23:59:59.999999+00:00"), at("2026-11-28T00:00:00+00:00")
    assert period("daily", before) == Period("daily", "2026-11-27", at("2026-11-27T00:00:00+00:00"), after)
    assert period("daily", after) == Period("daily", "2026-11-28", after, at("2026-11-29T00:00:00+00:00"))
    assert period("daily", before + 1).key == "2026-11-27"   # nanoseconds count: end is exclusive
    assert period("daily", after - 1).key == "2026-11-27"


@pytest.mark.parametrize("instant, key, start, end", [
    ("2026-11-30T23:59:59+00:00", "2026-11", "2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00"),
    ("2026-12-31T23:59:59+00:00", "2026-12", "2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
    ("2027-01-01T00:00:00+00:00", "2027-01", "2027-01-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00"),
    ("2024-02-29T12:00:00+00:00", "2024-02", "2024-02-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00"),
    ("2025-02-28T23:59:59+00:00", "2025-02", "2025-02-01T00:00:00+00:00", "2025-03-01T00:00:00+00:00"),
])
def test_a_month_is_the_calendar_month(instant, key, start, end):
    assert period("monthly", at(instant)) == Period("monthly", key, at(start), at(end))


def test_a_leap_day_is_a_day_of_february():
    leap = period("daily", at("2024-02-29T08:00:00+00:00"))
    assert (leap.key, leap.end_ns - leap.start_ns) == ("2024-02-29", 24 * HOUR)
    assert period("daily", leap.end_ns).key == "2024-03-01"
    assert period("daily", leap.start_ns - 1).key == "2024-02-28"


def test_days_and_months_follow_the_local_calendar_across_dst():
    berlin = "Europe/Berlin"
    # Spring forward (02:00 -> 03:00 on 29 March 2026): a 23-hour day from local midnight to local midnight.
    spring = period("daily", at("2026-03-29T12:00:00+00:00"), berlin)
    assert spring == Period("daily", "2026-03-29", at("2026-03-29T00:00:00+01:00"), at("2026-03-30T00:00:00+02:00"))
    assert spring.end_ns - spring.start_ns == 23 * HOUR
    # Fall back (03:00 -> 02:00 on 25 October 2026): 25 hours.
    autumn = period("daily", at("2026-10-25T01:30:00+00:00"), berlin)
    assert autumn == Period("daily", "2026-10-25", at("2026-10-25T00:00:00+02:00"), at("2026-10-26T00:00:00+01:00"))
    assert autumn.end_ns - autumn.start_ns == 25 * HOUR
    # 23:30 UTC on the 24th is already the 25th in Berlin.
    assert period("daily", at("2026-10-24T23:30:00+00:00"), berlin).key == "2026-10-25"
    # The month that contains the spring change starts at a winter midnight and ends at a summer one.
    march = period("monthly", at("2026-03-31T22:30:00+00:00"), berlin)
    assert march == Period("monthly", "2026-04", at("2026-04-01T00:00:00+02:00"), at("2026-05-01T00:00:00+02:00"))
    assert period("monthly", at("2026-03-31T21:59:59+00:00"), berlin) == Period(
        "monthly", "2026-03", at("2026-03-01T00:00:00+01:00"), at("2026-04-01T00:00:00+02:00"))


def test_a_clock_change_at_midnight_still_gives_whole_days():
    # Santiago changes at midnight: on 7 April 2024 00:00 -03 becomes 6 April 23:00 -04
    # (the 6th has 25 hours) and on 8 September 2024 00:00 -04 becomes 01:00 -03 (23 hours).
    santiago = "America/Santiago"
    long_day = period("daily", at("2024-04-06T23:30:00-04:00"), santiago)   # the repeated hour
    assert long_day == Period("daily", "2024-04-06", at("2024-04-06T00:00:00-03:00"), at("2024-04-07T00:00:00-04:00"))
    assert long_day.end_ns - long_day.start_ns == 25 * HOUR
    short_day = period("daily", at("2024-09-08T12:00:00-03:00"), santiago)
    assert short_day.start_ns == at("2024-09-08T01:00:00-03:00")   # midnight never happened: the change is the start
    assert short_day.end_ns - short_day.start_ns == 23 * HOUR
    assert period("daily", short_day.start_ns - 1, santiago).key == "2024-09-07"


def test_hour_buckets_are_local_hours():
    berlin = "Europe/Berlin"
    # The repeated hour 02:00-03:00 on 25 October 2026 is two buckets, one per offset.
    first, second = at("2026-10-25T02:30:00+02:00"), at("2026-10-25T02:30:00+01:00")
    assert bucket_start(first, "hour", berlin) == at("2026-10-25T02:00:00+02:00")
    assert bucket_start(second, "hour", berlin) == at("2026-10-25T02:00:00+01:00")
    # A half-hour offset: the local hour starts at half past in UTC, as the local day does.
    kolkata = "Asia/Kolkata"
    instant = at("2026-01-01T18:29:59+00:00")
    assert bucket_start(instant, "hour", kolkata) == at("2026-01-01T17:30:00+00:00")
    assert bucket_start(instant + NS, "hour", kolkata) == period("daily", instant + NS, kolkata).start_ns
    assert bucket_start(instant, "day", kolkata) == at("2026-01-01T00:00:00+05:30")
    assert bucket_start(at("2026-05-05T05:05:05.5+00:00"), "hour") == at("2026-05-05T05:00:00+00:00")


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "America/Santiago", "Asia/Kolkata", "Australia/Lord_Howe",
         "Pacific/Chatham", "Asia/Kathmandu"]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=at("1990-01-01T00:00:00+00:00"), max_value=at("2060-01-01T00:00:00+00:00")),
       st.sampled_from(ZONES))
def test_every_instant_lies_in_its_periods_and_bucket(time_ns, tz):
    for kind in ("daily", "monthly"):
        found = period(kind, time_ns, tz)
        assert found.start_ns <= time_ns < found.end_ns
        assert period_of_key(found.key, tz) == found      # the key names the period the file stores
        assert period(kind, found.start_ns, tz) == found and period(kind, found.end_ns, tz).start_ns == found.end_ns
    day = period("daily", time_ns, tz)
    for granularity in ("hour", "day"):
        start = bucket_start(time_ns, granularity, tz)
        assert day.start_ns <= start <= time_ns          # a bucket never crosses into another day
    assert 22 * HOUR <= day.end_ns - day.start_ns <= 26 * HOUR


def test_unknown_names_are_errors():
    with pytest.raises(ValueError, match="unknown time zone"):
        period("daily", 0, "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="period kind"):
        period("weekly", 0)
    with pytest.raises(ValueError, match="not a period key"):
        period_of_key("2026-W48")
    with pytest.raises(ValueError, match="granularity"):
        LedgerStore(Path("x"), granularity="minute")


# --- the file ---------------------------------------------------------------------------

T0 = at("2026-11-27T10:15:00+00:00")
B0 = at("2026-11-27T10:00:00+00:00")


def test_writes_add_to_the_stored_rows(tmp_path):
    store = opened(tmp_path / "ledger.sqlite")
    try:
        key = (B0, "alpha", "chat", "gpt-4o", "openai", "")
        other = (B0 + HOUR, "beta", "search", "claude", "anthropic", "acme")
        store.write({key: values(0.25, input=100, output=50, reasoning=7),
                     other: values(2.0, requests=2, errors=1, cache_read=30)})
        store.write({key: values(0.5, requests=3, errors=2, input=1, cache_write=4)})
        store.write({})
        assert store.rows(B0, B0 + 2 * HOUR) == [
            Row(*key, 0.75, {"input": 101, "output": 50, "cache_read": 0, "cache_write": 4, "reasoning": 7}, 4, 2),
            Row(*other, 2.0, {"input": 0, "output": 0, "cache_read": 30, "cache_write": 0, "reasoning": 0}, 2, 1),
        ]
        assert store.rows(B0, B0 + HOUR) == store.rows(B0, B0 + 2 * HOUR)[:1]   # end exclusive
        assert store.sum_cost(B0, B0 + 2 * HOUR) == 2.75
        assert store.sum_cost(B0, B0 + 2 * HOUR, team="beta") == 2.0
        assert store.sum_cost(B0, B0 + 2 * HOUR, team="alpha", project="search") == 0.0
        assert store.sum_cost(B0, B0 + 2 * HOUR, customer="acme") == 2.0
        assert store.sum_cost(B0 + HOUR, B0 + 2 * HOUR, team="beta", project="search", customer="acme") == 2.0
        assert store.sum_cost(B0 + 2 * HOUR, B0 + 3 * HOUR) == 0.0
    finally:
        store.close()


def test_the_file_is_in_wal_mode_and_survives_reopen(tmp_path):
    path = tmp_path / "ledger.sqlite"
    key = (B0, "alpha", "chat", "gpt-4o", "openai", "")
    store = opened(path)
    store.write({key: values(1.5, input=3)})
    store.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    store = opened(path, fsync=True)
    try:
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL
        store.write({key: values(1.0)})
        [row] = store.rows(0, B0 + HOUR)
        assert (row.cost, row.requests, row.tokens["input"]) == (2.5, 2, 3)
        assert store.moved_aside is None
    finally:
        store.close()


def test_a_reader_sees_every_committed_write_while_the_writer_is_open(tmp_path):
    path = tmp_path / "ledger.sqlite"
    writer = opened(path, granularity="day", tz="Europe/Berlin")
    key = (B0, "alpha", "chat", "gpt-4o", "openai", "")
    try:
        writer.write({key: values(1.0)})
        reader = LedgerStore.open_readonly(path)
        try:
            # The reader buckets and computes periods as the writer does.
            assert (reader.granularity, reader.tz) == ("day", "Europe/Berlin")
            assert reader.sum_cost(0, B0 + HOUR) == 1.0
            writer.write({key: values(0.5)})
            assert reader.sum_cost(0, B0 + HOUR) == 1.5
            assert reader.rows(0, B0 + HOUR)[0].requests == 2
            with pytest.raises(PermissionError):
                reader.write({key: values(1.0)})
            with pytest.raises(PermissionError):
                reader.mark_fired("alpha", "2026-11", 0.5)
        finally:
            reader.close()
    finally:
        writer.close()
    # Also after the writer closed cleanly (its WAL and shared-memory files gone).
    reader = LedgerStore.open_readonly(path)
    try:
        assert reader.sum_cost(0, B0 + HOUR) == 1.5
    finally:
        reader.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []


def test_the_reader_never_creates_or_repairs_a_file(tmp_path):
    with pytest.raises(OSError, match="no cost ledger at"):
        LedgerStore.open_readonly(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 200)
    with pytest.raises(OSError, match="cannot read the cost ledger"):
        LedgerStore.open_readonly(garbage)
    assert garbage.read_bytes() == b"this is not a database" * 200
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.close()
    with pytest.raises(OSError, match="is not a cost ledger"):
        LedgerStore.open_readonly(other)


def test_fired_thresholds_persist_and_a_repeat_is_ignored(tmp_path):
    path = tmp_path / "ledger.sqlite"
    store = opened(path)
    store.mark_fired("alpha", "2026-11-27", 0.5)
    store.mark_fired("alpha", "2026-11-27", 0.8)
    store.mark_fired("alpha", "2026-11-27", 0.5)
    store.mark_fired("alpha", "2026-11", 0.5)
    store.mark_fired("alpha/chat", "2026-11-27", 0.95)
    store.close()
    store = opened(path)
    try:
        assert store.fired() == {("alpha", "2026-11-27", 0.5), ("alpha", "2026-11-27", 0.8),
                                 ("alpha", "2026-11", 0.5), ("alpha/chat", "2026-11-27", 0.95)}
        store.mark_fired("alpha", "2026-11-27", 0.8)
        assert len(store.fired()) == 4
    finally:
        store.close()


def test_prune_drops_old_rows_and_the_marks_of_ended_periods(tmp_path):
    store = opened(tmp_path / "ledger.sqlite", tz="Europe/Berlin")
    try:
        day = period("daily", T0, "Europe/Berlin")
        store.write({(day.start_ns + hour * HOUR, "alpha", "", "m", "p", ""): values(1.0) for hour in range(24)})
        store.write({(day.start_ns - HOUR, "alpha", "", "m", "p", ""): values(5.0)})   # the day before
        for key in ("2026-11-26", "2026-11-27", "2026-10", "2026-11", "not-a-key"):
            store.mark_fired("alpha", key, 0.5)
        # In the middle of an hour: that hour's bucket is kept whole.
        assert store.prune(day.start_ns + 10 * HOUR + HOUR // 2) == 11
        kept = [row.bucket_start_ns for row in store.rows(0, day.end_ns)]
        assert kept == [day.start_ns + hour * HOUR for hour in range(10, 24)]
        # The day before and October ended; today and November have not.
        assert store.fired() == {("alpha", "2026-11-27", 0.5), ("alpha", "2026-11", 0.5), ("alpha", "not-a-key", 0.5)}
        assert store.prune(day.end_ns) == 14
        assert store.fired() == {("alpha", "2026-11", 0.5), ("alpha", "not-a-key", 0.5)}
        assert store.prune(0) == 0
    finally:
        store.close()


def test_a_malformed_file_is_moved_aside_and_a_fresh_one_started(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"\x00garbage, not a database" * 500)
    store = opened(path)
    try:
        assert store.moved_aside is not None and store.salvaged == 0
        assert re.fullmatch(re.escape(path.name) + r"\.corrupt-\d+", store.moved_aside.name)
        assert store.moved_aside.read_bytes() == b"\x00garbage, not a database" * 500
        store.write({(B0, "alpha", "", "m", "p", ""): values(1.0)})
        assert store.sum_cost(0, B0 + HOUR) == 1.0
    finally:
        store.close()


def test_a_damaged_page_keeps_the_readable_rows(tmp_path):
    path = tmp_path / "ledger.sqlite"
    store = opened(path)
    count = 600
    # Long names spread the rows over many pages.
    written = {(B0 + n * HOUR, f"team-{n:04d}-" + "x" * 100, "", "m", "p", ""): values(float(n)) for n in range(count)}
    store.write(written)
    store.mark_fired("team-0001", "2026-11", 0.5)
    store.close()
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page) // 2
    data[middle * page:(middle + 1) * page] = b"\xde\xad\xbe\xef" * (page // 4)
    path.write_bytes(bytes(data))

    store = opened(path)
    try:
        assert store.moved_aside is not None and store.moved_aside.exists()
        rows = store.rows(0, B0 + count * HOUR)
        assert 0 < store.salvaged == len(rows) < count
        assert count - len(rows) < 100      # one page's rows, those on either side kept
        for row in rows:
            assert written[row.key].cost == row.cost and row.requests == 1
        assert {r.bucket_start_ns for r in rows} >= {B0, B0 + (count - 1) * HOUR}
        assert store.fired() == {("team-0001", "2026-11", 0.5)}
    finally:
        store.close()


def test_an_unopenable_path_is_an_os_error_naming_it(tmp_path):
    directory = tmp_path / "a-directory"
    directory.mkdir()
    with pytest.raises(OSError, match=re.escape(f"cannot open the cost ledger {directory}")):
        LedgerStore(directory).open()
    with pytest.raises(OSError, match="cannot open the cost ledger"):
        LedgerStore(tmp_path / "missing" / "ledger.sqlite").open()
    assert list(directory.iterdir()) == []


def test_a_killed_writer_loses_nothing_it_committed(tmp_path):
    """kill -9 right after the writer says its flushes are committed: all of them are there."""
    path = tmp_path / "ledger.sqlite"
    flushes = 50
    child = (
        "import sys\n"
        "from pathlib import Path\n"
        "from relay.ledger.facts import SpanFacts\n"
        "from relay.ledger.store import LedgerStore, Pending\n"
        "store = LedgerStore(Path(sys.argv[1]))\n"
        "store.open()\n"
        "pending = Pending()\n"
        "for n in range(int(sys.argv[2])):\n"
        "    for m in range(20):\n"
        f"        pending.add(SpanFacts({T0} + m * 600 * 10**9, 'team-%d' % (m % 3), 'p', 'model', 'prov', '',\n"
        "                              0.125, {'input': m}, m == 0))\n"
        "    store.write(pending.take())\n"
        "print('committed', flush=True)\n"
        "sys.stdin.read()  # hold the file open: only the kill ends this process\n"
    )
    def read_while_the_writer_holds_the_file() -> float:
        # Another process reads what the writer committed while it still holds the file.
        reader = LedgerStore.open_readonly(path)
        try:
            return reader.sum_cost(0, T0 + 4 * HOUR)
        finally:
            reader.close()

    live = kill_after_commit(child, str(path), str(flushes), while_alive=read_while_the_writer_holds_the_file)
    assert live == flushes * 20 * 0.125
    # Never checkpointed: the flushes live only in the WAL, which the reopen must recover.
    assert os.path.getsize(str(path) + "-wal") > 0

    store = opened(path)
    try:
        assert store.moved_aside is None
        rows = store.rows(0, T0 + 4 * HOUR)
        assert sum(r.requests for r in rows) == flushes * 20
        assert sum(r.errors for r in rows) == flushes
        assert store.sum_cost(0, T0 + 4 * HOUR) == flushes * 20 * 0.125
        assert sum(r.tokens["input"] for r in rows) == flushes * sum(range(20))
    finally:
        store.close()


# --- pending ----------------------------------------------------------------------------

def test_pending_collects_rows_as_the_file_keys_them():
    pending = Pending()
    pending.add(facts(T0, 0.5, error=True))
    pending.add(facts(T0 + 60 * NS, 0.25, tokens={"input": 1, "output": 2, "cache_read": 3, "cache_write": 4,
                                                  "reasoning": 5}))
    pending.add(facts(T0 + HOUR, 1.0, team="beta", customer="acme", tokens={}))
    assert len(pending) == 2     # the first two share a row
    assert pending.sum_cost(B0, B0 + HOUR) == 0.75
    assert pending.sum_cost(B0, B0 + 2 * HOUR) == 1.75
    assert pending.sum_cost(B0, B0 + 2 * HOUR, team="beta") == 1.0
    assert pending.sum_cost(B0, B0 + 2 * HOUR, customer="acme") == 1.0
    assert pending.sum_cost(B0, B0 + 2 * HOUR, team="alpha", project="chat") == 0.75
    assert pending.sum_cost(B0, B0 + 2 * HOUR, project="other") == 0.0
    taken = pending.take()
    assert len(pending) == 0 and pending.sum_cost(0, B0 + 2 * HOUR) == 0.0
    first = taken[(B0, "alpha", "chat", "gpt-4o", "openai", "")]
    assert first == RowValues(0.75, input=11, output=7, cache_read=3, cache_write=4, reasoning=5, requests=2, errors=1)
    assert first.tokens == {"input": 11, "output": 7, "cache_read": 3, "cache_write": 4, "reasoning": 5}
    assert taken[(B0 + HOUR, "beta", "chat", "gpt-4o", "openai", "acme")] == RowValues(1.0, requests=1)

    # Rows taken but not written go back, added to what collected since.
    pending.add(facts(T0, 0.125))
    pending.restore(taken)
    assert pending.sum_cost(0, B0 + 2 * HOUR) == 1.875
    assert pending.rows[(B0, "alpha", "chat", "gpt-4o", "openai", "")].requests == 3


def test_pending_buckets_match_the_store_across_a_clock_change():
    tz = "Europe/Berlin"
    pending = Pending(tz=tz)
    daily = Pending(granularity="day", tz=tz)
    start = at("2026-10-24T20:00:00+00:00")
    times = [start + n * 7 * 60 * NS for n in range(120)]            # every 7 minutes over 14 hours
    times += [start + 13 * HOUR, start, start + 5 * HOUR + 1]        # and back again
    for time_ns in times:
        pending.add(facts(time_ns, 1.0))
        daily.add(facts(time_ns, 1.0))
    expected: dict[int, int] = {}
    for time_ns in times:
        expected[bucket_start(time_ns, "hour", tz)] = expected.get(bucket_start(time_ns, "hour", tz), 0) + 1
    assert {key[0]: row.requests for key, row in pending.rows.items()} == expected
    assert len(expected) == 14
    # The local hour 02:00-03:00 happens twice that night: two buckets.
    assert {at("2026-10-25T02:00:00+02:00"), at("2026-10-25T02:00:00+01:00")} <= expected.keys()
    assert {key[0]: row.requests for key, row in daily.rows.items()} == {
        at("2026-10-24T00:00:00+02:00"): sum(1 for t in times if t < at("2026-10-25T00:00:00+02:00")),
        at("2026-10-25T00:00:00+02:00"): sum(1 for t in times if t >= at("2026-10-25T00:00:00+02:00")),
    }


def test_pending_writes_into_the_store_unchanged(tmp_path):
    store = opened(tmp_path / "ledger.sqlite", tz="Asia/Kolkata")
    try:
        pending = Pending(tz="Asia/Kolkata")
        day = period("daily", T0, "Asia/Kolkata")
        for n in range(100):
            pending.add(facts(day.start_ns + n * 14 * 60 * NS, n / 8, team=f"t{n % 4}"))
        expected = {team: pending.sum_cost(day.start_ns, day.end_ns, team=team) for team in ("t0", "t1", "t2", "t3")}
        store.write(pending.take())
        for team, cost in expected.items():
            assert store.sum_cost(day.start_ns, day.end_ns, team=team) == cost
        assert store.sum_cost(day.start_ns, day.end_ns) == sum(n / 8 for n in range(100))
    finally:
        store.close()
