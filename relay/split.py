"""Merging OTLP export requests and splitting one into chunks of a bounded item count or size.

Shared by the batch processor (chunks of at most ``send_batch_max_size`` items) and the
exporters (requests of at most ``max_request_size`` bytes).

Items are spans, metric data points and log records (``Signal.count``). A
chunk carries a copy of everything that encloses its items: the resource and
scope entries (with their schema_url) and, for metrics, the metric with its
descriptor (name, description, unit, metadata and the data kind's own
fields such as aggregation_temporality); for profiles, whose items are samples, the profile
without its samples and the request's whole ``dictionary``, since samples point into it by
index. Items keep their order. Containers
without items (a resource without scopes, a metric without data points) hold
nothing to send and do not appear in any chunk, except a profile without samples: it
carries data of its own (its time, attributes and counts), so it travels in the chunk being
filled when it is reached (the first chunk when it comes first), taking none of its room.
"""

from __future__ import annotations

from typing import Callable, Iterator

from google.protobuf.message import Message

from relay.signals import Signal, signal_of


def merge(requests: list):
    """A new request holding every request's entries, in order; the inputs are left as they were.

    An export request has a single (repeated) field, so merging appends. Profiles requests are
    refused: each holds its own dictionary, which appending would not renumber.
    """
    if signal_of(requests[0]) is Signal.PROFILES:
        raise ValueError("profiles requests cannot be merged: their dictionaries would need renumbering")
    merged = type(requests[0])()
    for request in requests:
        merged.MergeFrom(request)
    return merged


def split(request, limit: int) -> list:
    """New requests of at most ``limit`` items each, together holding ``request``'s items in order."""
    if limit <= 0:
        raise ValueError("the chunk size must be positive")
    chunks: list = []
    left = 0
    # The containers opened in the current chunk, and the source positions they copy.
    opened: list = []
    opened_at: tuple = ()
    for position, makers, field, items in _runs(request):
        start, total = 0, len(items)
        # One pass at least: a profile without samples (the only empty container _runs yields)
        # still gets its containers opened in the current chunk, taking none of its room.
        while True:
            if not chunks or (left == 0 and start < total):
                chunks.append(_chunk(request))
                left, opened, opened_at = limit, [], ()
            shared = _common_prefix(opened_at, position, len(opened))
            del opened[shared:]
            parent = opened[-1] if opened else chunks[-1]
            for make in makers[shared:]:
                parent = make(parent)
                opened.append(parent)
            opened_at = position
            take = min(left, total - start)
            getattr(parent, field).extend(items[start:start + take])
            start += take
            left -= take
            if start >= total:
                break
    return chunks


def _chunk(request):
    chunk = type(request)()
    if signal_of(request) is Signal.PROFILES and request.HasField("dictionary"):
        chunk.dictionary.CopyFrom(request.dictionary)
    return chunk


def _common_prefix(a: tuple, b: tuple, limit: int) -> int:
    n = 0
    while n < limit and n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


_Maker = Callable[[Message], Message]


def _runs(request) -> Iterator[tuple[tuple, list[_Maker], str, object]]:
    """(position, container makers, item field, items) for every innermost container holding
    items, and every profile (with or without samples), in order.

    ``position`` identifies the source containers (by index) so that a chunk
    reuses the copy it already made of them; each maker adds the copy of one
    level (without its children) to the copy of the level above.
    """
    signal = signal_of(request)
    resources, scopes, leaves = signal.layout
    for r, resource in enumerate(getattr(request, resources)):
        make_resource = _shell(resource, resources, scopes)
        for s, scope in enumerate(getattr(resource, scopes)):
            make_scope = _shell(scope, scopes, leaves)
            if signal is Signal.PROFILES:
                for p, profile in enumerate(scope.profiles):
                    yield ((r, s, p), [make_resource, make_scope, _shell(profile, leaves, "samples")],
                           "samples", profile.samples)
                continue
            if signal is not Signal.METRICS:
                if getattr(scope, leaves):
                    yield (r, s), [make_resource, make_scope], leaves, getattr(scope, leaves)
                continue
            for m, metric in enumerate(scope.metrics):
                kind = metric.WhichOneof("data")
                if kind is not None and getattr(metric, kind).data_points:
                    yield ((r, s, m), [make_resource, make_scope, _metric_shell(metric, kind)],
                           "data_points", getattr(metric, kind).data_points)


def _shell(source: Message, field: str, children: str) -> _Maker:
    def make(parent: Message) -> Message:
        copy = getattr(parent, field).add()
        _copy_except(source, copy, children)
        return copy
    return make


def _metric_shell(metric: Message, kind: str) -> _Maker:
    def make(parent: Message) -> Message:
        copy = parent.metrics.add()
        _copy_except(metric, copy, kind)
        data = getattr(copy, kind)
        data.SetInParent()  # a gauge or summary has no field but its points; the kind must still be set
        _copy_except(getattr(metric, kind), data, "data_points")
        return data
    return make


def _copy_except(source: Message, target: Message, skip: str) -> None:
    # Field by field rather than a named list, so that fields added to OTLP later are kept too.
    for descriptor, value in source.ListFields():
        if descriptor.name == skip:
            continue
        if isinstance(value, Message):
            getattr(target, descriptor.name).CopyFrom(value)
        elif hasattr(value, "extend"):  # a repeated field; str and bytes have no extend
            getattr(target, descriptor.name).extend(value)
        else:
            setattr(target, descriptor.name, value)


def by_size(request, max_bytes: int) -> list:
    """Requests of at most ``max_bytes`` serialized, together holding ``request``'s items in order.

    A single item larger than ``max_bytes`` travels alone: it cannot be cut, and the downstream
    decides. Each part's size is measured, so attributes of any size are handled.

    A profiles request travels whole: every part would carry a copy of the request's whole
    dictionary (its samples point into it by index), so cutting it would multiply the bytes
    sent rather than bound them, down to one sample per request when the dictionary alone is
    above ``max_bytes``. Pruning the dictionary per part means renumbering every index into it.
    As with an item too large to cut, the downstream decides."""
    signal = signal_of(request)
    if signal is Signal.PROFILES:
        return [request]
    count, size = signal.count(request), request.ByteSize()
    if count <= 1 or size <= max_bytes:
        return [request]
    # Parts sized by the average item (at least two of them), then any still too large split again.
    per_part = max(1, min(count // 2, count * max_bytes // size))
    return [piece for part in split(request, per_part) for piece in by_size(part, max_bytes)]
