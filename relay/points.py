"""The data points of a metrics request, read from and written into its wire form.

Components that act on data points mostly see the same services send the same series export
after export. Walking every point through the protobuf runtime costs more than the work they
do, so the native module (``_points``, built where a C compiler exists) walks the request's
bytes once and makes Python objects only for what is asked:

- ``count(request)``: how many data points it holds;
- ``signatures(request, index)``: the bytes walked and per resource, (its bytes, one signature
  per data point of every metric) of the keys in ``index`` (``relay.signatures``);
- ``splice(data, additions)``: the request's bytes with ``additions[i]`` (``KeyValue`` entries
  encoded as field 1, see ``attribute_entries``) appended to the i-th point's attributes, the
  wire form of the request once the same entries are merged into its points;
- ``histograms(request, names, with_buckets)``: per resource, (its bytes, one entry per
  histogram metric named in ``names``: (scope index, metric index, which name, temporality,
  shape, numbers, how many points)). ``shape`` holds every point's attributes and bucket
  bounds as raw bytes, so equal shapes mean the same series in the same order; ``numbers``
  each point's start, time, sum, count and number of buckets, packed, then its bucket counts
  where ``with_buckets`` says so (``rows`` unpacks them), as ``accumulate`` reads them.

Points are in request order: resource, scope, metric, point. The pure-Python paths (used
where the module was not built, and in tests against it) give the same results from the
parsed message.
"""

from __future__ import annotations

import struct

from relay import received
from relay.signatures import signature, varint

try:
    from relay import _points
except ImportError:  # no compiler at install time: same results, more time per point
    _points = None

NATIVE = _points is not None
MAX_SLOTS = 127
_pack_double = struct.Struct("<d").pack
# A point's numbers: start, time, sum, count and how many bucket counts (then the counts, if asked).
_HEAD_FORMAT = struct.Struct("<QQdQQ")
_pack_head, _unpack_head, _HEAD = _HEAD_FORMAT.pack, _HEAD_FORMAT.unpack_from, _HEAD_FORMAT.size


def wire_form(request) -> bytes:
    """The bytes the request arrived as while they still describe it, else a fresh serialization."""
    data = received.raw_bytes(request)
    return request.SerializeToString() if data is None else data


def data_points(metric):
    """The metric's data points, () for a metric without data."""
    kind = metric.WhichOneof("data")
    return getattr(metric, kind).data_points if kind is not None else ()


def count(request, data: bytes | None = None, native: bool = NATIVE) -> int:
    """The request's data points, counted on ``data`` (its wire form; by default the bytes it
    arrived as, while they still describe it) where the native module is built."""
    if native and _points is not None:
        if data is None:
            data = received.raw_bytes(request)
        if data is not None:
            try:
                found = _points.count(data)
            except ValueError:  # bytes our walker does not follow: the parsed message decides
                found = None
            if found is not None:
                return found
    return sum(len(data_points(metric)) for rm in request.resource_metrics for sm in rm.scope_metrics
               for metric in sm.metrics)


def signatures(request, index: dict[str, int], native: bool = NATIVE) -> tuple[bytes | None, list]:
    """(the bytes walked, None on the pure-Python path; what they hold). More keys than the native
    module takes are read in Python."""
    size = len(index)
    if native and _points is not None and size <= MAX_SLOTS:
        data = wire_form(request)
        found = _points.signatures(data, index, size)
        if found is None:  # bytes the parser merges: its own serialization lines up with the message
            data = request.SerializeToString()
            found = _points.signatures(data, index, size)
        return data, found
    return None, [(rm.resource.SerializeToString(),
                   [signature(point.attributes, index, size)
                    for sm in rm.scope_metrics for metric in sm.metrics for point in data_points(metric)])
                  for rm in request.resource_metrics]


def splice(data: bytes, additions: list[bytes]) -> bytes:
    """Native only: the pure-Python path serializes the merged message instead."""
    return _points.splice(data, additions)


def attribute_entries(entries) -> bytes:
    """``KeyValue`` messages as ``splice`` takes them: each encoded as field 1."""
    out = []
    for kv in entries:
        body = kv.SerializeToString()
        out.append(b"\x0a" + varint(len(body)) + body)
    return b"".join(out)


def histograms(request, names: tuple[bytes, ...], with_buckets: tuple[bool, ...], native: bool = NATIVE) -> list:
    if native and _points is not None:
        found = _points.histograms(wire_form(request), names, with_buckets)
        # None: bytes the parser merges; the message's own serialization lines up with it
        return found if found is not None else _points.histograms(request.SerializeToString(), names, with_buckets)
    wanted = {name.decode(): at for at, name in enumerate(names)}
    out = []
    for rm in request.resource_metrics:
        found = []
        for s, sm in enumerate(rm.scope_metrics):
            for m, metric in enumerate(sm.metrics):
                which = wanted.get(metric.name)
                if which is None or metric.WhichOneof("data") != "histogram":
                    continue
                shape, numbers = [], []
                for point in metric.histogram.data_points:
                    shape.append(varint(len(point.attributes)))
                    for kv in point.attributes:
                        body = kv.SerializeToString()
                        shape += (varint(len(body)), body)
                    shape += [varint(len(point.explicit_bounds))] + [_pack_double(b) for b in point.explicit_bounds]
                    counts = point.bucket_counts
                    numbers.append(_pack_head(point.start_time_unix_nano, point.time_unix_nano, point.sum, point.count,
                                              len(counts)))
                    if with_buckets[which]:
                        numbers.append(struct.pack(f"<{len(counts)}Q", *counts))
                found.append((s, m, which, metric.histogram.aggregation_temporality, b"".join(shape),
                              b"".join(numbers), len(metric.histogram.data_points)))
        out.append((rm.resource.SerializeToString(), found))
    return out


def rows(numbers: bytes, with_buckets: bool) -> list[tuple]:
    """The points of ``numbers`` as (start, time, sum, count, bucket counts as a tuple, or how many)."""
    out, at = [], 0
    while at < len(numbers):
        start, time, total, count, size = _unpack_head(numbers, at)
        at += _HEAD
        if with_buckets:
            out.append((start, time, total, count, struct.unpack_from(f"<{size}Q", numbers, at)))
            at += 8 * size
        else:
            out.append((start, time, total, count, size))
    return out
