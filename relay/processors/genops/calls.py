"""Calls seen before: the same LLM call reported twice (an instrumented app and OpenRouter
Broadcast, say) is booked once.

The key is ``gen_ai.response.id``. The first copy to arrive is booked. A later copy books
nothing, except when it brings the provider's billed cost and the first copy was only
priced here: then it books the difference, so the total is the provider's number. A counter
cannot go down, so where the billed cost is the lower one the first copy's higher price
stays booked, and the difference is returned as ``overbooked`` for the caller to count.

Bounded by count and by age, whichever ends first; ids longer than ``MAX_ID`` bytes are
remembered by their hash.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

MAX_ID = 128


class CallWindow:
    def __init__(self, max_calls: int, window_ns: int):
        self.max_calls = max_calls
        self.window_ns = window_ns
        self._calls: OrderedDict[str | bytes, list] = OrderedDict()  # id -> [seen_ns, cost, reported]

    @property
    def enabled(self) -> bool:
        return self.max_calls > 0 and self.window_ns > 0

    def __len__(self) -> int:
        return len(self._calls)

    def see(self, call_id: str, cost: float | None, reported: bool, now_ns: int) -> tuple[bool, float, float]:
        """(duplicate, cost to book for this copy, overbooked); a first copy books its own cost."""
        key = call_id if len(call_id) <= MAX_ID else hashlib.sha256(call_id.encode("utf-8", "replace")).digest()
        self._expire(now_ns)
        seen = self._calls.get(key)
        if seen is None:
            self._calls[key] = [now_ns, cost, reported]
            if len(self._calls) > self.max_calls:
                self._calls.popitem(last=False)
            return False, cost or 0.0, 0.0
        _, first_cost, first_reported = seen
        if first_reported or not reported or cost is None:
            return True, 0.0, 0.0
        seen[1], seen[2] = cost, True
        difference = cost - (first_cost or 0.0)
        return (True, difference, 0.0) if difference >= 0 else (True, 0.0, -difference)

    def _expire(self, now_ns: int) -> None:
        calls, limit = self._calls, now_ns - self.window_ns
        while calls:
            first = next(iter(calls.values()))
            if first[0] >= limit:
                return
            calls.popitem(last=False)
