"""Calls seen before: the same LLM call reported twice (an instrumented app and OpenRouter
Broadcast, say) is booked once.

The key is ``gen_ai.response.id``. The first copy to arrive is booked. A later copy books
nothing, except when it brings the provider's billed cost and the first copy was only
priced here: then it books the difference, so the total is the provider's number. A counter
cannot go down, so where the billed cost is the lower one the first copy's higher price
stays booked, and the difference is returned as ``overbooked`` for the caller to count.

Memory is bounded by count and time in two generations: new ids go into the current
generation; it becomes the previous one when it holds ``max_calls / 2`` ids or is
``window / 2`` old, and the previous one is dropped. So a call is remembered for at least
``window / 2`` and the last ``max_calls / 2`` calls, at most ``window`` and ``max_calls``.

``window()`` gives the native window (``relay.genai._usage.Window``) where it was built:
two fixed tables of 64-bit id hashes, 16 bytes a slot, 1 MiB for the default 20,000
calls, with no Python object per call. ``CallWindow`` is the same rules in Python
(ids longer than ``MAX_ID`` kept as their hash), used without a compiler. Two different ids
with one 64-bit hash would count as one call; among 20,000 calls the chance is about 1 in 10^10.
"""

from __future__ import annotations

import hashlib

try:
    from relay.genai._usage import Window
except ImportError:  # no compiler at install time
    Window = None

MAX_ID = 128


def window(max_calls: int, window_ns: int):
    return (Window or CallWindow)(max_calls, window_ns)


class CallWindow:
    def __init__(self, max_calls: int, window_ns: int):
        self.enabled = max_calls > 0 and window_ns > 0
        self.half_calls = max(1, max_calls // 2)
        self._half_ns = max(1, window_ns // 2)
        self.current: dict = {}  # id -> see ``remembered``
        self.previous: dict = {}
        self._since: int | None = None

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)

    def expire(self, now_ns: int) -> None:
        """Rotate the generations that have aged out; the caller runs it once per request."""
        if self._since is None:
            self._since = now_ns
        elapsed = now_ns - self._since
        if elapsed >= self._half_ns:
            self.previous = {} if elapsed >= 2 * self._half_ns else self.current
            self.current, self._since = {}, now_ns

    def rotate(self) -> None:
        self.previous, self.current = self.current, {}

    def see(self, call_id: str, cost: float | None, reported: bool) -> tuple[float, float] | None:
        """None for a first copy (it books its own cost); for a later one (cost to book, overbooked)."""
        if not self.enabled:
            return None
        key = call_id if len(call_id) <= MAX_ID else hashlib.sha256(call_id.encode("utf-8", "replace")).digest()
        current = self.current
        if key in current:
            first = current[key]
        elif key in self.previous:
            first = self.previous[key]
        else:
            current[key] = remembered(cost, reported)
            if len(current) >= self.half_calls:
                self.rotate()
            return None
        # first: the first copy's computed cost, or None when it was reported (nothing more to book).
        if first is None or not reported or cost is None:
            return 0.0, 0.0
        current[key] = None
        difference = cost - first
        return (difference, 0.0) if difference >= 0 else (0.0, -difference)


def remembered(cost: float | None, reported: bool) -> float | None:
    """What a first copy leaves: the cost a later, reported copy must top up, or None.

    A plain float (or None) rather than a tuple, so the garbage collector never walks the window."""
    return None if reported else (cost or 0.0)
