"""Reading the attributes the genops processor wants from a span, by slot.

``Reader(keys).read(span)`` -> (mask, values): ``values[i]`` is the first
entry of ``keys[i]`` as a str, int, float or bool, Ellipsis when its value is
of another kind (array, map, bytes, empty), None when the key is absent; bit
``i`` of ``mask`` is set when present. A (mask, values) pair is hashable, so
spans that carry the same attributes can share work.

The native scanner (``_scan``, built where a C compiler exists) reads the
span's wire bytes and makes objects only for wanted keys; the pure-Python
path has the same contract and is what runs without it.
"""

from __future__ import annotations

_SCALARS = frozenset(("string_value", "bool_value", "int_value", "double_value"))

try:
    from relay.processors.genops._scan import scan as _scan
except ImportError:  # no compiler at install time: same results, more time per span
    _scan = None

NATIVE = _scan is not None
MAX_SLOTS = 63


class Reader:
    def __init__(self, keys, native: bool = NATIVE):
        if len(keys) > MAX_SLOTS:
            raise ValueError(f"at most {MAX_SLOTS} keys")
        self.keys = tuple(keys)
        self.index = {key: slot for slot, key in enumerate(self.keys)}
        self.read = self._read_native if native and _scan is not None else self._read_python

    def _read_native(self, span) -> tuple[int, tuple]:
        return _scan(span.SerializeToString(), self.index, len(self.keys))

    def _read_python(self, span) -> tuple[int, tuple]:
        index = self.index
        values = [None] * len(self.keys)
        mask = 0
        for kv in span.attributes:
            slot = index.get(kv.key)
            if slot is None or mask >> slot & 1:
                continue
            mask |= 1 << slot
            value = kv.value
            kind = value.WhichOneof("value")
            values[slot] = getattr(value, kind) if kind in _SCALARS else ...
        return mask, tuple(values)
