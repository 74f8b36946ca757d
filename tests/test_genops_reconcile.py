"""Reported costs checked before they are booked, calls seen twice booked once, bounded inputs.

Processor and connector run together here, in process, as the reference pipeline chains them.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from relay import attrs
from relay.genai.bounds import MARKER, cap
from relay.processors.genops import calls
from relay.signals import Signal
from tests.test_genops_metrics import connector, flushed, points
from tests.test_genops_processor import GPT4O, build, per_million, reader, request_with, run  # noqa: F401

SPAN = {"gen_ai.response.model": "openai/gpt-4o", "gen_ai.usage.input_tokens": 10_000,
        "gen_ai.usage.output_tokens": 100}
COMPUTED = per_million(GPT4O["input"], 10_000) + per_million(GPT4O["output"], 100)


def sample(telemetry, name: str, **labels) -> float:
    return telemetry.registry.get_sample_value(name, {"processor": "genops", **labels}) or 0.0


def cost_total(made, sink) -> float:
    return sum(points(flushed(made, sink))["cost"].values())


# (what the span reports as gen_ai.usage.cost, expected source, expected genops.cost.total,
#  the rejection reason counted or None)
RECONCILIATION = {
    "negative": (-5.0, "computed", COMPUTED, "negative"),
    "NaN": (math.nan, "computed", COMPUTED, "not_finite"),
    "+Inf": (math.inf, "computed", COMPUTED, "not_finite"),
    "-Inf": (-math.inf, "computed", COMPUTED, "not_finite"),
    "1e308": (1e308, "computed", COMPUTED, "too_large"),
    "the string 12.5": ("12.5", "reported", 12.5, None),
    "the string twelve": ("twelve", "computed", COMPUTED, "not_a_number"),
    "a bool": (True, "computed", COMPUTED, "not_a_number"),
    "0 for a priced model": (0.0, "computed", COMPUTED, "zero_for_priced_model"),
    "a sane cost": (0.25, "reported", 0.25, None),
}


@pytest.mark.parametrize("case", RECONCILIATION)
def test_reconciliation_table(case):
    reported, source, expected, reason = RECONCILIATION[case]
    processor, telemetry = build()
    (span,) = run(processor, request_with([{**SPAN, "gen_ai.usage.cost": reported}]))
    assert span["genops.cost.source"] == source
    assert span["genops.cost.total"] == pytest.approx(expected, rel=1e-12)
    if reason is None:
        assert "genops.cost.reported" not in span
        assert sum(sample(telemetry, "otelcol_processor_genops_reported_cost_rejected_total", reason=r)
                   for r in ("negative", "not_finite", "not_a_number", "too_large", "zero_for_priced_model")) == 0
    else:
        kept = span["genops.cost.reported"]
        assert kept == reported or (isinstance(reported, float) and math.isnan(reported) and math.isnan(kept))
        assert sample(telemetry, "otelcol_processor_genops_reported_cost_rejected_total", reason=reason) == 1


def test_a_free_models_zero_is_kept():
    processor, telemetry = build({"pricing": {"overrides": [
        {"model": "meta-llama/llama-3.3-70b-instruct:free", "input": 0.1, "output": 0.1}]}})
    (span,) = run(processor, request_with([{**SPAN, "gen_ai.response.model": "meta-llama/llama-3.3-70b-instruct:free",
                                            "gen_ai.usage.cost": 0.0}]))
    assert (span["genops.cost.source"], span["genops.cost.total"]) == ("reported", 0.0)
    assert "genops.cost.reported" not in span


def test_a_bad_genops_cost_total_is_replaced_not_left_for_the_counters():
    processor, _ = build()
    (priced, unpriced) = run(processor, request_with([
        {**SPAN, "genops.cost.total": -3.0},
        {"gen_ai.request.model": "acme/unknown", "gen_ai.usage.input_tokens": 5, "genops.cost.total": math.inf},
    ]))
    assert priced["genops.cost.total"] == pytest.approx(COMPUTED) and priced["genops.cost.reported"] == -3.0
    assert "genops.cost.total" not in unpriced and unpriced["genops.cost.source"] == "unpriced"


def test_the_cost_counter_never_decreases_and_stays_finite():
    processor, _ = build()
    made, sink = connector()
    totals = []
    for reported in (0.5, -5.0, 1e308, 1e308, math.inf, math.nan, "12.5", -1e308):
        request = request_with([{**SPAN, "gen_ai.usage.cost": reported}])
        processor.process(request)
        asyncio.run(made.consume(request))
        totals.append(cost_total(made, sink))
    assert all(math.isfinite(t) for t in totals)
    assert totals == sorted(totals)
    assert totals[-1] == pytest.approx(0.5 + 12.5 + 6 * COMPUTED, rel=1e-12)


@pytest.mark.parametrize("tokens", [math.inf, 1e12, -1, "lots"])
def test_absurd_token_counts_are_not_priced(tokens):
    processor, telemetry = build()
    (span,) = run(processor, request_with([{**SPAN, "gen_ai.usage.input_tokens": tokens}]))
    assert span["genops.cost.source"] == "unpriced" and "genops.cost.total" not in span
    assert telemetry.registry.get_sample_value("otelcol_processor_genops_unpriced_spans_total", {
        "processor": "genops", "model": "openai/gpt-4o", "reason": "invalid_usage"}) == 1


def test_drift_between_reported_and_computed_cost_is_observed_by_model():
    processor, telemetry = build()
    run(processor, request_with([{**SPAN, "gen_ai.usage.cost": COMPUTED * 1.4}]))
    labels = {"processor": "genops", "model": "openai/gpt-4o"}
    bucket = "otelcol_processor_genops_reported_cost_drift_bucket"
    assert telemetry.registry.get_sample_value(bucket, {**labels, "le": "+Inf"}) == 1
    # Billed 40% above the table's price: in the bucket up to +0.5, not in the one up to +0.2.
    assert telemetry.registry.get_sample_value(bucket, {**labels, "le": "0.5"}) == 1
    assert telemetry.registry.get_sample_value(bucket, {**labels, "le": "0.2"}) == 0


def twice(first: dict, second: dict, settings: dict | None = None):
    processor, telemetry = build({"duplicates": {"window": "10m", "max_calls": 100}, **(settings or {})})
    made, sink = connector()
    spans = []
    for attributes in (first, second):
        request = request_with([attributes])
        processor.process(request)
        asyncio.run(made.consume(request))
        spans += [{kv.key: attrs.to_python(kv.value) for kv in span.attributes}
                  for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    got = points(flushed(made, sink))
    return spans, got, telemetry


def test_the_same_call_twice_is_booked_once_at_the_providers_cost():
    app = {**SPAN, "gen_ai.response.id": "gen-1", "genops.team": "search"}
    broadcast = {**SPAN, "gen_ai.response.id": "gen-1", "genops.team": "search", "gen_ai.usage.total_cost": 0.9}
    spans, got, telemetry = twice(app, broadcast)
    assert spans[1]["genops.call.duplicate"] is True and "genops.call.duplicate" not in spans[0]
    assert spans[1]["genops.cost.total"] == 0.9  # each copy is forwarded with its own cost
    assert sum(got["cost"].values()) == pytest.approx(0.9, rel=1e-12)
    assert sum(got["requests"].values()) == 1
    token_sum = sum(v for k, v in got["tokens"].items())
    assert token_sum == 10_100
    assert sample(telemetry, "otelcol_processor_genops_duplicate_calls_total") == 1


def test_a_reported_first_copy_wins_over_a_later_computed_one():
    broadcast = {**SPAN, "gen_ai.response.id": "gen-2", "gen_ai.usage.total_cost": 0.9}
    app = {**SPAN, "gen_ai.response.id": "gen-2"}
    _, got, _ = twice(broadcast, app)
    assert sum(got["cost"].values()) == pytest.approx(0.9, rel=1e-12)


def test_a_billed_cost_below_the_first_copys_price_is_counted_as_overbooked():
    app = {**SPAN, "gen_ai.response.id": "gen-3"}
    broadcast = {**SPAN, "gen_ai.response.id": "gen-3", "gen_ai.usage.total_cost": COMPUTED / 2}
    _, got, telemetry = twice(app, broadcast)
    assert sum(got["cost"].values()) == pytest.approx(COMPUTED, rel=1e-12)
    assert sample(telemetry, "otelcol_processor_genops_overbooked_usd_total") == pytest.approx(COMPUTED / 2)


def test_different_calls_and_a_disabled_window_are_booked_each():
    one, two = {**SPAN, "gen_ai.response.id": "a"}, {**SPAN, "gen_ai.response.id": "b"}
    assert sum(twice(one, two)[1]["requests"].values()) == 2
    same = {**SPAN, "gen_ai.response.id": "a"}
    assert sum(twice(same, same, {"duplicates": {"max_calls": 0}})[1]["requests"].values()) == 2


WINDOWS = [calls.CallWindow] + ([calls.Window] if calls.Window is not None else [])


@pytest.mark.parametrize("window_type", WINDOWS, ids=lambda t: t.__name__)
def test_the_window_forgets_by_age_and_by_count(window_type):
    window = window_type(4, 100)  # max_calls, window_ns
    window.expire(0)
    assert window.see("a", 1.0, False) is None
    window.expire(60)  # past half the window: "a" moves to the older generation, still known
    assert window.see("a", 1.0, False) == (0.0, 0.0)
    window.expire(130)
    assert window.see("a", 1.0, False) is None  # two half-windows on: forgotten, seen anew
    for call in ("b", "c", "d", "e"):  # two generations of two calls each
        window.see(call, 1.0, False)
    assert window.see("e", 1.0, False) is not None and window.see("b", 1.0, False) is None
    assert len(window) <= 4
    window.expire(10_000)  # long idle: both generations go
    assert len(window) == 0
    long_id = "x" * 10_000
    window.see(long_id, 1.0, False)
    assert window.see(long_id, 1.0, False) is not None
    # A first copy priced here, then the provider's bill: the difference, or what was overbooked.
    assert window.see("f", 0.25, False) is None and window.see("f", 0.75, True) == (0.5, 0.0)
    assert window.see("f", 0.9, True) == (0.0, 0.0)  # booked at the bill already
    assert window.see("g", 0.5, False) is None and window.see("g", 0.2, True) == (0.0, 0.3)
    assert not window_type(0, 100).enabled and window_type(0, 100).see("a", 1.0, False) is None


def test_the_python_window_keeps_long_ids_as_hashes():
    window = calls.CallWindow(100, 1000)
    window.see("x" * 10_000, 1.0, False)
    assert all(len(k) <= 128 for k in list(window.current) + list(window.previous))


def test_label_values_are_capped_and_marked():
    assert cap("short") == "short"
    long = "é" * 1000
    capped = cap(long, 256)
    assert capped.endswith(MARKER) and len(capped.encode()) <= 256 and long.startswith(capped[:-len(MARKER)])


def test_huge_model_and_team_names_become_capped_labels():
    processor, telemetry = build()
    made, sink = connector()
    request = request_with([{**SPAN, "gen_ai.response.model": "m" * 1_000_000, "genops.team": "t" * 1_000_000}])
    processor.process(request)
    asyncio.run(made.consume(request))
    for table in points(flushed(made, sink)).values():
        for key in table:
            assert all(len(str(value).encode()) <= 256 for _, value in key)
    assert not processor_caches_hold_big_keys(processor)
    # The processor cut the model it wrote as genops.model; the span's own genops.team it leaves.
    assert sample(telemetry, "otelcol_processor_genops_truncated_values_total") == 1


def processor_caches_hold_big_keys(processor) -> bool:
    """True if any plan cache inside the processor's closure holds a key over 8 KiB."""
    process = processor.process
    by_signal = [c.cell_contents for c in (process.__closure__ or ())
                 if isinstance(c.cell_contents, dict) and Signal.TRACES in c.cell_contents]
    if by_signal:  # the function that dispatches by signal: the traces function holds the caches
        process = by_signal[0][Signal.TRACES]
    cells = [c.cell_contents for c in (process.__closure__ or ()) if isinstance(c.cell_contents, dict)]
    return any(len(resource) > 8192 or any(len(sig) > 8192 for _, sig in plans)
               for cache in cells for (resource, _), plans in cache.items() if isinstance(plans, dict))
