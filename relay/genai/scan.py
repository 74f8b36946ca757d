"""Reading the attributes the genops processor wants, for every span of a request at once.

``Reader(static_keys, dynamic_keys).read(request)`` -> one ``(mask, signature,
dynamic, status, duration, trace_state)`` per span, in request order:

- bit ``i`` of ``mask`` is set when key ``i`` (static keys first) is present;
- ``signature`` holds the raw values of the present static keys as bytes
  (slot number, varint length, serialized AnyValue, in slot order): hashable,
  so spans with the same attribution, models and provider share one plan;
- ``dynamic[j]`` is the first value of dynamic key ``j`` as a str, int, float or
  bool, Ellipsis for a value of another kind, None when absent;
- ``status`` is the span's status code, ``duration`` its end minus start time in
  nanoseconds (0 when the end is before the start), ``trace_state`` its W3C
  tracestate (None when empty), for the sampling threshold (``relay.genai.sampling``).

``relay.signatures.values(signature)`` turns a signature back into {slot: value}
for the rare span whose plan is not cached yet.

The native scanner (``_scan``, built where a C compiler exists) walks the
request's wire bytes once and makes Python objects only for what it returns;
the pure-Python reader has the same contract and runs without it.
"""

from __future__ import annotations

from relay import received
from relay.signatures import scalar, signature

try:
    from relay.genai import _scan
except ImportError:  # no compiler at install time: same results, more time per span
    _scan = None

NATIVE = _scan is not None
MAX_SLOTS = 127


def wire_form(request) -> bytes:
    """The bytes the request arrived as while they still describe it, else a fresh serialization."""
    data = received.raw_bytes(request)
    return request.SerializeToString() if data is None else data


def splice(data: bytes, additions: list[bytes]) -> bytes:
    return _scan.splice_request(data, additions)


class Reader:
    def __init__(self, static_keys, dynamic_keys, native: bool = NATIVE):
        keys = tuple(static_keys) + tuple(dynamic_keys)
        if len(keys) > MAX_SLOTS or len(set(keys)) != len(keys):
            raise ValueError(f"at most {MAX_SLOTS} distinct keys")
        self.keys = keys
        self.n_static = len(tuple(static_keys))
        self.index = {key: slot for slot, key in enumerate(keys)}
        self.native = native and _scan is not None
        self.read = self._read_native if self.native else self.read_python

    def _read_native(self, request) -> list:
        return self.scan(wire_form(request))

    def scan(self, data: bytes) -> list:
        """The native reader on a request's wire form."""
        return _scan.scan_request(data, self.index, self.n_static, len(self.keys))

    def read_python(self, request) -> list:
        index, n_static, size = self.index, self.n_static, len(self.keys)
        out = []
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    mask = 0
                    dynamic = [None] * (size - n_static)
                    for kv in span.attributes:
                        slot = index.get(kv.key)
                        if slot is None or mask >> slot & 1:
                            continue
                        mask |= 1 << slot
                        if slot >= n_static:
                            dynamic[slot - n_static] = scalar(kv.value)
                    duration = max(0, span.end_time_unix_nano - span.start_time_unix_nano)
                    out.append((mask, signature(span.attributes, index, n_static), tuple(dynamic),
                                span.status.code, duration, span.trace_state or None))
        return out
