"""The bench payloads: recorded LLM spans replicated to N spans with fresh ids.

- ``llm``: the ``traces_llm`` fixture (OpenTelemetry GenAI spans and GenOps SDK spans).
- ``dialects``: what five real instrumentation libraries sent (``proto_fixtures/libraries``),
  OpenRouter Broadcast's spans and ``traces_llm``, so every row of the dialect table is read.
"""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay import fixtures
from relay.bench import PAYLOADS

# Eight bytes in each response id that the load driver replaces with the request's number.
REQUEST_PLACEHOLDER = b"@request"


def numbered(payload: bytes, number: int) -> bytes:
    """The payload with every response id made unique to request ``number`` (same length)."""
    return payload.replace(REQUEST_PLACEHOLDER, b"%08x" % (number & 0xFFFFFFFF))


_DIALECT_FIXTURES = ("traces_llm", "libraries/otel-openai-v2", "libraries/openllmetry", "libraries/openinference",
                     "libraries/openlit", "libraries/logfire", "broadcast/traces_broadcast")


def template(name: str) -> ExportTraceServiceRequest:
    if name == "llm":
        return fixtures.load("traces_llm")
    if name != "dialects":
        raise ValueError(f"unknown payload {name!r} (valid: {', '.join(PAYLOADS)})")
    merged = ExportTraceServiceRequest()
    for fixture in _DIALECT_FIXTURES:
        merged.MergeFrom(fixtures.load(fixture, ExportTraceServiceRequest))
    return merged


def llm_spans(spans_per_request: int, seed: int = 7, payload: str = "llm") -> ExportTraceServiceRequest:
    template_request = template(payload)
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    sources = [(rs, ss) for rs in template_request.resource_spans for ss in rs.scope_spans]
    per_source = [[] for _ in sources]
    flat = [(i, span) for i, (_, ss) in enumerate(sources) for span in ss.spans]
    for n in range(spans_per_request):
        index, span = flat[n % len(flat)]
        per_source[index].append(span)
    for (rs, ss), spans in zip(sources, per_source):
        if not spans:
            continue
        out_rs = request.resource_spans.add()
        out_rs.resource.CopyFrom(rs.resource)
        out_ss = out_rs.scope_spans.add()
        out_ss.scope.CopyFrom(ss.scope)
        for span in spans:
            copy = out_ss.spans.add()
            copy.CopyFrom(span)
            copy.trace_id = rng.randbytes(16)
            copy.span_id = rng.randbytes(8)
            # Every call has its own response id; copies of one would be booked as one call.
            # The load driver writes a request number over the placeholder, so no two
            # requests repeat an id either.
            for kv in copy.attributes:
                if kv.key == "gen_ai.response.id":
                    kv.value.string_value = f"gen-{rng.randbytes(6).hex()}-{REQUEST_PLACEHOLDER.decode()}"
    return request
