"""Sampled spans count for the calls they stand for: the real SDK with a sampler that writes
the OpenTelemetry tracestate threshold, through the built-in config, scraped from Prometheus."""

from __future__ import annotations

import time

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import TraceState

from tests.e2e.test_default_config import GPT4O_IN, GPT4O_OUT, default_config_on_free_ports, scrape
from tests.support import RelayProcess

MAX = 1 << 56
# (tracestate threshold, adjusted count as the specification defines it, spans sent)
THRESHOLDS = [("0", 1.0, 3), ("8", 2.0, 2), ("e6666666666668", MAX / (MAX - 0xe6666666666668), 4), (None, 1.0, 5)]
TOKENS_IN, TOKENS_OUT = 1000, 200


class Threshold(Sampler):
    """Keeps every span and records the threshold a probability sampler would have applied."""

    def __init__(self, th: str | None):
        self.th = th

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                      trace_state=None):
        state = TraceState([("ot", f"th:{self.th}")]) if self.th is not None else None
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)

    def get_description(self) -> str:
        return f"Threshold({self.th})"


def test_sampled_spans_count_as_their_adjusted_count(tmp_path):
    config, ports = default_config_on_free_ports()
    relay = RelayProcess(config, tmp_path, ports["health"]).start()
    try:
        for th, _, spans in THRESHOLDS:
            provider = TracerProvider(sampler=Threshold(th),
                                      resource=Resource.create({"service.name": "chat", "genops.team": "search"}))
            provider.add_span_processor(SimpleSpanProcessor(
                OTLPSpanExporter(endpoint=f"127.0.0.1:{ports['otlp']}", insecure=True)))
            tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
            for _ in range(spans):
                with tracer.start_as_current_span("chat openai/gpt-4o", attributes={
                        "gen_ai.request.model": "openai/gpt-4o", "gen_ai.system": "openai",
                        "gen_ai.usage.input_tokens": TOKENS_IN, "gen_ai.usage.output_tokens": TOKENS_OUT}):
                    pass
            provider.shutdown()

        calls = sum(count * spans for _, count, spans in THRESHOLDS)
        want_cost = calls * (TOKENS_IN * GPT4O_IN + TOKENS_OUT * GPT4O_OUT)
        totals: dict[str, float] = {}
        deadline = time.monotonic() + 30  # flushes every 5 s
        while time.monotonic() < deadline:
            totals = {}
            for (name, labels), value in scrape(ports["prometheus"]).items():
                token_type = dict(labels).get("token_type", "")
                totals[name + token_type] = totals.get(name + token_type, 0.0) + value
            if totals.get("genops_openrouter_requests_total", 0) >= calls * (1 - 1e-9):
                break
            time.sleep(0.5)
        assert totals.get("genops_openrouter_requests_total") == pytest.approx(calls, rel=1e-9), totals
        assert totals["genops_openrouter_tokens_totalinput"] == pytest.approx(calls * TOKENS_IN, rel=1e-9)
        assert totals["genops_openrouter_tokens_totaloutput"] == pytest.approx(calls * TOKENS_OUT, rel=1e-9)
        assert totals["genops_openrouter_cost_total"] == pytest.approx(want_cost, rel=1e-9)
        # The duration histogram describes the calls seen: one observation per span.
        seen = sum(spans for _, _, spans in THRESHOLDS)
        assert totals["genops_openrouter_request_duration_seconds_count"] == seen
    finally:
        assert relay.stop() == 0
