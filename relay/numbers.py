"""Reading integers from client text without Python's own hazards: ``int()`` accepts Unicode
digits, underscores and spaces, and past 4300 digits raises ValueError rather than answering;
a receiver wants Go's ``strconv.ParseInt(text, 10, 64)``, which the collector uses."""

from __future__ import annotations

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def parse_int64(text: str) -> int | None:
    """The int64 ``text`` spells (an optional sign, then ASCII digits), or None when it spells
    none or one out of range. Leading zeros are allowed, as in Go."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    # Checked before int(): a 5000-digit string is out of range, not a ValueError.
    significant = digits.lstrip("0") or "0"
    if len(significant) > 19:
        return None
    value = -int(significant) if text[0] == "-" else int(significant)
    return value if INT64_MIN <= value <= INT64_MAX else None
