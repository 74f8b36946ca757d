"""Regenerate the OTLP fixtures in this directory.

    python proto_fixtures/make_fixtures.py

Traces and logs go through the real OpenTelemetry SDK pipeline (provider,
processor, in-memory exporter) and the real OTLP protobuf encoders, so the
payloads have exactly the shape an instrumented application sends. Metrics
are built from the SDK's metric data-model classes and put through the real
metrics encoder, because a live MeterProvider stamps wall-clock times that
would make the output change on every run. Everything that could vary
(ids, timestamps, SDK version, sampling, environment-driven limits) is
pinned, so two runs produce byte-identical files.
"""

from __future__ import annotations

import bisect
import random
import sys
from pathlib import Path

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

HERE = Path(__file__).resolve().parent
# 2024-05-29T16:26:40Z; every timestamp is an offset from here.
T0 = 1_717_000_000_000_000_000
MS = 1_000_000
# Pinned rather than read from the installed SDK so an upgrade does not
# rewrite every fixture.
SDK_ATTRS = {
    "telemetry.sdk.language": "python",
    "telemetry.sdk.name": "opentelemetry",
    "telemetry.sdk.version": "1.45.2",
}

APP_RESOURCE = Resource(
    {
        "service.name": "support-bot",
        "service.version": "2.3.1",
        "deployment.environment.name": "production",
        **SDK_ATTRS,
    }
)
GENOPS_RESOURCE = Resource(
    {
        "service.name": "genops-demo",
        "service.version": "0.9.0",
        "deployment.environment.name": "production",
        **SDK_ATTRS,
    }
)
OPENAI_SCOPE = ("opentelemetry.instrumentation.openai_v2", "2.1b0")
HTTP_SCOPE = ("opentelemetry.instrumentation.asgi", "0.54b0")
GENOPS_SCOPE = ("genops", "0.4.0")


class FixedIdGenerator(IdGenerator):
    """Random-looking but reproducible ids: a seeded PRNG, not the OS one."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1


def _provider(resource: Resource, seed: int, exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(
        sampler=ALWAYS_ON,  # the default consults OTEL_TRACES_SAMPLER
        resource=resource,
        shutdown_on_exit=False,
        id_generator=FixedIdGenerator(seed),
        span_limits=SpanLimits(max_attributes=128, max_events=128, max_links=128),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _openai_chat(model, response=None, usage=None, finish=("stop",), **extra):
    """Attributes as the OpenAI instrumentation records a call routed via OpenRouter.

    ``response`` is (response model, response id); None means the call failed.
    """
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": model,
        "server.address": "openrouter.ai",
        "server.port": 443,
    }
    if response:
        attrs |= {
            "gen_ai.response.model": response[0],
            "gen_ai.response.id": response[1],
            "gen_ai.response.finish_reasons": list(finish),
            "gen_ai.usage.input_tokens": usage[0],
            "gen_ai.usage.output_tokens": usage[1],
        }
    return attrs | extra


def _genops_chat(model, response, usage, who, cost, providers, **extra):
    """Attributes as the GenOps SDK records a call.

    ``who`` is (team, project, customer); ``cost`` None means OpenRouter
    reported none; ``providers`` is (predicted, actual).
    """
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openrouter",
        "gen_ai.request.model": model,
        "gen_ai.response.model": response[0],
        "gen_ai.response.id": response[1],
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": usage[0],
        "gen_ai.usage.output_tokens": usage[1],
        "server.address": "openrouter.ai",
        "http.response.status_code": 200,
        "genops.team": who[0],
        "genops.project": who[1],
        "genops.customer_id": who[2],
        "genops.environment": "production",
        "genops.provider": "openrouter",
        "genops.model": model,
        "genops.tokens.input": usage[0],
        "genops.tokens.output": usage[1],
    }
    if cost is not None:
        attrs |= {"genops.cost.total": cost, "genops.cost.currency": "USD"}
    attrs |= {
        "genops.openrouter.predicted_provider": providers[0],
        "genops.openrouter.actual_provider": providers[1],
        "genops.openrouter.fallback_used": providers[0] != providers[1],
    }
    return attrs | extra


def _span(tracer, name, start_ms, end_ms, attrs, *, parent=None, links=(), events=(), status=None):
    span = tracer.start_span(
        name,
        context=trace.set_span_in_context(parent) if parent is not None else None,
        kind=SpanKind.CLIENT,
        attributes=attrs,
        links=list(links),
        start_time=T0 + start_ms * MS,
    )
    for event_name, at_ms, event_attrs in events:
        span.add_event(event_name, event_attrs, timestamp=T0 + at_ms * MS)
    if status is not None:
        span.set_status(status)
    span.end(end_time=T0 + end_ms * MS)
    return span


SUPPORT = ("support", "helpdesk-bot", "cust-0042")
SEARCH = ("search", "doc-search", "cust-0107")
PROMPT_EVENT = (
    "gen_ai.content.prompt",
    4,
    {"gen_ai.prompt": '[{"role": "user", "content": "Where is my order #1042?"}]'},
)
EXCEPTION_EVENT = (
    "exception",
    5411,
    {
        "exception.type": "openai.InternalServerError",
        "exception.message": "Error code: 502 - upstream provider unavailable",
        "exception.escaped": "True",
    },
)


def make_traces():
    """Return the trace request and the span contexts logs and exemplars point at."""
    exporter = InMemorySpanExporter()
    app = _provider(APP_RESOURCE, 1001, exporter)
    genops = _provider(GENOPS_RESOURCE, 2002, exporter)
    openai = app.get_tracer(*OPENAI_SCOPE)
    gtracer = genops.get_tracer(*GENOPS_SCOPE)

    # The child is started and ended inside the server span, as in a real request.
    server = app.get_tracer(*HTTP_SCOPE).start_span(
        "POST /v1/chat",
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": "POST",
            "http.route": "/v1/chat",
            "url.path": "/v1/chat",
            "url.scheme": "https",
            "server.address": "support-bot.internal",
            "user_agent.original": "support-web/5.2",
        },
        start_time=T0,
    )
    gpt4o = ("openai/gpt-4o-2024-08-06", "gen-1717000000-hWb3ZkQp1xLr9TnA")
    child = _span(
        openai, "chat openai/gpt-4o", 3, 1843,
        _openai_chat("openai/gpt-4o", gpt4o, (812, 164), **{
            "gen_ai.usage.cache_read.input_tokens": 512,
            "http.response.status_code": 200,
        }),
        parent=server,
        events=[PROMPT_EVENT],
    )
    server.set_attribute("http.response.status_code", 200)
    server.end(end_time=T0 + 1851 * MS)

    llama = "meta-llama/llama-3.1-70b-instruct"
    _span(
        openai, f"chat {llama}", 2100, 4320,
        _openai_chat(llama, (llama, "gen-1717000002-Q8mT4vXc0sJd2KeP"), (1530, 256), ("length",), **{
            "gen_ai.request.max_tokens": 256,
            "gen_ai.request.temperature": 0.2,
            "http.response.status_code": 200,
        }),
    )
    failed = _span(
        openai, "chat anthropic/claude-3.5-sonnet", 5000, 5412,
        _openai_chat("anthropic/claude-3.5-sonnet", **{
            "http.response.status_code": 502,
            "error.type": "InternalServerError",
        }),
        events=[EXCEPTION_EVENT],
        status=Status(StatusCode.ERROR, "502 Bad Gateway: upstream provider unavailable"),
    )

    billed = _span(
        gtracer, "chat openai/gpt-4o", 6000, 7210,
        _genops_chat("openai/gpt-4o", ("openai/gpt-4o-2024-08-06", "gen-1717000006-Ab12Cd34Ef56Gh78"),
                     (1200, 310), SUPPORT, 0.0061, ("OpenAI", "OpenAI")),
    )
    # The one fallback: OpenRouter predicted Anthropic but served from Bedrock.
    _span(
        gtracer, "chat anthropic/claude-3.5-sonnet", 7500, 10180,
        _genops_chat("anthropic/claude-3.5-sonnet",
                     ("anthropic/claude-3.5-sonnet-20240620", "gen-1717000007-Zy98Xw76Vu54Ts32"),
                     (2048, 390), SUPPORT, 0.012, ("Anthropic", "Amazon Bedrock"),
                     **{"gen_ai.usage.cache_read.input_tokens": 1024}),
    )
    # No cost reported: the relay has to price this one itself.
    _span(
        gtracer, f"chat {llama}", 10500, 12020,
        _genops_chat(llama, (llama, "gen-1717000010-Lm0Np1Qr2St3Uv4W"),
                     (640, 128), SEARCH, None, ("Together", "Together")),
    )
    _span(
        gtracer, "chat openai/o1-mini", 12500, 19870,
        _genops_chat("openai/o1-mini", ("openai/o1-mini-2024-09-12", "gen-1717000012-Rs5Tu6Vw7Xy8Za9B"),
                     (950, 1210), ("research", "report-writer", "cust-0107"), 0.01736, ("OpenAI", "OpenAI"),
                     **{"gen_ai.usage.reasoning.output_tokens": 896}),
        # A follow-up call in its own trace, linked to the request that prompted it.
        links=[Link(billed.get_span_context(), {"genops.link.reason": "follow_up"})],
    )
    _span(
        gtracer, "chat openai/gpt-4o-mini", 20000, 20640,
        _genops_chat("openai/gpt-4o-mini", ("openai/gpt-4o-mini-2024-07-18", "gen-1717000020-Cd0Ef1Gh2Ij3Kl4M"),
                     (420, 96), ("search", "doc-search", "cust-0213"), 0.000121, ("OpenAI", "OpenAI")),
    )

    request = encode_spans(exporter.get_finished_spans())
    spans = {"child": child, "failed": failed, "billed": billed}
    return request, {name: span.get_span_context() for name, span in spans.items()}


def _log(at_ms, span, severity, body, attrs, event_name=None):
    return dict(at_ms=at_ms, span=span, severity=severity, body=body, attrs=attrs, event_name=event_name)


def make_logs(contexts):
    choice = {
        "index": 0,
        "finish_reason": "stop",
        "message": {"role": "assistant", "content": "Your order shipped yesterday."},
    }
    streams = [
        (APP_RESOURCE, ("support-bot.llm", "2.3.1"), [
            _log(1843, contexts["child"], SeverityNumber.INFO, choice, {"gen_ai.system": "openai"}, "gen_ai.choice"),
            _log(5412, contexts["failed"], SeverityNumber.ERROR,
                 "chat completion failed: upstream provider unavailable (502)",
                 {"gen_ai.request.model": "anthropic/claude-3.5-sonnet", "http.response.status_code": 502}),
        ]),
        (GENOPS_RESOURCE, GENOPS_SCOPE, [
            _log(7210, contexts["billed"], SeverityNumber.INFO, "cost recorded",
                 {"genops.team": "support", "genops.cost.total": 0.0061, "genops.cost.currency": "USD"}),
            _log(7300, None, SeverityNumber.WARN, "team support has used 80% of its monthly budget",
                 {"genops.team": "support", "genops.budget.limit": 50.0, "genops.budget.used": 40.12,
                  "genops.budget.thresholds": [0.5, 0.8, 1.0]}),
        ]),
    ]
    exporter = InMemoryLogRecordExporter()
    for resource, scope, records in streams:
        provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        logger = provider.get_logger(*scope)
        for record in records:
            # Emitting inside a span's context is how the SDK correlates a log with a trace.
            span = record["span"]
            context = trace.set_span_in_context(trace.NonRecordingSpan(span)) if span else None
            logger.emit(
                timestamp=T0 + record["at_ms"] * MS,
                observed_timestamp=T0 + (record["at_ms"] + 1) * MS,
                context=context,
                severity_number=record["severity"],
                severity_text=record["severity"].name,
                body=record["body"],
                attributes=record["attrs"],
                event_name=record["event_name"],
            )
    return encode_logs(exporter.get_finished_logs())


def _histogram_point(attrs, start, end, values, bounds, exemplars=()):
    """A point whose counts are derived from samples, so they are self-consistent."""
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1  # buckets are (lower, upper]
    return HistogramDataPoint(
        attributes=attrs,
        start_time_unix_nano=start,
        time_unix_nano=end,
        count=len(values),
        sum=sum(values),
        bucket_counts=counts,
        explicit_bounds=bounds,
        min=min(values),
        max=max(values),
        exemplars=list(exemplars),
    )


def make_metrics(contexts):
    start, end = T0, T0 + 60_000 * MS
    cumulative = AggregationTemporality.CUMULATIVE

    def number(value, **attrs):
        return NumberDataPoint(attributes=attrs, start_time_unix_nano=start, time_unix_nano=end, value=value)

    def requests(team, model, count):
        return number(count, **{"genops.team": team, "gen_ai.request.model": model, "genops.provider": "openrouter"})

    def token_point(token_type, values, exemplars=()):
        attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "openai/gpt-4o"}
        attrs["gen_ai.token.type"] = token_type
        return _histogram_point(attrs, start, end, values, token_bounds, exemplars)

    token_bounds = [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0]
    billed = contexts["billed"]
    exemplar = Exemplar({"genops.customer_id": "cust-0042"}, 1200, T0 + 7210 * MS, billed.span_id, billed.trace_id)
    metrics = [
        Metric(
            name="genops.llm.requests",
            description="LLM requests made, by team and model",
            unit="{request}",
            data=Sum(
                data_points=[
                    requests("support", "openai/gpt-4o", 42),
                    requests("support", "anthropic/claude-3.5-sonnet", 17),
                    requests("search", "meta-llama/llama-3.1-70b-instruct", 5),
                ],
                aggregation_temporality=cumulative,
                is_monotonic=True,
            ),
        ),
        Metric(
            name="genops.budget.remaining",
            description="Budget left in the current period",
            unit="USD",
            data=Gauge(
                data_points=[number(9.88, **{"genops.team": "support"}), number(112.5, **{"genops.team": "search"})]
            ),
        ),
        Metric(
            name="gen_ai.client.token.usage",
            description="Measures number of input and output tokens used",
            unit="{token}",
            data=Histogram(
                data_points=[
                    token_point("input", [812, 1200, 96, 2048, 3], exemplars=[exemplar]),
                    token_point("output", [164, 310, 12, 390]),
                ],
                aggregation_temporality=cumulative,
            ),
        ),
    ]
    scope = ScopeMetrics(scope=InstrumentationScope(*GENOPS_SCOPE), metrics=metrics, schema_url="")
    return encode_metrics(
        MetricsData(resource_metrics=[ResourceMetrics(resource=GENOPS_RESOURCE, scope_metrics=[scope], schema_url="")])
    )


def write(name, request):
    # Run as a script, the repository root is not on sys.path by default.
    if str(HERE.parent) not in sys.path:
        sys.path.insert(0, str(HERE.parent))
    from relay import otlpjson
    from relay.fixtures import request_class_for

    binary = request.SerializeToString(deterministic=True)
    text = otlpjson.encode(request, indent=2) + b"\n"
    # Refuse to write a pair that disagrees; the tests rely on them matching.
    if otlpjson.decode(text, request_class_for(name)) != request:
        raise SystemExit(f"{name}: OTLP/JSON does not round-trip")
    (HERE / f"{name}.binpb").write_bytes(binary)
    (HERE / f"{name}.json").write_bytes(text)
    print(f"{name}: {len(binary)} bytes binary, {len(text)} bytes JSON")


def main():
    traces, contexts = make_traces()
    write("traces_llm", traces)
    write("metrics", make_metrics(contexts))
    write("logs", make_logs(contexts))


if __name__ == "__main__":
    main()
