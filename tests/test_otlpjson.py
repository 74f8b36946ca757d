"""OTLP/JSON codec tests, against the recorded fixtures and hand-written documents."""

from __future__ import annotations

import copy
import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from relay import fixtures, otlpjson

FIXTURES = ["traces_llm", "metrics", "logs"]
TRACE_ID = "5B8EFFF798038103D269B633813FC60C"
SPAN_ID = "EEE19B7EC3C1B174"
PARENT_ID = "EEE19B7EC3C1B173"


def spec_example() -> dict:
    """A trace request written the way the OTLP specification's examples are."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "my.library", "version": "1.0.0"},
                        "spans": [
                            {
                                "traceId": TRACE_ID,
                                "spanId": SPAN_ID,
                                "parentSpanId": PARENT_ID,
                                "name": "I'm a server span",
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "kind": 2,
                                "attributes": [{"key": "my.span.attr", "value": {"intValue": "42"}}],
                                "links": [{"traceId": TRACE_ID, "spanId": PARENT_ID}],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def first_span(request: ExportTraceServiceRequest) -> Span:
    return request.resource_spans[0].scope_spans[0].spans[0]


def decode_trace(doc) -> ExportTraceServiceRequest:
    return otlpjson.decode(doc, ExportTraceServiceRequest)


def fixture_json(name: str) -> bytes:
    return (fixtures.fixtures_dir() / f"{name}.json").read_bytes()


# --- fixtures ---------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_json_decodes_to_the_binary_fixture(name):
    binary = fixtures.load(name)
    decoded = otlpjson.decode(fixture_json(name), type(binary))
    assert decoded.ByteSize() > 0
    assert decoded == binary


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_json_is_what_encode_produces(name):
    # Catches a fixture pair that was edited by hand or left stale.
    assert otlpjson.encode(fixtures.load(name), indent=2) + b"\n" == fixture_json(name)


@pytest.mark.parametrize("name", FIXTURES)
def test_compact_round_trip(name):
    message = fixtures.load(name)
    encoded = otlpjson.encode(message)
    assert b"\n" not in encoded
    assert otlpjson.decode(encoded, type(message)) == message


def test_fixture_ids_are_written_as_lowercase_hex():
    binary = fixtures.load("traces_llm")
    doc = json.loads(fixture_json("traces_llm"))
    for rs_json, rs in zip(doc["resourceSpans"], binary.resource_spans, strict=True):
        for ss_json, ss in zip(rs_json["scopeSpans"], rs.scope_spans, strict=True):
            for span_json, span in zip(ss_json["spans"], ss.spans, strict=True):
                assert span_json["traceId"] == span.trace_id.hex()
                assert span_json["spanId"] == span.span_id.hex()
                assert span_json.get("parentSpanId", "") == span.parent_span_id.hex()


def test_exemplar_and_log_ids_are_hex():
    metrics = json.loads(fixture_json("metrics"))
    exemplar = metrics["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][2]["histogram"]["dataPoints"][0]["exemplars"][0]
    logs = json.loads(fixture_json("logs"))
    record = logs["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    for holder in (exemplar, record):
        assert len(holder["traceId"]) == 32 and int(holder["traceId"], 16)
        assert len(holder["spanId"]) == 16 and int(holder["spanId"], 16)


def test_load_picks_the_request_class_from_the_name():
    assert isinstance(fixtures.load("traces_llm"), ExportTraceServiceRequest)
    assert isinstance(fixtures.load("metrics.binpb"), ExportMetricsServiceRequest)
    assert isinstance(fixtures.load("logs"), ExportLogsServiceRequest)
    with pytest.raises(ValueError, match="signal"):
        fixtures.load("profiles_x")
    with pytest.raises(FileNotFoundError, match="traces_missing"):
        fixtures.load("traces_missing")


def test_trace_fixture_has_the_promised_shapes():
    spans = [s for rs in fixtures.load("traces_llm").resource_spans for ss in rs.scope_spans for s in ss.spans]
    by_id = {s.span_id: s for s in spans}
    attrs = {s.span_id: {kv.key: kv.value for kv in s.attributes} for s in spans}
    assert 8 <= len(spans) <= 12
    assert [s.status.message for s in spans if s.status.code == Status.STATUS_CODE_ERROR] == [
        "502 Bad Gateway: upstream provider unavailable"
    ]
    children = [s for s in spans if s.parent_span_id]
    assert len(children) == 1
    parent = by_id[children[0].parent_span_id]
    assert (parent.kind, parent.name, children[0].kind) == (Span.SPAN_KIND_SERVER, "POST /v1/chat", Span.SPAN_KIND_CLIENT)
    assert any(s.events for s in spans) and any(s.links for s in spans)
    fallbacks = [a for a in attrs.values() if a.get("genops.openrouter.fallback_used") and a["genops.openrouter.fallback_used"].bool_value]
    assert len(fallbacks) == 1
    assert fallbacks[0]["genops.openrouter.predicted_provider"] != fallbacks[0]["genops.openrouter.actual_provider"]


# --- decoding ---------------------------------------------------------------


def test_spec_example_decodes():
    span = first_span(decode_trace(spec_example()))
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.span_id == bytes.fromhex(SPAN_ID)
    assert span.parent_span_id == bytes.fromhex(PARENT_ID)
    assert span.links[0].trace_id == bytes.fromhex(TRACE_ID)
    assert span.links[0].span_id == bytes.fromhex(PARENT_ID)
    assert span.kind == Span.SPAN_KIND_SERVER
    assert span.status.code == Status.STATUS_CODE_ERROR
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.attributes[0].value.int_value == 42


def test_hex_ids_are_case_insensitive():
    upper = decode_trace(spec_example())
    mixed = spec_example()
    mixed["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "5b8EFFf798038103d269B633813FC60c"
    assert first_span(decode_trace(mixed)).trace_id == bytes.fromhex(TRACE_ID)
    lowered = spec_example()
    span = lowered["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    for key in ("traceId", "spanId", "parentSpanId"):
        span[key] = span[key].lower()
    assert decode_trace(lowered) == upper


def test_int64_as_number_or_string():
    as_number = spec_example()
    span = as_number["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["startTimeUnixNano"] = 1544712660000000000
    span["attributes"][0]["value"]["intValue"] = 42
    assert decode_trace(as_number) == decode_trace(spec_example())
    assert first_span(decode_trace(as_number)).start_time_unix_nano == 1544712660000000000


def test_unknown_fields_are_ignored():
    doc = spec_example()
    doc["somethingNew"] = {"nested": [1, 2]}
    doc["resourceSpans"][0]["futureField"] = "x"
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["brandNewField"] = 7
    span["attributes"][0]["value"]["extra"] = True
    assert decode_trace(doc) == decode_trace(spec_example())


def test_enums_as_integers_or_names():
    named = spec_example()
    span = named["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["kind"] = "SPAN_KIND_SERVER"
    span["status"]["code"] = "STATUS_CODE_ERROR"
    assert decode_trace(named) == decode_trace(spec_example())
    assert first_span(decode_trace(spec_example())).kind == 2


def test_proto_field_names_are_accepted():
    doc = {
        "resource_spans": [
            {"scope_spans": [{"spans": [{"trace_id": TRACE_ID, "span_id": SPAN_ID, "parent_span_id": "", "start_time_unix_nano": 5}]}]}
        ]
    }
    span = first_span(decode_trace(doc))
    assert (span.trace_id, span.span_id, span.parent_span_id) == (bytes.fromhex(TRACE_ID), bytes.fromhex(SPAN_ID), b"")
    assert span.start_time_unix_nano == 5


def test_empty_or_null_id_means_unset():
    doc = spec_example()
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["parentSpanId"] = ""
    span["links"][0]["spanId"] = None
    decoded = first_span(decode_trace(doc))
    assert decoded.parent_span_id == b"" and decoded.links[0].span_id == b""


def test_accepts_bytes_str_and_dict_and_leaves_dict_alone():
    doc = spec_example()
    pristine = copy.deepcopy(doc)
    text = json.dumps(doc)
    expected = decode_trace(doc)
    assert doc == pristine
    assert decode_trace(text) == expected
    assert decode_trace(text.encode()) == expected
    assert decode_trace(bytearray(text.encode())) == expected


def test_decodes_logs_and_metrics_ids():
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": TRACE_ID, "spanId": SPAN_ID, "severityNumber": 17}]}]}]}
    record = otlpjson.decode(logs, ExportLogsServiceRequest).resource_logs[0].scope_logs[0].log_records[0]
    assert (record.trace_id, record.span_id, record.severity_number) == (bytes.fromhex(TRACE_ID), bytes.fromhex(SPAN_ID), 17)
    exemplar = {"traceId": TRACE_ID, "spanId": SPAN_ID, "asDouble": 1.5}
    metrics = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "m", "gauge": {"dataPoints": [{"asDouble": 1.5, "exemplars": [exemplar]}]}}]}]}]}
    decoded = otlpjson.decode(metrics, ExportMetricsServiceRequest)
    got = decoded.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].exemplars[0]
    assert (got.trace_id, got.span_id) == (bytes.fromhex(TRACE_ID), bytes.fromhex(SPAN_ID))


# --- rejection --------------------------------------------------------------

SPAN_PATH = "resourceSpans[0].scopeSpans[0].spans[0]"


@pytest.mark.parametrize(
    "field, path",
    [
        ("traceId", f"{SPAN_PATH}.traceId"),
        ("spanId", f"{SPAN_PATH}.spanId"),
        ("parentSpanId", f"{SPAN_PATH}.parentSpanId"),
    ],
)
def test_bad_hex_is_rejected_naming_the_field(field, path):
    doc = spec_example()
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span[field] = "zz" + span[field][2:]
    with pytest.raises(ValueError) as caught:
        decode_trace(doc)
    assert str(caught.value) == f"{path}: not a hex string"


def test_bad_hex_in_a_link_names_the_link():
    doc = spec_example()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["links"][0]["traceId"] = "g" * 32
    with pytest.raises(ValueError, match=r"spans\[0\]\.links\[0\]\.traceId: not a hex string"):
        decode_trace(doc)


def test_bad_hex_in_an_exemplar_names_the_exemplar():
    metrics = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"sum": {"dataPoints": [{"exemplars": [{"spanId": "xyz"}]}]}}]}]}]}
    with pytest.raises(ValueError) as caught:
        otlpjson.decode(metrics, ExportMetricsServiceRequest)
    assert str(caught.value).startswith("resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0].exemplars[0].spanId: ")


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("traceId", TRACE_ID[:30], "expected 32 hex characters, got 30"),
        ("traceId", TRACE_ID + "00", "expected 32 hex characters, got 34"),
        ("spanId", TRACE_ID, "expected 16 hex characters, got 32"),
        ("parentSpanId", SPAN_ID[:15], "expected 16 hex characters, got 15"),
        # A base64 id, as plain proto3 JSON would write it: not OTLP/JSON.
        ("traceId", "W47/95gDgQPSabYzgT/GDA==", "expected 32 hex characters, got 24"),
        ("spanId", "EEE19B7E C3C1B17", "not a hex string"),
        ("traceId", 12345, "not a hex string (got a JSON number)"),
        ("spanId", ["EE"], "not a hex string (got a JSON array)"),
    ],
)
def test_malformed_ids_are_rejected(field, value, expected):
    doc = spec_example()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0][field] = value
    with pytest.raises(ValueError) as caught:
        decode_trace(doc)
    assert str(caught.value) == f"{SPAN_PATH}.{field}: {expected}"


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b'{"resourceSpans": [', "malformed JSON"),
        (b"", "malformed JSON"),
        (b"\xc3\x28{}", "malformed JSON"),
        ("{'single': 'quotes'}", "malformed JSON"),
        (b'{"resourceSpans": NaN}', "NaN is not valid JSON"),
        (b"[]", "top level, got a JSON array"),
        (b"null", "top level, got a JSON null"),
    ],
)
def test_malformed_json_is_rejected(payload, expected):
    with pytest.raises(ValueError, match=expected):
        decode_trace(payload)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda span: span.update(startTimeUnixNano="soon"), "startTimeUnixNano"),
        (lambda span: span.update(startTimeUnixNano=1.5), "startTimeUnixNano"),
        (lambda span: span.update(attributes={"k": "v"}), "attributes"),
        (lambda span: span.update(name=3), "name"),
        (lambda span: span.update(kind=[]), "kind"),
    ],
)
def test_wrong_types_are_rejected(mutate, expected):
    doc = spec_example()
    mutate(doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0])
    with pytest.raises(ValueError, match=expected) as caught:
        decode_trace(doc)
    assert "ExportTraceServiceRequest" in str(caught.value)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "\\ud800"}]}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"status": {"code": "\\udfff"}}]}]}]}',
    ],
)
def test_unpaired_surrogate_is_a_value_error(payload):
    # The protobuf runtime reports these as SystemError unless we step in.
    with pytest.raises(ValueError, match="surrogate"):
        decode_trace(payload)


def test_infinite_number_for_an_enum_is_a_value_error():
    doc = spec_example()
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["kind"] = float("inf")
    with pytest.raises(ValueError, match="ExportTraceServiceRequest"):
        decode_trace(doc)


def test_too_deep_nesting_is_a_value_error():
    value = {"stringValue": "leaf"}
    for _ in range(200):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": value}]}]}]}
    with pytest.raises(ValueError, match="deep"):
        otlpjson.decode(json.dumps(doc), ExportLogsServiceRequest)


def test_unsupported_input_type_is_a_type_error():
    with pytest.raises(TypeError):
        decode_trace(42)


# --- encoding ---------------------------------------------------------------


def test_encode_writes_otlp_json_conventions():
    request = decode_trace(spec_example())
    encoded = otlpjson.encode(request)
    doc = json.loads(encoded)
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == TRACE_ID.lower()
    assert span["spanId"] == SPAN_ID.lower()
    assert span["parentSpanId"] == PARENT_ID.lower()
    assert span["links"][0] == {"traceId": TRACE_ID.lower(), "spanId": PARENT_ID.lower()}
    assert span["kind"] == 2 and span["status"]["code"] == 2
    assert span["startTimeUnixNano"] == "1544712660000000000"
    assert span["attributes"][0]["value"] == {"intValue": "42"}
    assert b'"trace_id"' not in encoded and b" " not in encoded.replace(b"I'm a server span", b"")


def test_encode_omits_unset_ids_and_keeps_utf8():
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name = "résumé ✓"
    doc = json.loads(otlpjson.encode(request))
    assert doc == {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "résumé ✓"}]}]}]}
    assert "résumé ✓".encode() in otlpjson.encode(request)
