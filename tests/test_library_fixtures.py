"""The genops processor over what five real instrumentation libraries sent (proto_fixtures/libraries/).

The same expectations as tests/e2e/test_llm_libraries.py, in-process and without the libraries:
team from the resource, and the cost each library's attributes allow (tests/llm_libraries/expectations.py).
"""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay import fixtures, otlpjson
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.processors import genops
from relay.telemetry import SelfMetrics
from tests.llm_libraries import expectations
from tests.llm_libraries.expectations import EXPECTATIONS, LIST, llm_spans
from tests.support import Recorder

NAMES = list(EXPECTATIONS)


def load(name: str) -> ExportTraceServiceRequest:
    return fixtures.load(f"libraries/{name}", ExportTraceServiceRequest)


def processed(name: str) -> ExportTraceServiceRequest:
    config, problems = decode(genops.Config, expectations.GENOPS_SETTINGS)
    assert problems == []
    processor = genops.create(Settings(ComponentID("genops"), SelfMetrics()), config, Recorder())
    request = load(name)
    processor.process(request)
    return request


@pytest.mark.parametrize("name", NAMES)
def test_json_form_is_the_binary_request(name):
    text = (fixtures.fixtures_dir() / "libraries" / f"{name}.json").read_bytes()
    assert otlpjson.decode(text, ExportTraceServiceRequest) == load(name)


@pytest.mark.parametrize("name", NAMES)
def test_fixture_carries_what_its_pricing_rule_rests_on(name):
    """Guards the expectation table against a re-capture that changed what the library sends."""
    expectation = EXPECTATIONS[name]
    by_kind = {span.kind: span.attributes for span in llm_spans(name, [load(name)])}
    assert sorted(by_kind) == sorted(expectations.CALL_KINDS)
    cached = by_kind["cached"]
    if expectation.rule == LIST:
        assert not [key for key in cached if "cache" in key], "a cache count appeared: the rule may be CACHE now"
    else:
        assert expectation.rule_key in cached
    if expectation.response_id_key:
        assert all(span[expectation.response_id_key].startswith("gen-") for span in by_kind.values())


@pytest.mark.parametrize("name", NAMES)
def test_llm_spans_get_team_and_cost(name):
    assert expectations.problems(name, [processed(name)]) == []
