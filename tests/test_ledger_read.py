"""What the ledger books for a span: sampled spans book for the calls they stand for."""

from __future__ import annotations

import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from relay import attrs
from relay.ledger.read import facts_of, wanted


def priced_span(trace_state: str = "", duplicate: bool = False) -> trace_pb2.Span:
    span = trace_pb2.Span(name="chat", trace_state=trace_state, start_time_unix_nano=1, end_time_unix_nano=2)
    for key, value in {"genops.team": "search", "genops.model": "openai/gpt-4o", "genops.cost.total": 0.25,
                       "genops.tokens.input": 1000, "genops.tokens.output": 200}.items():
        attrs.put(span.attributes, key, value)
    if duplicate:
        attrs.put(span.attributes, "genops.call.duplicate", True)
        attrs.put(span.attributes, "genops.cost.booked", 0.05)
    return span


@pytest.mark.parametrize("trace_state, weight", [("", 1), ("ot=th:0", 1.0), ("ot=th:8", 2.0), ("ot=th:c", 4.0),
                                                 ("ot=th:nonsense", 1.0)])
def test_a_sampled_span_books_its_adjusted_count(trace_state, weight):
    span = priced_span(trace_state)
    facts = facts_of(span, wanted(span), now_ns=10)
    assert facts.calls == weight
    assert facts.cost == pytest.approx(0.25 * weight, rel=1e-12)
    assert (facts.tokens["input"], facts.tokens["output"]) == (1000 * weight, 200 * weight)


def test_a_sampled_duplicate_books_only_its_booked_cost_scaled():
    span = priced_span("ot=th:8", duplicate=True)
    facts = facts_of(span, wanted(span), now_ns=10)
    assert (facts.calls, facts.tokens, facts.cost) == (0, {}, pytest.approx(0.1, rel=1e-12))
