"""The bench payload: the LLM span fixture replicated to N spans with fresh ids."""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay import fixtures


def llm_spans(spans_per_request: int, seed: int = 7) -> ExportTraceServiceRequest:
    template = fixtures.load("traces_llm")
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    sources = [(rs, ss) for rs in template.resource_spans for ss in rs.scope_spans]
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
    return request
