"""The native path of ``usage``: metrics seen before, added without a Python step per point.

Once a metric's points at one place of one resource have been read (``UsageMetrics``), and
the same points come again (an equal shape: the same attributes and bounds in the same
order), what each point adds to is known: its kind of call (usage) or its duration cell, and
its token role. That is a plan: one packed entry per point, and the points' cumulative state
(start, sum, count, bucket counts) packed beside it. ``relay._points.accumulate`` then applies
the temporality rules of ``UsageMetrics._grown`` to every point in one call and sums what
they grew by into the request's accumulator, a record per kind of call (and time) or
duration cell; the request's calls are priced from those records once it is read
(``flush``), so the Python work is per kind of call, not per point.

A series' state lives in exactly one place: in ``UsageMetrics.last`` while no plan holds it,
else in the one plan that does (``owner``). A plan hands its states back (``spill``) before
its metric is read point by point again, and when plans are forgotten. A usage record holds
one time; a point of another time for it first prices what the records hold (``CONFLICT``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from relay import points

try:
    from relay import _points
except ImportError:  # no compiler at install time: every metric is read point by point
    _points = None

NATIVE = _points is not None
CONFLICT = _points.CONFLICT if NATIVE else None
ROLES = ("input", "output", "cache_read", "cache_write", "reasoning")
ROLE_INDEX = {role: at for at, role in enumerate(ROLES)}
_ENTRY = struct.Struct("<iBBH")  # slot, role, labels cut, bucket count
_STATE = struct.Struct("<QQdQQ")  # seen, start, sum, count, bucket count
_USAGE = struct.Struct(f"<QQQ{len(ROLES)}d{len(ROLES)}Q")  # time, generation, role mask, tokens, calls
_DURATION = struct.Struct("<QQdQQQ")  # time, generation, sum, count, points, bucket count


@dataclass(slots=True)
class Last:
    """A cumulative series' last point."""

    start_ns: int
    total: float
    count: int
    size: int  # how many buckets the point had
    buckets: tuple | list | None  # their counts, kept for a duration series


class Plan:
    __slots__ = ("entries", "state", "series", "sizes", "durations", "live")

    def __init__(self, entries: bytes, state: bytearray, series: list, sizes: list, durations: bool):
        self.entries, self.state, self.series, self.sizes = entries, state, series, sizes
        self.durations = durations
        self.live = True


class Plans:
    def __init__(self, last):
        self.last = last  # UsageMetrics.last: series -> Last, for series no plan holds
        self.owner: dict = {}  # series -> the plan that holds its state
        self.calls: list = []  # slot -> _Call
        self.durations: list = []  # slot -> _Durations
        self.usage_acc = bytearray()
        self.duration_acc = bytearray()
        self.generation = 1
        self.touched_calls: list[int] = []
        self.touched_durations: list[int] = []

    def slot(self, target, durations: bool) -> int:
        """A slot for a kind of call (or a duration cell): where its record is in the accumulator."""
        slots, acc = (self.durations, self.duration_acc) if durations else (self.calls, self.usage_acc)
        record = _points.DURATION_RECORD if durations else _points.USAGE_RECORD
        slots.append(target)
        if len(acc) < len(slots) * record:
            acc.extend(bytes(max(len(acc), 64 * record)))
        return len(slots) - 1

    def spill_all(self) -> None:
        for plan in {id(plan): plan for plan in self.owner.values()}.values():
            self.spill(plan)

    def forget(self) -> None:
        """Hands every plan's states back and drops the slots (their calls are forgotten)."""
        self.spill_all()
        self.calls.clear()
        self.durations.clear()
        self.touched_calls.clear()
        self.touched_durations.clear()

    def build(self, decided: list, numbers: bytes, durations: bool) -> Plan | None:
        """The plan of a metric just read point by point; None where it cannot have one (more
        buckets than the native path takes, or one series twice)."""
        rows = points.rows(numbers, durations)
        series_of, sizes = [], []
        for found, row in zip(decided, rows):
            series = found[0] if found is not None else None
            size = len(row[4]) if durations else 0
            if size > _points.MAX_BUCKETS or (series is not None and series in series_of):
                return None
            series_of.append(series)
            sizes.append(size)
        for series in series_of:
            holder = self.owner.get(series) if series is not None else None
            if holder is not None:
                self.spill(holder)
        entries, state = [], bytearray()
        plan = Plan(b"", state, series_of, sizes, durations)
        for found, series, size in zip(decided, series_of, sizes):
            if series is None:
                entries.append(_ENTRY.pack(-1, 0, 0, 0))
                state += _STATE.pack(0, 0, 0.0, 0, 0)
                continue
            entries.append(_ENTRY.pack(found[2].slot, 0 if durations else ROLE_INDEX[found[3]], min(found[1], 255),
                                       size))
            last = self.last.pop(series, None)
            if last is None:
                state += _STATE.pack(0, 0, 0.0, 0, 0)
            else:
                state += _STATE.pack(1, last.start_ns, last.total, last.count, last.size)
            if durations:
                kept = last.buckets if last is not None and last.buckets is not None else ()
                state += struct.pack(f"<{size}Q", *(kept if len(kept) == size else (0,) * size))
            self.owner[series] = plan
        plan.entries = b"".join(entries)
        return plan

    def spill(self, plan: Plan) -> None:
        """Hands the plan's states back to ``last``; the plan is not run again."""
        at = 0
        for series, size in zip(plan.series, plan.sizes):
            seen, start, total, count, size_seen = _STATE.unpack_from(plan.state, at)
            at += _STATE.size
            buckets = struct.unpack_from(f"<{size}Q", plan.state, at) if plan.durations else None
            at += 8 * size
            if series is None or self.owner.get(series) is not plan:
                continue
            del self.owner[series]
            if seen:
                self.last[series] = Last(start, total, count, size_seen, buckets)
        plan.live = False

    def run(self, plan: Plan, numbers: bytes, count: int, cumulative: bool, baseline_only: bool,
            started_ns: int) -> int:
        """Adds the metric's points by the plan: the labels cut on the points that added, or
        ``_points.REPLAN`` (read them point by point) or ``_points.CONFLICT`` (price what the
        accumulator holds, then run again)."""
        if plan.durations:
            acc, touched = self.duration_acc, self.touched_durations
        else:
            acc, touched = self.usage_acc, self.touched_calls
        return _points.accumulate(numbers, count, plan.entries, plan.state, plan.durations, cumulative,
                                  baseline_only, started_ns, acc, self.generation, touched)

    def usage(self):
        """(kind of call, roles reported as a mask over ROLES, tokens and calls by role, time) of
        each usage record of this generation."""
        unpack, acc, record, calls = _USAGE.unpack_from, self.usage_acc, _points.USAGE_RECORD, self.calls
        for slot in self.touched_calls:
            fields = unpack(acc, slot * record)
            yield calls[slot], fields[2], fields[3:3 + len(ROLES)], fields[3 + len(ROLES):], fields[0]

    def duration_records(self):
        """(duration cell, sum, count, points, bucket counts) of each record of this generation."""
        for slot in self.touched_durations:
            at = slot * _points.DURATION_RECORD
            _, _, total, count, added, size = _DURATION.unpack_from(self.duration_acc, at)
            yield (self.durations[slot], total, count, added,
                   struct.unpack_from(f"<{size}Q", self.duration_acc, at + _points.DURATION_HEAD))

    def next_generation(self) -> None:
        self.generation += 1
        self.touched_calls.clear()
        self.touched_durations.clear()
