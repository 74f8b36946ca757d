"""Budget periods and ledger buckets, in a configured IANA time zone.

A daily period is a local calendar day and a monthly period a local calendar
month, each starting at local midnight converted to UTC, so a day is 23 or 25
hours long when the clocks change. Keys name them as people do: "2026-11-27"
and "2026-11". Ledger rows are kept per local hour (or day), and a local hour
never straddles a local midnight, so the rows of a period are exactly those
whose bucket starts inside it.

All instants are integer nanoseconds since the Unix epoch; ends are exclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_DAY_KEY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MONTH_KEY = re.compile(r"(\d{4})-(\d{2})")

Kind = Literal["daily", "monthly"]
Granularity = Literal["hour", "day"]


@dataclass(frozen=True)
class Period:
    kind: str
    key: str
    start_ns: int
    end_ns: int     # exclusive

    def __contains__(self, time_ns: int) -> bool:
        return self.start_ns <= time_ns < self.end_ns


def zone(tz: str) -> ZoneInfo:
    """The zone named ``tz``; a ValueError saying so for a name that is not one."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'unknown time zone "{tz}" (use an IANA name such as "UTC" or "Europe/Berlin")') from None


def period(kind: Kind, time_ns: int, tz: str = "UTC") -> Period:
    """The daily or monthly period (in ``tz``) that contains the instant ``time_ns``."""
    z = zone(tz)
    day = datetime.fromtimestamp(time_ns // NS, z).date()
    found = _of_date(kind, day, z)
    # A zone whose clocks fall back across midnight repeats the last local hour of a day
    # after the next day began; keep the promise that the period contains the instant.
    while time_ns >= found.end_ns:
        found = _of_date(kind, _date_of(found.end_ns, z), z)
    while time_ns < found.start_ns:
        found = _of_date(kind, _date_of(found.start_ns - 1, z), z)
    return found


def period_of_key(key: str, tz: str = "UTC") -> Period:
    """The period a key names: "YYYY-MM-DD" is daily, "YYYY-MM" monthly; ValueError otherwise."""
    z = zone(tz)
    if match := _DAY_KEY.fullmatch(key):
        return _of_date("daily", date(*map(int, match.groups())), z)
    if match := _MONTH_KEY.fullmatch(key):
        return _of_date("monthly", date(int(match.group(1)), int(match.group(2)), 1), z)
    raise ValueError(f'"{key}" is not a period key (use "YYYY-MM-DD" or "YYYY-MM")')


def bucket_start(time_ns: int, granularity: Granularity, tz: str = "UTC") -> int:
    """The start of the local hour (or day) in ``tz`` that contains ``time_ns``."""
    if granularity == "day":
        return period("daily", time_ns, tz).start_ns
    if granularity != "hour":
        raise ValueError(f'granularity must be "hour" or "day", not "{granularity}"')
    seconds = time_ns // NS
    # The local hour is found with the offset in force at the instant: offsets change on
    # local hour boundaries, so the bucket never reaches back across a change.
    offset = datetime.fromtimestamp(seconds, zone(tz)).utcoffset() // timedelta(seconds=1)
    local = seconds + offset
    return (local - local % 3600 - offset) * NS


def ns_of(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exactly (no float on the way)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone")
    return (moment - _EPOCH) // _MICROSECOND * 1000


def _of_date(kind: str, day: date, z: ZoneInfo) -> Period:
    if kind == "daily":
        return Period("daily", day.isoformat(), _midnight_ns(day, z), _midnight_ns(day + timedelta(days=1), z))
    if kind == "monthly":
        first = day.replace(day=1)
        following = date(first.year + 1, 1, 1) if first.month == 12 else date(first.year, first.month + 1, 1)
        return Period("monthly", f"{first.year:04d}-{first.month:02d}", _midnight_ns(first, z),
                      _midnight_ns(following, z))
    raise ValueError(f'period kind must be "daily" or "monthly", not "{kind}"')


def _midnight_ns(day: date, z: ZoneInfo) -> int:
    # fold=0: a midnight skipped by a spring-forward maps to the instant of the change,
    # which is then the first instant of the day.
    return ns_of(datetime(day.year, day.month, day.day, tzinfo=z))


def _date_of(time_ns: int, z: ZoneInfo) -> date:
    return datetime.fromtimestamp(time_ns // NS, z).date()
