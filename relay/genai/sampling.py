"""How many calls a sampled span stands for: its adjusted count, from the tracestate threshold.

The OpenTelemetry specification ("TraceState: Probability Sampling") has samplers record the
rejection threshold they applied in the span's W3C tracestate, as the ``th`` sub-key of the
``ot`` member: ``ot=th:<hex>``, 1 to 14 hex digits with trailing zeros dropped, a 56-bit
number T once padded back to 14 digits. A span is kept when its randomness is at least T, so
it was kept with probability p = (2^56 - T) / 2^56 and stands for 1/p spans: ``th:0`` is
p = 1, ``th:8`` p = 1/2, ``th:e666666666666a`` about 1/10. The collector's
``probabilistic_sampler`` and the newer SDK samplers write it.

A span without a threshold, or with one that does not parse, counts once: a malformed
tracestate never inflates a count.
"""

from __future__ import annotations

from functools import lru_cache

_MAX = 1 << 56
_DIGITS = 14


def adjusted_count(trace_state: str | None) -> float:
    """1/p for a span with this tracestate; 1.0 without a valid threshold."""
    if not trace_state or "th:" not in trace_state:
        return 1.0
    return _from_state(trace_state)


@lru_cache(maxsize=1024)
def _from_state(trace_state: str) -> float:
    for member in trace_state.split(","):
        key, _, value = member.strip().partition("=")
        if key != "ot":
            continue
        for field in value.split(";"):
            name, _, text = field.partition(":")
            if name == "th":
                return _from_threshold(text)
        return 1.0
    return 1.0


def _from_threshold(text: str) -> float:
    if not 1 <= len(text) <= _DIGITS or any(c not in "0123456789abcdef" for c in text):
        return 1.0
    threshold = int(text.ljust(_DIGITS, "0"), 16)
    return _MAX / (_MAX - threshold)
