"""Make three chat calls through one instrumentation library; run with that library's venv python.

    drive.py LIBRARY OPENROUTER_BASE_URL

The OTLP/HTTP traces endpoint comes from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and the resource
from OTEL_RESOURCE_ATTRIBUTES, both set by the caller. This file runs outside the project's
environment, so it imports nothing from it: only the standard library and the venv's packages.
"""

from __future__ import annotations

import os
import sys

# Kept in step with tests/llm_libraries/standin.py (not importable from a library's venv).
CACHE_MARKER = "[cached-prompt]"
MODEL = "openai/gpt-4o-mini"


def sdk_provider():
    """A TracerProvider the way an application sets one up for an instrumentor."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # TracerProvider() builds its resource with Resource.create(), which reads OTEL_RESOURCE_ATTRIBUTES.
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def setup_otel_v2():
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    provider = sdk_provider()
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return provider.shutdown


def setup_otel_v2_metrics_only():
    """Metrics, no traces: the GenAI usage histograms with every span sampled out, as an
    application that samples its traces at 0 sends them. The OTLP/HTTP metrics endpoint comes
    from OTEL_EXPORTER_OTLP_METRICS_ENDPOINT."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    provider = TracerProvider(sampler=ALWAYS_OFF)
    trace.set_tracer_provider(provider)
    return _otel_v2_with_metrics(provider)


def setup_otel_v2_both():
    """Spans and usage metrics of the same calls; the spans are exported first, at shutdown."""
    return _otel_v2_with_metrics(sdk_provider())


def _otel_v2_with_metrics(tracer_provider):
    from opentelemetry import metrics
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    # Long enough that only the flush at shutdown exports: one export holds every call.
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=600_000)
    meter_provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)

    def shutdown():
        tracer_provider.shutdown()
        meter_provider.shutdown()
    return shutdown


def setup_openllmetry():
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    provider = sdk_provider()
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return provider.shutdown


def setup_openinference():
    from openinference.instrumentation.openai import OpenAIInstrumentor

    provider = sdk_provider()
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return provider.shutdown


def setup_openlit():
    import json
    import tempfile

    import openlit
    from opentelemetry import trace

    # openlit.init downloads a price list from GitHub unless given one; an empty list
    # keeps it offline and leaves it without a price for our model, as for most OpenRouter names.
    prices = os.path.join(tempfile.mkdtemp(prefix="openlit-"), "pricing.json")
    with open(prices, "w", encoding="utf-8") as file:
        json.dump({}, file)
    # openlit's resource sets service.name itself (to "default" unless told), over
    # OTEL_RESOURCE_ATTRIBUTES; genops.team from the variable survives the merge.
    openlit.init(
        service_name="openlit",
        otlp_endpoint=os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].removesuffix("/v1/traces"),
        pricing_json=prices,
        disable_metrics=True,
        disable_events=True,
    )
    return trace.get_tracer_provider().shutdown


def setup_logfire():
    import logfire

    # Logfire adds an OTLP/HTTP span exporter of its own when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.
    logfire.configure(send_to_logfire=False, console=False, inspect_arguments=False)
    logfire.instrument_openai()
    return logfire.shutdown


SETUP = {
    "otel-openai-v2": setup_otel_v2,
    "openllmetry": setup_openllmetry,
    "openinference": setup_openinference,
    "openlit": setup_openlit,
    "otel-openai-v2-metrics": setup_otel_v2_metrics_only,
    "otel-openai-v2-both": setup_otel_v2_both,
    "logfire": setup_logfire,
}


def calls(base_url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="sk-or-standin", max_retries=0, timeout=20)
    client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}])
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count to four."}],
        stream=True, stream_options={"include_usage": True})
    for _ in stream:
        pass
    long_prompt = "You are a careful support agent. " * 200
    client.chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": long_prompt + CACHE_MARKER},
                               {"role": "user", "content": "Summarise the ticket."}])


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in SETUP:
        print(f"usage: drive.py {{{','.join(SETUP)}}} OPENROUTER_BASE_URL", file=sys.stderr)
        return 2
    shutdown = SETUP[argv[1]]()
    try:
        calls(argv[2])
    finally:
        # Flushes the batch processor; without it the spans die with the process.
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
