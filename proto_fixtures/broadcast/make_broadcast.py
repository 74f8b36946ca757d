"""Regenerate the OpenRouter Broadcast fixtures in this directory.

    python proto_fixtures/broadcast/make_broadcast.py

Run it from the repository root. It writes two pairs:

- ``traces_broadcast``: two chat calls as OpenRouter Broadcast delivers them to an
  "OpenTelemetry Collector" destination. Broadcast is not an OpenTelemetry SDK, so
  this request is written as the JSON document itself, shaped after the payload
  described in SOURCES.md (one resourceSpans entry per call, a root span named
  "LLM Generation", integer attribute values as JSON numbers).
- ``traces_broadcast_twin``: the first of those calls as the application that made
  it reports it, through the OpenTelemetry OpenAI instrumentation with the openai
  client pointed at openrouter.ai. It goes through the real SDK pipeline and the
  real OTLP protobuf encoder, like ``proto_fixtures/make_fixtures.py`` does.

The twin's ``gen_ai.response.id`` is the Broadcast span's, so a test can check that
the call is counted once when both arrive.

Every id comes from a seeded PRNG and every timestamp is a fixed offset from
``T0``, so two runs write byte-identical files. Each ``.binpb`` is the JSON parsed
with ``relay.otlpjson.decode`` and serialised with
``SerializeToString(deterministic=True)``; the script refuses to write a pair whose
JSON does not decode, or whose binary does not parse back to the same message.
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# 2025-06-15T15:06:40Z. Later than the main fixtures' T0 because the model used
# here (anthropic/claude-sonnet-4) was not on sale before May 2025.
T0 = 1_750_000_000_000_000_000
MS = 1_000_000
T0_SECONDS = T0 // 1_000_000_000

# OTLP enum values as they appear in OTLP/JSON (integers).
SPAN_KIND_CLIENT = 3
STATUS_CODE_OK = 1


# --------------------------------------------------------------------------
# Broadcast side: the JSON document OpenRouter posts.
# --------------------------------------------------------------------------

def _value(v):
    """One OTLP/JSON AnyValue.

    Broadcast writes integers as JSON numbers (``{"intValue": 2152}``), not as
    the decimal strings the OTLP/JSON mapping prefers; see SOURCES.md. Python
    ints stand for intValue, so a whole-number double is passed as a float
    marked with ``_Double``.
    """
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, _Double):
        return {"doubleValue": v.number}
    if isinstance(v, int):
        return {"intValue": v}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    raise TypeError(f"no OTLP/JSON value for {type(v).__name__}")


class _Double:
    """A doubleValue; ``number`` may be a whole int, which Broadcast writes as 48, not 48.0."""

    def __init__(self, number: int | float) -> None:
        self.number = number


def _attrs(pairs):
    return [{"key": key, "value": _value(value)} for key, value in pairs]


def _json_text(obj, compact=False):
    """Content attributes carry JSON as a string value."""
    if compact:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(obj, ensure_ascii=False)


class Call:
    """One API request through OpenRouter, with what both sides saw of it."""

    def __init__(self, *, rng, generation_id, model, vendor, upstream, upstream_slug, permaslug,
                 start_ms, end_ms, latencies, tokens, prices, costs, finish, native_finish,
                 api_key_name, prompt, completion, max_tokens, user=None, session=None, trace=None):
        self.trace_id = rng.getrandbits(128)
        self.upstream_request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.endpoint_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.generation_id = generation_id
        self.model = model
        self.vendor = vendor
        self.upstream = upstream
        self.upstream_slug = upstream_slug
        self.permaslug = permaslug
        self.start_ms, self.end_ms = start_ms, end_ms
        self.latencies = latencies
        self.tokens = tokens
        self.prices = prices
        self.costs = costs
        self.finish, self.native_finish = finish, native_finish
        self.api_key_name = api_key_name
        self.prompt, self.completion = prompt, completion
        self.max_tokens = max_tokens
        self.user, self.session, self.trace = user, session, trace or {}

    @property
    def trace_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def span_hex(self) -> str:
        # Broadcast's root span id is the first half of its trace id.
        return self.trace_hex[:16]

    def raw_request(self) -> dict:
        # The request body minus its messages, which gen_ai.prompt already carries.
        request = {"model": self.model, "max_tokens": self.max_tokens}
        if self.user:
            request["user"] = self.user
        if self.session:
            request["session_id"] = self.session
        if self.trace:
            request["trace"] = self.trace
        return request

    def broadcast_attributes(self) -> list:
        input_tokens, output_tokens = self.tokens
        provider_responses = [{
            "id": self.upstream_request_id,
            "provider_name": self.upstream,
            "status": 200,
            "latency": self.latencies["upstream_ms"],
            "is_byok": False,
            "endpoint_id": self.endpoint_id,
            "model_permaslug": self.permaslug,
        }]
        prompt = _json_text({"messages": self.prompt})
        completion = _json_text({"completion": self.completion, "reasoning": None,
                                 "rawRequest": self.raw_request()})
        # Every trace.metadata.<key> other than openrouter.* is repeated as span.metadata.<key>.
        metadata = [(key, value) for key, value in self.trace.items()]
        metadata.append(("provider_responses", _json_text(provider_responses, compact=True)))

        pairs = [("trace.name", "OpenRouter Request")]
        if self.user:
            pairs.append(("user.id", self.user))
        if self.session:
            pairs.append(("session.id", self.session))
        pairs += [(f"trace.metadata.{key}", value) for key, value in metadata]
        pairs += [("span.type", "generation"), ("span.level", "DEFAULT")]
        pairs += [(f"span.metadata.{key}", value) for key, value in metadata]
        pairs += [
            ("span.input", prompt),
            ("span.output", completion),
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.system", self.vendor),
            ("gen_ai.provider.name", self.vendor),
            ("gen_ai.request.model", self.model),
            ("gen_ai.response.model", self.model),
            ("gen_ai.response.id", self.generation_id),
            ("gen_ai.usage.input_tokens", input_tokens),
            ("gen_ai.usage.output_tokens", output_tokens),
            ("gen_ai.usage.total_tokens", input_tokens + output_tokens),
            ("gen_ai.usage.input_cost", self.costs[0]),
            ("gen_ai.usage.output_cost", self.costs[1]),
            ("gen_ai.usage.total_cost", self.costs[2]),
            ("gen_ai.prompt", prompt),
            ("gen_ai.completion", completion),
            ("gen_ai.usage.input_tokens.cached", 0),
            ("gen_ai.usage.input_tokens.cache_write", 0),
            ("gen_ai.usage.input_tokens.cache_write_5m", 0),
            ("gen_ai.usage.input_tokens.cache_write_1h", 0),
            ("gen_ai.usage.output_tokens.reasoning", 0),
            # A JSON array inside a string, not an OTLP array value.
            ("gen_ai.response.finish_reasons", _json_text([self.finish], compact=True)),
            ("gen_ai.response.finish_reason", self.finish),
            ("trace.metadata.openrouter.source", "openrouter"),
            ("trace.metadata.openrouter.api_key_name", self.api_key_name),
            ("trace.metadata.openrouter.entity_id", "org_2fixture0000000000000000"),
            ("trace.metadata.openrouter.creator_user_id", "user_2fixture0000000000000000"),
        ]
        timing = self.latencies
        pairs += [
            ("trace.metadata.openrouter.router_latency_ms", _Double(timing["router_ms"])),
            ("trace.metadata.openrouter.provider_request_ms", _Double(timing["router_ms"])),
            ("trace.metadata.openrouter.provider_headers_ms", _Double(timing["headers_ms"])),
            ("trace.metadata.openrouter.first_token_ms", _Double(timing["first_token_ms"])),
            ("trace.metadata.openrouter.provider_body_end_ms", _Double(timing["body_end_ms"])),
            ("trace.metadata.openrouter.provider_time_to_first_token_ms",
             _Double(timing["first_token_ms"] - timing["router_ms"])),
            ("trace.metadata.openrouter.inter_token_latency_ms",
             _Double(round((timing["body_end_ms"] - timing["first_token_ms"]) / output_tokens, 6))),
            ("trace.metadata.openrouter.provider_name", self.upstream),
            ("trace.metadata.openrouter.provider_slug", self.upstream_slug),
            ("trace.metadata.openrouter.finish_reason", self.native_finish),
            ("trace.metadata.openrouter.input_unit_price", self.prices[0]),
            ("trace.metadata.openrouter.output_unit_price", self.prices[1]),
        ]
        return _attrs(pairs)

    def broadcast_resource_spans(self) -> dict:
        return {
            "resource": {"attributes": _attrs([
                ("service.name", "openrouter"),
                ("openrouter.trace.id", self.generation_id),
                ("service.version", "1.0.0"),
            ])},
            "scopeSpans": [{
                "scope": {"name": "openrouter"},
                "spans": [{
                    "traceId": self.trace_hex,
                    "spanId": self.span_hex,
                    "name": "LLM Generation",
                    "kind": SPAN_KIND_CLIENT,
                    # Broadcast's clock has millisecond resolution.
                    "startTimeUnixNano": str(T0 + self.start_ms * MS),
                    "endTimeUnixNano": str(T0 + self.end_ms * MS),
                    "status": {"code": STATUS_CODE_OK},
                    "attributes": self.broadcast_attributes(),
                }],
            }],
        }


def make_calls():
    rng = random.Random(4242)
    support = Call(
        rng=rng,
        generation_id=f"gen-{T0_SECONDS}-Qm7Lx2Vb9TcRw4Ks8NpE",
        model="anthropic/claude-sonnet-4",
        vendor="anthropic",
        upstream="Amazon Bedrock",
        upstream_slug="amazon-bedrock",
        permaslug="anthropic/claude-4-sonnet-20250522",
        start_ms=412, end_ms=4870,
        latencies={"router_ms": 48, "upstream_ms": 1702, "headers_ms": 1210,
                   "first_token_ms": 1655, "body_end_ms": 4452},
        tokens=(1840, 312),
        prices=(3e-06, 1.5e-05),                 # USD per token
        costs=(0.00552, 0.00468, 0.0102),        # input, output, total (USD)
        finish="stop", native_finish="end_turn",
        api_key_name="support-bot-prod",
        prompt=[
            {"role": "system", "content": "You are the support assistant of an online shop."},
            {"role": "user", "content": "Where is my order #1042? It was due on Friday."},
        ],
        completion="Order #1042 left our warehouse on Thursday and is due with you tomorrow.",
        max_tokens=400,
        user="user_8412",
        session="sess-2f7c9a1e",
        trace={"team": "support", "project": "helpdesk-bot", "customer_id": "cust-0042"},
    )
    search = Call(
        rng=rng,
        generation_id=f"gen-{T0_SECONDS + 9}-Hd3Zp8Wq1YfLs6Bn0RcT",
        model="openai/gpt-4o-mini",
        vendor="openai",
        upstream="Azure",
        upstream_slug="azure",
        permaslug="openai/gpt-4o-mini-2024-07-18",
        start_ms=9204, end_ms=10511,
        latencies={"router_ms": 37, "upstream_ms": 1260, "headers_ms": 402,
                   "first_token_ms": 455, "body_end_ms": 1289},
        tokens=(420, 96),
        prices=(1.5e-07, 6e-07),
        costs=(6.3e-05, 5.76e-05, 0.0001206),
        finish="stop", native_finish="stop",
        api_key_name="search-prod",
        prompt=[
            {"role": "user", "content": "Rewrite as a search query: cheap flights to Lisbon in March"},
        ],
        completion="flights Lisbon March low fare",
        max_tokens=64,
    )
    return support, search


def broadcast_document(calls) -> dict:
    return {"resourceSpans": [call.broadcast_resource_spans() for call in calls]}


# --------------------------------------------------------------------------
# Application side: the same first call through the OpenAI instrumentation.
# --------------------------------------------------------------------------

SDK_ATTRS = {
    "telemetry.sdk.language": "python",
    "telemetry.sdk.name": "opentelemetry",
    "telemetry.sdk.version": "1.45.2",  # pinned, as in make_fixtures.py
}
APP_RESOURCE = Resource({
    "service.name": "support-bot",
    "service.version": "2.3.1",
    "deployment.environment.name": "production",
    **SDK_ATTRS,
})
OPENAI_SCOPE = ("opentelemetry.instrumentation.openai_v2", "2.1b0")


class SeededIds(IdGenerator):
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1


def twin_request(call: Call) -> ExportTraceServiceRequest:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        sampler=ALWAYS_ON,
        resource=APP_RESOURCE,
        shutdown_on_exit=False,
        id_generator=SeededIds(7007),
        span_limits=SpanLimits(max_attributes=128, max_events=128, max_links=128),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(*OPENAI_SCOPE)
    input_tokens, output_tokens = call.tokens
    # The app's span opens before OpenRouter receives the request and closes after
    # the last byte is back, so it brackets the Broadcast span.
    span = tracer.start_span(
        f"chat {call.model}",
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": call.model,
            "gen_ai.request.max_tokens": call.max_tokens,
            "server.address": "openrouter.ai",
            "server.port": 443,
            "gen_ai.response.model": call.model,
            "gen_ai.response.id": call.generation_id,
            "gen_ai.response.finish_reasons": [call.finish],
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
        },
        start_time=T0 + (call.start_ms - 41) * MS,
    )
    span.end(end_time=T0 + (call.end_ms + 35) * MS)
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())


# --------------------------------------------------------------------------
# Writing and checking.
# --------------------------------------------------------------------------

def _otlpjson():
    # Run as a script, the repository root is not on sys.path by default.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from relay import otlpjson
    return otlpjson


def write_pair(name: str, text: bytes) -> ExportTraceServiceRequest:
    otlpjson = _otlpjson()
    try:
        message = otlpjson.decode(text, ExportTraceServiceRequest)
    except ValueError as err:
        raise SystemExit(f"{name}: relay.otlpjson.decode refused the JSON: {err}")
    binary = message.SerializeToString(deterministic=True)
    reparsed = ExportTraceServiceRequest()
    reparsed.ParseFromString(binary)
    if reparsed != message:
        raise SystemExit(f"{name}: the binary does not parse back to the decoded message")
    # The relay's own encoding (int64 as strings) must decode to the same message too.
    if otlpjson.decode(otlpjson.encode(message), ExportTraceServiceRequest) != message:
        raise SystemExit(f"{name}: OTLP/JSON does not round-trip through relay.otlpjson")
    (HERE / f"{name}.json").write_bytes(text)
    (HERE / f"{name}.binpb").write_bytes(binary)
    print(f"{name}: {len(binary)} bytes binary, {len(text)} bytes JSON")
    return message


def _span_attrs(span) -> dict:
    return {kv.key: kv.value for kv in span.attributes}


def check(broadcast: ExportTraceServiceRequest, twin: ExportTraceServiceRequest, calls) -> None:
    """Catch a script change that would break what the tests rely on."""
    spans = [span for rs in broadcast.resource_spans for ss in rs.scope_spans for span in ss.spans]
    if len(spans) != len(calls):
        raise SystemExit(f"traces_broadcast: {len(spans)} spans, expected {len(calls)}")
    for span, call in zip(spans, calls):
        attrs = _span_attrs(span)
        if attrs["gen_ai.usage.input_tokens"].WhichOneof("value") != "int_value":
            raise SystemExit("traces_broadcast: token counts must decode as int_value")
        if attrs["gen_ai.usage.total_cost"].WhichOneof("value") != "double_value":
            raise SystemExit("traces_broadcast: costs must decode as double_value")
        if attrs["gen_ai.response.id"].string_value != call.generation_id:
            raise SystemExit("traces_broadcast: wrong gen_ai.response.id")
    (twin_span,) = [span for rs in twin.resource_spans for ss in rs.scope_spans for span in ss.spans]
    twin_attrs = _span_attrs(twin_span)
    first = _span_attrs(spans[0])
    for key in ("gen_ai.response.id", "gen_ai.request.model", "gen_ai.response.model",
                "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
        if twin_attrs[key] != first[key]:
            raise SystemExit(f"traces_broadcast_twin: {key} differs from the Broadcast span's")
    if any(key.endswith("_cost") or key.startswith("trace.metadata.") for key in twin_attrs):
        raise SystemExit("traces_broadcast_twin: the app's span must carry no cost or Broadcast metadata")
    if not (twin_span.start_time_unix_nano < spans[0].start_time_unix_nano
            and spans[0].end_time_unix_nano < twin_span.end_time_unix_nano):
        raise SystemExit("traces_broadcast_twin: the app's span must bracket the Broadcast span")


def main():
    calls = make_calls()
    text = json.dumps(broadcast_document(calls), ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
    broadcast = write_pair("traces_broadcast", text)
    otlpjson = _otlpjson()
    twin_text = otlpjson.encode(twin_request(calls[0]), indent=2) + b"\n"
    twin = write_pair("traces_broadcast_twin", twin_text)
    check(broadcast, twin, calls)


if __name__ == "__main__":
    main()
