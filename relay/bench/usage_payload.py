"""The metrics bench payload: GenAI usage histograms shaped like the openai-v2 instrumentation's export.

One request is the exports of several service instances, as a relay behind agents or a
gateway receives them. Each instance is a resource (service.name, service.instance.id and the
SDK's own attributes) with one scope, ``opentelemetry.instrumentation.openai_v2``, holding the
instrumentation's two histograms on its explicit bucket boundaries, cumulative as the Python
SDK exports by default:

- ``gen_ai.client.operation.duration``: one point per call shape (operation, request and
  response model, server, outcome);
- ``gen_ai.client.token.usage``: the same attributes plus ``gen_ai.token.type``, an ``input``
  and an ``output`` point per shape (embeddings record input only; a failed call has no
  usage, only its duration with ``error.type``).

Every instance has a handful of call shapes over several models. ``Stream`` makes the
successive exports of one load worker's instances: export k holds k intervals' worth of
calls in every count, sum and bucket, so the connector prices real increases each time.
Each worker has instances of its own (``WORKER_PLACEHOLDER`` in service.instance.id), so
the series of one instance always arrive in the order they grew.
"""

from __future__ import annotations

import bisect
import random
import struct

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from relay import attrs

# The instrumentation's advisory boundaries (opentelemetry.util.genai.instruments).
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
SCOPE, SCOPE_VERSION = "opentelemetry.instrumentation.openai_v2", "2.4b0"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.30.0"
CUMULATIVE = 2
# Eight bytes of each service.instance.id that a load worker replaces with its own number.
WORKER_PLACEHOLDER = b"@worker@"
# The first export's timestamps; a Stream moves them to the run's clock.
_START_NS = 1_750_000_000_000_000_000
_INTERVAL_NS = 60_000_000_000  # the SDK's default export interval

# (operation, request model, response model, input and output tokens per call, seconds per call,
#  error type). The response models are the dated names the API answers with.
_SHAPES = (
    ("chat", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 850, 210, 1.9, None),
    ("chat", "gpt-4o", "gpt-4o-2024-08-06", 1400, 380, 4.2, None),
    ("chat", "gpt-4.1", "gpt-4.1-2025-04-14", 2600, 520, 6.1, None),
    ("chat", "gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", 640, 150, 1.4, None),
    ("chat", "gpt-4.1-nano", "gpt-4.1-nano-2025-04-14", 300, 60, 0.7, None),
    ("chat", "o3-mini", "o3-mini-2025-01-31", 1200, 1900, 12.5, None),
    ("embeddings", "text-embedding-3-small", "text-embedding-3-small", 420, 0, 0.25, None),
    ("chat", "gpt-4o", None, 0, 0, 0.35, "RateLimitError"),
)
_SHAPES_PER_INSTANCE = 5
# (service.name, resource attribution it sets, if any): some apps label themselves, the rest
# are left to the genops processor's rules and defaults.
_SERVICES = (
    ("support-bot", {"genops.team": "support", "genops.project": "helpdesk"}),
    ("search-api", {"genops.team": "search"}),
    ("doc-summarizer", {}),
    ("sales-assistant", {"genops.team": "sales", "genops.project": "outreach"}),
    ("code-review", {}),
)
_SERVERS = (("api.openai.com", None), ("api.openai.com", None), ("llm-gateway.internal", 8443))


def _bucket(bounds, value: float) -> int:
    return bisect.bisect_left(bounds, value)


def _histogram(metric, name: str, description: str, unit: str) -> None:
    metric.name, metric.description, metric.unit = name, description, unit
    metric.histogram.aggregation_temporality = CUMULATIVE


def _point(histogram, bounds, attributes: dict, calls: int, per_call: float, rng: random.Random) -> None:
    point = histogram.data_points.add(start_time_unix_nano=_START_NS, time_unix_nano=_START_NS + _INTERVAL_NS,
                                      count=calls, sum=per_call * calls, min=per_call, max=per_call)
    for key, value in attributes.items():
        attrs.put(point.attributes, key, value)
    point.explicit_bounds.extend(bounds)
    counts = [0] * (len(bounds) + 1)
    counts[_bucket(bounds, per_call)] = calls
    point.bucket_counts.extend(counts)
    # The SDK's default exemplar filter keeps a measurement made inside a sampled span.
    exemplar = point.exemplars.add(time_unix_nano=_START_NS + _INTERVAL_NS // 2, trace_id=rng.randbytes(16),
                                   span_id=rng.randbytes(8))
    if isinstance(per_call, int):
        exemplar.as_int = per_call
    else:
        exemplar.as_double = per_call


def usage_request(points_per_request: int, seed: int = 11) -> tuple[ExportMetricsServiceRequest, int]:
    """The first export of a load worker's instances, about ``points_per_request`` points
    (whole call shapes: up to two over), and how many points it holds."""
    rng = random.Random(seed)
    request = ExportMetricsServiceRequest()
    points = 0
    for instance in range(100_000):
        if points >= points_per_request:
            break
        service, labels = _SERVICES[instance % len(_SERVICES)]
        rm = request.resource_metrics.add()
        rm.schema_url = SCHEMA_URL
        resource = {"service.name": service, "service.version": f"1.{instance % 7}.{instance % 3}",
                    "service.instance.id": f"{rng.randbytes(8).hex()}-{instance:04d}-"
                                           f"{WORKER_PLACEHOLDER.decode()}",
                    "deployment.environment.name": "production", "telemetry.sdk.language": "python",
                    "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.version": "1.39.0", **labels}
        for key, value in resource.items():
            attrs.put(rm.resource.attributes, key, value)
        sm = rm.scope_metrics.add(schema_url=SCHEMA_URL)
        sm.scope.name, sm.scope.version = SCOPE, SCOPE_VERSION
        duration, usage = sm.metrics.add(), sm.metrics.add()
        _histogram(duration, "gen_ai.client.operation.duration", "Duration of GenAI client operation", "s")
        _histogram(usage, "gen_ai.client.token.usage", "Number of input and output tokens used by GenAI clients",
                   "{token}")
        address, port = _SERVERS[instance % len(_SERVERS)]
        fingerprint = f"fp_{rng.randbytes(5).hex()}"
        for shape in rng.sample(_SHAPES, _SHAPES_PER_INSTANCE):
            if points >= points_per_request:
                break
            operation, model, response_model, tokens_in, tokens_out, seconds, error = shape
            common = {"gen_ai.operation.name": operation, "gen_ai.system": "openai", "gen_ai.request.model": model}
            if error:
                common["error.type"] = error
            else:
                common["gen_ai.response.model"] = response_model
                if operation == "chat":
                    common["gen_ai.openai.response.service_tier"] = "default"
                    common["gen_ai.openai.response.system_fingerprint"] = fingerprint
            common["server.address"] = address
            if port is not None:
                common["server.port"] = port
            calls = rng.randint(1, 6)
            _point(duration.histogram, DURATION_BUCKETS, common, calls, round(seconds * rng.uniform(0.8, 1.25), 3),
                   rng)
            points += 1
            if error:
                continue
            for token_type, tokens in (("input", tokens_in), ("output", tokens_out)):
                if token_type == "output" and operation == "embeddings":
                    continue
                _point(usage.histogram, TOKEN_BUCKETS, {**common, "gen_ai.token.type": token_type}, calls,
                       int(tokens * rng.uniform(0.8, 1.25)), rng)
                points += 1
    return request, points


class Stream:
    """One load worker's successive exports of its own instances (see the module doc).

    The load driver shares two cores with the relay, so an export is not serialized again:
    every field that grows (time, count, sum, the buckets that hold calls) is a fixed-width
    protobuf field, found once in the wire form, and each export packs the template's bytes
    with new values in one ``struct`` call.
    """

    def __init__(self, template: bytes, worker: int, start_ns: int):
        self.request = ExportMetricsServiceRequest.FromString(
            template.replace(WORKER_PLACEHOLDER, b"%08x" % (worker & 0xFFFFFFFF)))
        self.exports = 0
        self.points = []
        for rm in self.request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.histogram.data_points:
                        point.start_time_unix_nano = start_ns
                        buckets = tuple((i, n) for i, n in enumerate(point.bucket_counts) if n)
                        self.points.append((point, point.count, point.sum, buckets))
        self._packed = self._layout(start_ns)

    def _layout(self, now_ns: int):
        """(struct, argument list, bases) that pack an export, or None to serialize instead."""
        fields = []  # (point, kind, base, bucket index): kind "t" time, "c" count, "s" sum, "b" bucket
        for point, count, total, buckets in self.points:
            fields += [(point, "t", None, 0), (point, "c", count, 0), (point, "s", total, 0)]
            fields += [(point, "b", n, index) for index, n in buckets]
        marks = []
        for serial, (point, kind, _, index) in enumerate(fields):
            mark = 0x415E_0000_0000_0000 | (serial << 12) | 0xA5
            marks.append(struct.pack("<Q", mark))
            if kind == "t":
                point.time_unix_nano = mark
            elif kind == "c":
                point.count = mark
            elif kind == "s":
                point.sum = struct.unpack("<d", marks[-1])[0]
            else:
                point.bucket_counts[index] = mark
        wire = self.request.SerializeToString()
        offsets, cursor = [], 0
        for mark in marks:
            found = wire.find(mark, cursor)
            if found < 0:
                return self._restore()
            offsets.append(found)
            cursor = found + 8
        layout, runs, previous = ["<"], [], 0
        for offset, (_, kind, _, _) in zip(offsets, fields):
            layout.append(f"{offset - previous}s{'d' if kind == 's' else 'Q'}")
            runs.append(wire[previous:offset])
            previous = offset + 8
        layout.append(f"{len(wire) - previous}s")
        runs.append(wire[previous:])
        packer = struct.Struct("".join(layout))
        arguments = [None] * (2 * len(fields) + 1)
        arguments[0::2] = runs
        bases = [base for _, _, base, _ in fields]
        self._restore()
        packed = packer, arguments, bases
        # Trusted only if it packs exactly what serializing would give.
        self.exports, self._packed = 1, packed
        same = self._pack(now_ns) == self._serialize(now_ns)
        self.exports = 0
        return packed if same else None

    def _restore(self) -> None:
        for point, count, total, buckets in self.points:
            point.count, point.sum = count, total
            for index, n in buckets:
                point.bucket_counts[index] = n

    def _serialize(self, now_ns: int) -> bytes:
        k = self.exports
        for point, count, total, buckets in self.points:
            point.time_unix_nano = now_ns
            point.count = count * k
            point.sum = total * k
            counts = point.bucket_counts
            for index, n in buckets:
                counts[index] = n * k
        return self.request.SerializeToString()

    def _pack(self, now_ns: int) -> bytes:
        packer, arguments, bases = self._packed
        k = self.exports
        arguments[1::2] = [now_ns if base is None else base * k for base in bases]
        return packer.pack(*arguments)

    def next(self, now_ns: int) -> bytes:
        """The next export, stamped ``now_ns``: one more interval's calls in every series."""
        self.exports += 1
        return self._pack(now_ns) if self._packed is not None else self._serialize(now_ns)
