"""The native attribute scanner and the pure-Python reader give identical answers."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from relay import attrs, fixtures, received, signatures
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.genai import scan as read
from relay.processors import attributes, genops
from relay.telemetry import SelfMetrics
from tests.support import Recorder

needs_native = pytest.mark.skipif(not read.NATIVE, reason="the native scanner was not built here")

STATIC = ("gen_ai.request.model", "gen_ai.response.model", "genops.team", "service.name")
DYNAMIC = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "genops.cost.total")
KEYS = STATIC + DYNAMIC + ("http.route", "other")

values = st.one_of(st.text(max_size=20), st.integers(min_value=-2**63, max_value=2**63 - 1),
                   st.floats(allow_nan=False), st.booleans(), st.binary(max_size=5),
                   st.lists(st.integers(min_value=0, max_value=9), max_size=3), st.none())


def build_request(spans: list[list[tuple[str, object]]], resources: int = 1) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for r in range(resources):
        scope = request.resource_spans.add().scope_spans.add()
        for index, attributes_ in enumerate(spans):
            # Statuses and times vary, some spans ending before they start.
            span = scope.spans.add(name=f"s{r}", start_time_unix_nano=10**18 + index,
                                   end_time_unix_nano=10**18 + (index * 37 % 5 - 2) * 10**9)
            span.status.code = index % 3
            for key, value in attributes_:
                kv = span.attributes.add()
                kv.key = key
                if value is not None:  # None leaves the AnyValue empty
                    attrs.fill(kv.value, value)
    return request


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=8), max_size=6),
       st.integers(min_value=1, max_value=3))
def test_native_and_python_readers_agree(spans, resources):
    request = build_request(spans, resources)
    native = read.Reader(STATIC, DYNAMIC, native=True).read(request)
    python = read.Reader(STATIC, DYNAMIC, native=False).read(request)
    assert native == python
    assert len(native) == len(spans) * resources


@needs_native
def test_readers_agree_on_the_llm_fixture():
    request = fixtures.load("traces_llm")
    assert read.Reader(STATIC, DYNAMIC, native=True).read(request) == \
        read.Reader(STATIC, DYNAMIC, native=False).read(request)


def test_reader_contract():
    request = build_request([[("genops.team", "search"), ("gen_ai.usage.input_tokens", 12),
                              ("gen_ai.usage.input_tokens", 99), ("genops.cost.total", [1]),
                              ("other", "x")]])
    ((mask, signature, dynamic, status, duration, trace_state),) = read.Reader(STATIC, DYNAMIC).read(request)
    assert (status, duration, trace_state) == (0, 0, None)  # the span ends 2 s before it starts: duration 0
    assert mask == (1 << 2) | (1 << 4) | (1 << 6)
    assert signatures.values(signature) == {2: "search"}
    assert dynamic == (12, None, ...)  # the first entry wins; a list is present but no scalar


@pytest.mark.parametrize("native", [True, False] if read.NATIVE else [False])
def test_the_trace_state_is_read_as_text(native):
    request = build_request([[("genops.team", "search")], []])
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].trace_state = "vendor=x,ot=th:8;rv:abcdef"
    entries = read.Reader(STATIC, DYNAMIC, native=native).read(request)
    assert [entry[5] for entry in entries] == ["vendor=x,ot=th:8;rv:abcdef", None]


def test_the_received_bytes_are_used_only_while_they_describe_the_request():
    original = build_request([[("gen_ai.request.model", "a")]])
    data = original.SerializeToString()
    token = received.bind(original, data)
    try:
        assert received.raw_bytes(original) is data
        assert received.raw_bytes(build_request([])) is None  # another object, e.g. a fan-out copy
        received.changed()
        assert received.raw_bytes(original) is None
    finally:
        received.unbind(token)


@pytest.mark.parametrize("native", [True, False] if read.NATIVE else [False])
def test_genops_sees_what_an_earlier_processor_changed(native, monkeypatch):
    if not native:
        monkeypatch.setattr(read, "_scan", None)
    telemetry = SelfMetrics()
    sink = Recorder()
    genops_config, problems = decode(genops.Config, {"pricing": {"overrides": [
        {"model": "acme/cheap", "input": 1.0, "output": 1.0}]}})
    assert problems == []
    enrich = genops.create(Settings(ComponentID("genops"), telemetry), genops_config, sink)
    rename_config, problems = decode(attributes.Config, {"actions": [
        {"key": "gen_ai.request.model", "value": "acme/cheap", "action": "upsert"}]})
    assert problems == []
    rename = attributes.create(Settings(ComponentID("attributes"), telemetry), rename_config, enrich)

    request = build_request([[("gen_ai.request.model", "acme/unknown"), ("gen_ai.usage.input_tokens", 1000)]])
    token = received.bind(request, request.SerializeToString())  # as the receiver does
    try:
        asyncio.run(rename.consume(request))
    finally:
        received.unbind(token)
    (out,) = sink.requests
    span = {kv.key: attrs.to_python(kv.value) for kv in out.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert span["genops.cost.source"] == "computed"
    assert span["genops.cost.total"] == pytest.approx(1000 * 1.0 / 1_000_000)


def enriched_wire_form(request) -> bytes | None:
    """Runs genops as the receiver would (the payload bound in the same task) and returns the
    wire form it leaves bound for the consumers after it."""
    config, problems = decode(genops.Config, {"pricing": {"fallback": {"input": 1.0, "output": 2.0}}})
    assert problems == []
    enrich = genops.create(Settings(ComponentID("genops"), SelfMetrics()), config, Recorder())

    async def receive():
        token = received.bind(request, request.SerializeToString())
        try:
            await enrich.consume(request)
            return received.raw_bytes(request)
        finally:
            received.unbind(token)

    return asyncio.run(receive())


@needs_native
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.tuples(st.sampled_from(KEYS + ("gen_ai.usage.cost", "genops.cost.source")), values),
                         max_size=8), max_size=6),
       st.integers(min_value=1, max_value=3))
def test_the_spliced_wire_form_is_the_enriched_request(spans, resources):
    """After genops runs, the bytes it leaves bound parse to exactly the request it changed."""
    request = build_request(spans, resources)
    data = enriched_wire_form(request)
    if data is not None:  # None: some key was updated in place, so consumers serialize instead
        assert ExportTraceServiceRequest.FromString(data) == request


@needs_native
def test_the_spliced_wire_form_of_the_fixture():
    request = fixtures.load("traces_llm")
    data = enriched_wire_form(request)
    assert data is not None  # the fixture's spans take only appended attributes
    assert ExportTraceServiceRequest.FromString(data) == request
    assert b"genops.cost.source" in data


_varint = signatures.varint


def _unknown(field: int, kind: int, depth: int = 0) -> bytes:
    """One unknown field of every wire type the protobuf parser accepts, groups nested."""
    tag = _varint(field << 3 | kind)
    if kind == 0:
        return tag + _varint(2**40 + field)
    if kind == 1:
        return tag + b"\x01" * 8
    if kind == 2:
        return tag + _varint(3) + b"abc"
    if kind == 5:
        return tag + b"\x02" * 4
    inner = _unknown(field + 1, 0) + (_unknown(field + 2, 3, depth + 1) if depth < 2 else b"")
    return tag + inner + _varint(field << 3 | 4)  # kind 3: a group, ended by its own end tag


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


unknown_fields = st.lists(st.tuples(st.integers(min_value=100, max_value=5000), st.sampled_from([0, 1, 2, 3, 5])),
                          max_size=3)


@needs_native
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=6), min_size=1, max_size=4),
       unknown_fields, unknown_fields, unknown_fields, unknown_fields)
def test_the_scanner_skips_every_field_the_parser_accepts(spans, in_span, in_kv, in_scope, in_request):
    """Unknown fields (groups too) at every level: what the parser accepts, the scanner reads alike."""
    extra = {name: b"".join(_unknown(f, k) for f, k in fields)
             for name, fields in (("span", in_span), ("kv", in_kv), ("scope", in_scope), ("request", in_request))}
    span_bytes = []
    for attributes_ in spans:
        span = build_request([attributes_]).resource_spans[0].scope_spans[0].spans[0]
        body = b"".join(_field(9, kv.SerializeToString() + extra["kv"]) for kv in span.attributes)
        span.ClearField("attributes")
        span_bytes.append(span.SerializeToString() + body + extra["span"])
    scope = b"".join(_field(2, data) for data in span_bytes) + extra["scope"]
    data = _field(1, _field(2, scope)) + extra["request"]
    request = ExportTraceServiceRequest.FromString(data)  # the parser accepts it
    native = read.Reader(STATIC, DYNAMIC, native=True).scan(data)
    python = read.Reader(STATIC, DYNAMIC, native=False).read_python(request)
    assert native == python
    assert read.splice(data, [b""] * len(spans)) == data  # and splices through it unchanged


@needs_native
def test_a_group_the_parser_would_refuse_is_refused_by_the_scanner_too():
    unterminated = _field(1, _field(2, _field(2, _varint(100 << 3 | 3))))
    with pytest.raises(ValueError):
        read.Reader(STATIC, DYNAMIC, native=True).scan(unterminated)
