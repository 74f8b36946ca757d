"""The native point walker (relay/_points.c) and the pure-Python paths of relay.points agree,
on requests the SDKs send and on wire forms they do not: unknown fields, unpacked repeated
fields, a field sent twice, a second resource, a metric with two data fields."""

from __future__ import annotations

import random
import struct

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from relay import attrs, points, received
from relay.signatures import varint

needs_native = pytest.mark.skipif(not points.NATIVE, reason="the native point walker was not built here")
pytestmark = needs_native

USAGE, DURATION = b"gen_ai.client.token.usage", b"gen_ai.client.operation.duration"
NAMES, WITH_BUCKETS = (USAGE, DURATION), (False, True)
INDEX = {"genops.team": 0, "gen_ai.token.type": 1, "gen_ai.request.model": 2, "service.name": 3}
KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


# Wire pieces, written by hand so the bytes can be what no serializer writes.
def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def ld(field: int, body: bytes) -> bytes:
    return tag(field, 2) + varint(len(body)) + body


def fixed64(field: int, number: int) -> bytes:
    return tag(field, 1) + struct.pack("<Q", number)


def double(field: int, number: float) -> bytes:
    return tag(field, 1) + struct.pack("<d", number)


def number(field: int, value: int) -> bytes:
    return tag(field, 0) + varint(value)


def kv(key: str, value: str) -> bytes:
    entry = KeyValue(key=key)
    entry.value.string_value = value
    return entry.SerializeToString()


UNKNOWN = number(99, 7) + ld(98, b"opaque")  # fields no OTLP message defines


def histogram_point(attributes: list[bytes], start: int, time: int, total: float, count: int,
                    buckets: list[int], bounds: list[float], packed: bool = True, extra: bytes = b"") -> bytes:
    body = b"".join(ld(9, a) for a in attributes) + fixed64(2, start) + fixed64(3, time) + fixed64(4, count) \
        + double(5, total)
    if packed:
        body += ld(6, struct.pack(f"<{len(buckets)}Q", *buckets)) + ld(7, struct.pack(f"<{len(bounds)}d", *bounds))
    else:
        body += b"".join(fixed64(6, b) for b in buckets) + b"".join(double(7, b) for b in bounds)
    return body + extra


def histogram_metric(name: bytes, points_: list[bytes], temporality: int = 2, extra: bytes = b"") -> bytes:
    return ld(1, name) + ld(9, b"".join(ld(1, p) for p in points_) + number(2, temporality)) + extra


def request_bytes(resources: list[tuple[list[bytes], list[list[bytes]]]]) -> bytes:
    """(resource attributes, scopes of metrics) per resource."""
    out = b""
    for resource, scopes in resources:
        body = ld(1, b"".join(ld(1, a) for a in resource))
        for metrics in scopes:
            body += ld(2, b"".join(ld(2, m) for m in metrics))
        out += ld(1, body)
    return out


def random_request(rng: random.Random) -> ExportMetricsServiceRequest:
    """Every kind of metric, points with and without the keys read, through the SDK's own messages."""
    request = ExportMetricsServiceRequest()
    for r in range(rng.randint(0, 3)):
        rm = request.resource_metrics.add()
        attrs.put(rm.resource.attributes, "service.name", f"svc-{r}")
        if rng.random() < 0.5:
            attrs.put(rm.resource.attributes, "genops.team", rng.choice(["search", "ads"]))
        for _ in range(rng.randint(0, 2)):
            sm = rm.scope_metrics.add()
            for m in range(rng.randint(0, 4)):
                kind = rng.choice(KINDS + ("none",))
                name = rng.choice([USAGE.decode(), DURATION.decode(), f"app.metric.{m}"])
                metric = sm.metrics.add(name=name)
                if kind == "none":
                    continue
                data = getattr(metric, kind)
                if kind in ("sum", "histogram", "exponential_histogram"):
                    data.aggregation_temporality = rng.choice([1, 2])
                for _ in range(rng.randint(0, 4)):
                    point = data.data_points.add(start_time_unix_nano=rng.randint(1, 10**18),
                                                 time_unix_nano=rng.randint(1, 10**18))
                    for key in rng.sample(["genops.team", "gen_ai.token.type", "gen_ai.request.model", "other"],
                                          rng.randint(0, 4)):
                        attrs.put(point.attributes, key, rng.choice(["input", "output", "x", 3, True, 1.5]))
                    if kind == "histogram":
                        point.count = rng.randint(0, 1000)
                        point.sum = rng.choice([rng.uniform(0, 1e6), float("nan"), 0.0])
                        size = rng.randint(0, 4)
                        point.explicit_bounds.extend(sorted(rng.uniform(0, 10) for _ in range(size)))
                        if rng.random() < 0.8:
                            point.bucket_counts.extend(rng.randint(0, 50) for _ in range(size + 1))
                    elif kind in ("gauge", "sum"):
                        point.as_int = rng.randint(0, 100)
    return request


def irregular() -> dict[str, bytes]:
    """Wire forms the protobuf parser accepts but no SDK writes."""
    team = kv("genops.team", "search")
    usage_in = [kv("gen_ai.token.type", "input"), kv("gen_ai.request.model", "openai/gpt-4o")]
    point = histogram_point(usage_in, 5, 9, 1000.0, 2, [1, 1], [100.0])
    duration = histogram_point([team], 5, 9, 1.5, 3, [1, 2, 0], [0.5, 2.0])
    return {
        "unknown fields everywhere": ld(1, ld(1, ld(1, team) + UNKNOWN) + ld(2, ld(2, histogram_metric(
            USAGE, [point + UNKNOWN], extra=UNKNOWN)) + UNKNOWN) + UNKNOWN) + UNKNOWN,
        "unpacked buckets and bounds": request_bytes([([team], [[histogram_metric(DURATION, [
            histogram_point([team], 5, 9, 1.5, 3, [1, 2, 0], [0.5, 2.0], packed=False)])]])]),
        "packed and unpacked points side by side": request_bytes([([team], [[histogram_metric(DURATION, [
            duration, histogram_point([], 6, 10, 2.5, 1, [0, 0, 1], [0.5, 2.0], packed=False)])]])]),
        "a point field sent twice: the last counts": request_bytes([([team], [[histogram_metric(USAGE, [
            point + fixed64(4, 7) + double(5, 2222.0) + fixed64(2, 6)])]])]),
        "a metric name sent twice: the last counts": request_bytes([([team], [[
            ld(1, b"app.other") + histogram_metric(USAGE, [point])]])]),
        "attributes before and after the numbers": request_bytes([([team], [[histogram_metric(USAGE, [
            fixed64(2, 5) + ld(9, usage_in[0]) + fixed64(3, 9) + double(5, 10.0) + ld(9, usage_in[1])
            + fixed64(4, 1)])]])]),
        "a second resource field: merged by the parser": ld(1, ld(1, ld(1, team)) + ld(
            2, ld(2, histogram_metric(USAGE, [point]))) + ld(1, ld(1, kv("service.name", "chat")))),
        "a metric with two data fields: the last wins": request_bytes([([team], [[
            ld(1, USAGE) + ld(5, ld(1, number(6, 3) + ld(7, team))) + ld(9, ld(1, point) + number(2, 1))]])]),
        "a metric with its data field twice: merged": request_bytes([([team], [[
            ld(1, USAGE) + ld(9, ld(1, point) + number(2, 2)) + ld(9, ld(1, duration))]])]),
        "a scope's instrumentation scope sent twice": ld(1, ld(1, ld(1, team)) + ld(2, ld(1, ld(1, b"lib"))
                                                         + ld(2, histogram_metric(USAGE, [point]))
                                                         + ld(1, ld(2, b"1.0")))),
        "empty everything": ld(1, b"") + ld(1, ld(2, b"")) + ld(1, ld(2, ld(2, ld(1, USAGE)))),
        "no resource, points only": ld(1, ld(2, ld(2, histogram_metric(USAGE, [point, point])))),
    }


def parsed(data: bytes) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest.FromString(data)


def cases() -> list[tuple[str, bytes]]:
    rng = random.Random(14)
    out = [(f"random {n}", random_request(rng).SerializeToString()) for n in range(60)]
    return out + list(irregular().items())


CASES = cases()


def both(function, data: bytes, *args):
    """(native, pure Python) results for a request received as ``data``."""
    request = parsed(data)
    token = received.bind(request, data)
    try:
        return function(request, *args, native=True), function(request, *args, native=False)
    finally:
        received.unbind(token)


@pytest.mark.parametrize("name, data", CASES, ids=[name for name, _ in CASES])
def test_count(name, data):
    native, python = both(points.count, data)
    assert native == python
    assert points.count(parsed(data), data=data) == python  # counted on bytes passed in, as receivers do


def resource_of(raw: bytes):
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    return Resource.FromString(raw)


@pytest.mark.parametrize("name, data", CASES, ids=[name for name, _ in CASES])
def test_signatures(name, data):
    (walked, native), (nothing, python) = both(points.signatures, data, INDEX)
    assert nothing is None
    assert parsed(walked) == parsed(data)  # the bytes walked describe the request
    # Resource bytes may keep what the sender wrote (unknown fields, order); they describe the same resource.
    assert [resource_of(raw) for raw, _ in native] == [resource_of(raw) for raw, _ in python]
    assert [found for _, found in native] == [found for _, found in python]


@pytest.mark.parametrize("name, data", CASES, ids=[name for name, _ in CASES])
def test_histograms(name, data):
    native, python = both(points.histograms, data, NAMES, WITH_BUCKETS)
    assert [resource_of(raw) for raw, _ in native] == [resource_of(raw) for raw, _ in python]
    for (_, ours), (_, theirs) in zip(native, python):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert a[:4] == b[:4] and a[6] == b[6]  # place, which name, temporality, how many points
            rows_a, rows_b = points.rows(a[5], WITH_BUCKETS[a[2]]), points.rows(b[5], WITH_BUCKETS[b[2]])
            assert [row[:2] + row[3:] for row in rows_a] == [row[:2] + row[3:] for row in rows_b]
            assert [repr(row[2]) for row in rows_a] == [repr(row[2]) for row in rows_b]  # NaN sums too
    if name == "a point field sent twice: the last counts":
        assert points.rows(native[0][1][0][5], False)[0][:4] == (6, 9, 2222.0, 7)


@pytest.mark.parametrize("native", [True, False])
def test_a_shape_changes_with_attributes_or_bounds_and_not_with_numbers(native):
    """Within each path the shape is what says two exports hold the same series in the same order."""
    def shape(points_: list[tuple]) -> bytes:
        request = ExportMetricsServiceRequest()
        metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name=DURATION.decode())
        metric.histogram.aggregation_temporality = 2
        for team, bounds, total, count in points_:
            point = metric.histogram.data_points.add(start_time_unix_nano=1, time_unix_nano=count + 2, sum=total,
                                                     count=count, explicit_bounds=bounds,
                                                     bucket_counts=[count] + [0] * len(bounds))
            attrs.put(point.attributes, "genops.team", team)
        data = request.SerializeToString()
        return both(points.histograms, data, NAMES, WITH_BUCKETS)[0 if native else 1][0][1][0][4]

    base = shape([("search", [0.5, 2.0], 10.0, 3), ("ads", [0.5, 2.0], 1.0, 1)])
    assert shape([("search", [0.5, 2.0], 99.0, 7), ("ads", [0.5, 2.0], 5.0, 2)]) == base  # numbers only
    assert shape([("search", [0.5, 2.0], 10.0, 3), ("other", [0.5, 2.0], 1.0, 1)]) != base  # a value
    assert shape([("search", [0.5, 3.0], 10.0, 3), ("ads", [0.5, 2.0], 1.0, 1)]) != base  # a bound
    assert shape([("ads", [0.5, 2.0], 1.0, 1), ("search", [0.5, 2.0], 10.0, 3)]) != base  # the order


def additions_for(request: ExportMetricsServiceRequest, rng: random.Random) -> tuple[list[bytes], list]:
    """A random set of attributes for each point: as splice takes them, and as KeyValue messages."""
    encoded, entries = [], []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for _ in points.data_points(metric):
                    chosen = []
                    for key in rng.sample(["genops.team", "genops.project"], rng.randint(0, 2)):
                        entry = KeyValue(key=key)
                        entry.value.string_value = rng.choice(["search", "ads", "é" * 40])
                        chosen.append(entry)
                    entries.append(chosen)
                    encoded.append(points.attribute_entries(chosen))
    return encoded, entries


def merged(request: ExportMetricsServiceRequest, entries: list) -> ExportMetricsServiceRequest:
    out = ExportMetricsServiceRequest()
    out.CopyFrom(request)
    each = iter(entries)
    for rm in out.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in points.data_points(metric):
                    point.attributes.extend(next(each))
    return out


@pytest.mark.parametrize("name, data", CASES, ids=[name for name, _ in CASES])
def test_splice_is_the_merged_message(name, data):
    rng = random.Random(name)
    request = parsed(data)
    encoded, entries = additions_for(request, rng)
    walked, _ = both(points.signatures, data, INDEX)[0]  # what the datapoints processor splices into
    spliced = points.splice(walked, encoded)
    # Bytes order may differ from a fresh serialization; the message they describe may not.
    assert parsed(spliced) == merged(request, entries)


def test_splice_refuses_additions_that_do_not_line_up():
    data = irregular()["unpacked buckets and bounds"]
    with pytest.raises(ValueError):
        points.splice(data, [])
    with pytest.raises(ValueError):
        points.splice(data, [b"", b""])
    with pytest.raises(ValueError):
        points.splice(data, [ld(2, kv("genops.team", "x"))])  # not field 1


@pytest.mark.parametrize("garbage", [b"\x0a\x05abc", b"\x0a\x02\x12\x7f", b"\xff"])
def test_malformed_bytes_are_an_error_not_a_guess(garbage):
    with pytest.raises(ValueError):
        points._points.count(garbage)
    with pytest.raises(ValueError):
        points._points.histograms(garbage, NAMES, WITH_BUCKETS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_point_kinds_keep_their_attributes_in_their_own_field(kind):
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="m")
    point = getattr(metric, kind).data_points.add(time_unix_nano=1)
    attrs.put(point.attributes, "genops.team", "search")
    data = request.SerializeToString()
    (_, native), (_, python) = both(points.signatures, data, INDEX)
    assert native == python and native[0][1] != [b""]
    entry = KeyValue(key="genops.project")
    entry.value.string_value = "assist"
    spliced = parsed(points.splice(data, [points.attribute_entries([entry])]))
    got = points.data_points(spliced.resource_metrics[0].scope_metrics[0].metrics[0])[0]
    assert [(a.key, a.value.string_value) for a in got.attributes] == [("genops.team", "search"),
                                                                      ("genops.project", "assist")]



@pytest.mark.parametrize("name, data", CASES, ids=[name for name, _ in CASES])
def test_the_signal_counts_what_the_receivers_count(name, data):
    from relay.signals import Signal

    request = parsed(data)
    expected = points.count(request, native=False)
    assert Signal.METRICS.count(request, data) == expected  # as the receivers and the queue count
    assert Signal.METRICS.count(request) == expected
