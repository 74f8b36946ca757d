"""Instants as unix nanoseconds, the unit of OTLP span timestamps."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

# Open ends of a price period; far outside any span's timestamp.
EARLIEST = -(2**63)
LATEST = 2**63 - 1


def to_ns(moment: datetime) -> int:
    """Unix nanoseconds of ``moment``; a naive datetime is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def from_ns(unix_nano: int) -> datetime:
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1_000)


def day_start(day: date) -> int:
    return to_ns(datetime.combine(day, time(0), UTC))


def parse_instant(value: object) -> int:
    """Unix nanoseconds from "YYYY-MM-DD" (00:00 UTC), RFC 3339, or a YAML date/datetime.

    A time without an offset is UTC, as YAML reads it. Raises ValueError.
    """
    if isinstance(value, datetime):
        return to_ns(value)
    if isinstance(value, date):
        return day_start(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a date (YYYY-MM-DD) or an RFC 3339 time, got {value!r}")
    text = value.strip()
    try:
        if len(text) == 10:
            return day_start(date.fromisoformat(text))
        return to_ns(datetime.fromisoformat(text.replace("z", "Z")))
    except ValueError:
        raise ValueError(f'"{text}" is not a date (YYYY-MM-DD) or an RFC 3339 time '
                         f'(e.g. 2025-01-01T00:00:00Z)') from None


def describe(unix_nano: int) -> str:
    if unix_nano <= EARLIEST:
        return "-inf"
    if unix_nano >= LATEST:
        return "+inf"
    moment = from_ns(unix_nano)
    if moment.time() == time(0):
        return moment.date().isoformat()
    return moment.isoformat().replace("+00:00", "Z")
