"""The attributes processor: action conformance, config validation, include/exclude, the reference config."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import struct

import pytest
import yaml
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from relay import attrs, client, fixtures
from relay.client import ClientInfo
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import ConfigError
from relay.pipeline.registry import default_registry
from relay.processors import attributes
from tests.support import Recorder, reference_subset

# --- helpers ------------------------------------------------------------------------------------------------


def typed(value):
    """A value with its type spelled out, so 1, 1.0 and True compare different (and NaN equal to NaN)."""
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, dict):
        return ("dict", {k: typed(v) for k, v in value.items()})
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def typed_pairs(pairs):
    return [(key, typed(value)) for key, value in pairs]


def attribute_pairs(kvs):
    return typed_pairs((kv.key, attrs.to_python(kv.value)) for kv in kvs)


def fill_attributes(kvs, pairs):
    for key, value in pairs:  # not attrs.put: a test may want a key twice
        kv = kvs.add()
        kv.key = key
        attrs.fill(kv.value, value)


def config_of(raw) -> attributes.Config:
    config, problems = decode(attributes.Config, raw)
    assert problems == []
    return config


def run_on_span(actions, start):
    """The span's attributes, as typed pairs, after the processor with ``actions`` ran over it."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="s")
    fill_attributes(span.attributes, start)
    assert attributes.process_function(config_of({"actions": actions}))(request) is request
    return attribute_pairs(span.attributes)


def action(text: str) -> dict:
    """One action written as a YAML flow mapping, so values keep their YAML types."""
    return yaml.safe_load("{" + text + "}")


@pytest.fixture
def bound_client():
    token = client.bind(ClientInfo.from_pairs(
        [("x-tenant", "acme"), ("X-Multi", "a"), ("x-multi", "b"), ("x-empty", ""), ("bin-bin", b"\x00")], "1.2.3.4:5"))
    yield
    client.unbind(token)


# --- insert / update / upsert: every action x key present / absent x every value source ---------------------

ABSENT = "<absent>"

# Starting attributes: [target="old", count=7] when the key is present, [count=7] when absent.
# Columns: the value of "target" afterwards for
#   insert (absent, present), update (absent, present), upsert (absent, present).
WRITE_TABLE = [
    ('value: new', "new", "old", ABSENT, "new", "new", "new"),
    ('value: ""', "", "old", ABSENT, "", "", ""),
    ('value: "5"', "5", "old", ABSENT, "5", "5", "5"),
    ('value: 5', 5, "old", ABSENT, 5, 5, 5),
    ('value: 0', 0, "old", ABSENT, 0, 0, 0),
    ('value: -9223372036854775808', -(2**63), "old", ABSENT, -(2**63), -(2**63), -(2**63)),
    ('value: 2.5', 2.5, "old", ABSENT, 2.5, 2.5, 2.5),
    ('value: 0.0', 0.0, "old", ABSENT, 0.0, 0.0, 0.0),
    ('value: true', True, "old", ABSENT, True, True, True),
    ('value: false', False, "old", ABSENT, False, False, False),
    ('value: [a, 1, 2.5, true]', ["a", 1, 2.5, True], "old", ABSENT, ["a", 1, 2.5, True],
     ["a", 1, 2.5, True], ["a", 1, 2.5, True]),
    ('value: {k: v, n: 1}', {"k": "v", "n": 1}, "old", ABSENT, {"k": "v", "n": 1},
     {"k": "v", "n": 1}, {"k": "v", "n": 1}),
    ('from_attribute: count', 7, "old", ABSENT, 7, 7, 7),
    ('from_attribute: target', ABSENT, "old", ABSENT, "old", ABSENT, "old"),
    ('from_attribute: missing', ABSENT, "old", ABSENT, "old", ABSENT, "old"),
    ('from_context: metadata.x-tenant', "acme", "old", ABSENT, "acme", "acme", "acme"),
    ('from_context: metadata.X-Tenant', "acme", "old", ABSENT, "acme", "acme", "acme"),
    ('from_context: metadata.x-multi', "a;b", "old", ABSENT, "a;b", "a;b", "a;b"),
    ('from_context: metadata.x-empty', "", "old", ABSENT, "", "", ""),
    ('from_context: metadata.x-missing', ABSENT, "old", ABSENT, "old", ABSENT, "old"),
    ('from_context: metadata.bin-bin', ABSENT, "old", ABSENT, "old", ABSENT, "old"),
    ('from_context: client.address', "1.2.3.4", "old", ABSENT, "1.2.3.4", "1.2.3.4", "1.2.3.4"),
    ('from_context: x-tenant', "acme", "old", ABSENT, "acme", "acme", "acme"),
    ('from_attribute: missing, default_value: dflt', "dflt", "old", ABSENT, "dflt", "dflt", "dflt"),
    ('from_attribute: count, default_value: dflt', 7, "old", ABSENT, 7, 7, 7),
    ('from_context: metadata.x-missing, default_value: 0', 0, "old", ABSENT, 0, 0, 0),
    ('from_context: metadata.x-tenant, default_value: dflt', "acme", "old", ABSENT, "acme", "acme", "acme"),
]


def _write_cases():
    for fragment, *columns in WRITE_TABLE:
        for index, (name, present) in enumerate([(a, p) for a in ("insert", "update", "upsert")
                                                  for p in (False, True)]):
            state = "present" if present else "absent"
            yield pytest.param(name, present, fragment, columns[index], id=f"{name}-{state}-{fragment}")


@pytest.mark.parametrize("name, present, fragment, target", list(_write_cases()))
def test_write_actions(bound_client, name, present, fragment, target):
    start = [("target", "old"), ("count", 7)] if present else [("count", 7)]
    got = run_on_span([action(f"key: target, action: {name}, {fragment}")], start)
    if present:
        expected = [("target", target), ("count", 7)]  # overwritten in place, never moved
    else:
        expected = [("count", 7)] + ([] if target == ABSENT else [("target", target)])
    assert got == typed_pairs(expected)


def test_from_attribute_copies_the_value_with_its_type():
    start = [("d", 1.5), ("b", b"\x00\x01"), ("l", [1, "x"]), ("m", {"k": [True]})]
    got = run_on_span([action(f"key: copy_{k}, from_attribute: {k}, action: insert") for k in "dblm"], start)
    assert got == typed_pairs(start + [("copy_d", 1.5), ("copy_b", b"\x00\x01"), ("copy_l", [1, "x"]),
                                       ("copy_m", {"k": [True]})])


def test_from_context_without_a_client_is_a_no_op():
    actions = [action("key: t, from_context: metadata.x-tenant, action: upsert"),
               action("key: a, from_context: client.address, action: upsert")]
    assert run_on_span(actions, [("count", 7)]) == typed_pairs([("count", 7)])


@pytest.mark.parametrize("address, expected", [
    ("ipv4:10.1.2.3:4317", "10.1.2.3"),
    ("ipv6:[::1]:4317", "::1"),
    ("ipv6:%5B::1%5D:4317", "::1"),
    ("1.2.3.4:5", "1.2.3.4"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("::1", "::1"),
    ("unix:/tmp/relay.sock", "unix:/tmp/relay.sock"),
    ("", ABSENT),
])
def test_client_address_is_the_peer_ip(address, expected):
    token = client.bind(ClientInfo.from_pairs([], address))
    try:
        got = run_on_span([action("key: peer, from_context: client.address, action: insert")], [])
    finally:
        client.unbind(token)
    assert got == ([] if expected == ABSENT else typed_pairs([("peer", expected)]))


def test_context_values_are_read_per_request():
    process = attributes.process_function(config_of({"actions": [
        action("key: tenant, from_context: metadata.x-tenant, action: upsert")]}))
    seen = []
    for tenant in ("acme", "globex"):
        token = client.bind(ClientInfo.from_pairs([("x-tenant", tenant)], "1.2.3.4:5"))
        try:
            request = ExportTraceServiceRequest()
            span = request.resource_spans.add().scope_spans.add().spans.add(name="s")
            process(request)
        finally:
            client.unbind(token)
        seen.append(attrs.get(span.attributes, "tenant"))
    assert seen == ["acme", "globex"]


# --- delete ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fragment, start, expected", [
    ("key: secret", [("a", 1), ("secret", "x"), ("b", 2)], [("a", 1), ("b", 2)]),
    ("key: secret", [("a", 1)], [("a", 1)]),
    ("key: secret", [("secret", "x"), ("a", 1), ("secret", "y")], [("a", 1)]),
    ('pattern: "^db\\\\."', [("db.user", "u"), ("a", 1), ("db.password", "p"), ("xdb.y", 2)],
     [("a", 1), ("xdb.y", 2)]),
    ("pattern: secret", [("app.secret.key", "k"), ("a", 1)], [("a", 1)]),  # searched, not anchored
    ('key: a, pattern: "^b"', [("a", 1), ("b1", 2), ("b2", 3), ("c", 4)], [("c", 4)]),
    ('pattern: "^nothing$"', [("a", 1)], [("a", 1)]),
], ids=["key", "key-absent", "key-repeated", "pattern", "pattern-searched", "key-and-pattern",
        "pattern-no-match"])
def test_delete(fragment, start, expected):
    assert run_on_span([action(f"{fragment}, action: delete")], start) == typed_pairs(expected)


# --- hash -----------------------------------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def array_digest(items) -> str:
    value = AnyValue()
    attrs.fill(value, items)
    return sha256(value.SerializeToString(deterministic=True))


@pytest.mark.parametrize("value, expected", [
    ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),  # FIPS 180-2 example
    ("alice@example.com", sha256(b"alice@example.com")),
    ("", sha256(b"")),
    ("héllo ✓", sha256("héllo ✓".encode())),
    (42, sha256(struct.pack("<q", 42))),
    (-1, sha256(b"\xff" * 8)),
    (True, sha256(b"\x01")),
    (False, sha256(b"\x00")),
    (1.5, sha256(struct.pack("<d", 1.5))),
    (-0.0, sha256(b"\x00" * 7 + b"\x80")),
    (b"\x00\x01", sha256(b"\x00\x01")),
    (["a", 1], array_digest(["a", 1])),
    ({"k": "v"}, array_digest({"k": "v"})),
], ids=["string-abc", "string", "string-empty", "string-unicode", "int", "int-negative", "bool-true",
        "bool-false", "double", "double-negative-zero", "bytes", "array", "map"])
def test_hash_value_types(value, expected):
    assert run_on_span([action("key: v, action: hash")], [("v", value), ("other", "x")]) == \
        typed_pairs([("v", expected), ("other", "x")])


def test_hash_string_equals_hashlib_of_the_utf8_text():
    for text in ("user-1234", "ünïcödé", "a;b"):
        got = run_on_span([action("key: v, action: HASH")], [("v", text)])
        assert got == typed_pairs([("v", hashlib.sha256(text.encode()).hexdigest())])


def test_hash_by_pattern_hashes_every_match_once():
    start = [("user.email", "e"), ("user.id", 7), ("other", "o"), ("user.email", "e2")]
    got = run_on_span([action('key: user.email, pattern: "^user\\\\.", action: hash')], start)
    assert got == typed_pairs([("user.email", sha256(b"e")), ("user.id", sha256(struct.pack("<q", 7))),
                               ("other", "o"), ("user.email", sha256(b"e2"))])


def test_hash_of_an_absent_key_or_an_empty_value_changes_nothing():
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="s")
    span.attributes.add(key="empty")  # a KeyValue whose AnyValue holds nothing
    fill_attributes(span.attributes, [("a", 1)])
    attributes.process_function(config_of({"actions": [action("key: empty, action: hash"),
                                                       action("key: missing, action: hash")]}))(request)
    assert [kv.key for kv in span.attributes] == ["empty", "a"]
    assert span.attributes[0].value.WhichOneof("value") is None
    assert attrs.get(span.attributes, "a") == 1


# --- extract --------------------------------------------------------------------------------------------------

URL_PATTERN = r'pattern: "^(?P<scheme>[a-z]+)://(?P<host>[^/:]+)(?::(?P<port>[0-9]+))?(?P<path>/[^?]*)"'


@pytest.mark.parametrize("fragment, start, expected", [
    (URL_PATTERN, [("url", "https://openrouter.ai:443/api/v1/chat?x=1")],
     [("url", "https://openrouter.ai:443/api/v1/chat?x=1"), ("scheme", "https"), ("host", "openrouter.ai"),
      ("port", "443"), ("path", "/api/v1/chat")]),
    # A group that takes no part in the match writes "", as the collector's RE2 does.
    (URL_PATTERN, [("url", "http://example.com/")],
     [("url", "http://example.com/"), ("scheme", "http"), ("host", "example.com"), ("port", ""), ("path", "/")]),
    # Target keys are overwritten in place.
    (URL_PATTERN, [("host", "old"), ("url", "http://h/p")],
     [("host", "h"), ("url", "http://h/p"), ("scheme", "http"), ("port", ""), ("path", "/p")]),
    (URL_PATTERN, [("url", "not a url")], [("url", "not a url")]),
    (URL_PATTERN, [("url", 42)], [("url", 42)]),
    (URL_PATTERN, [("other", "http://h/p")], [("other", "http://h/p")]),
    ('pattern: "(?P<id>[0-9]+)"', [("url", "order-123-x")], [("url", "order-123-x"), ("id", "123")]),
    ('pattern: "(?<team>[a-z]+)-(?<env>[a-z]+)"', [("url", "search-prod")],
     [("url", "search-prod"), ("team", "search"), ("env", "prod")]),  # Go's group syntax
], ids=["all-groups", "optional-group-unmatched", "overwrites", "no-match", "not-a-string", "key-absent",
        "searched-not-anchored", "go-named-groups"])
def test_extract(fragment, start, expected):
    assert run_on_span([action(f"key: url, {fragment}, action: extract")], start) == typed_pairs(expected)


# --- convert --------------------------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("converted_type, value, expected", [
    ("int", "12", 12), ("int", "-7", -7), ("int", "+7", 7), ("int", "9223372036854775807", 2**63 - 1),
    ("int", "9223372036854775808", "9223372036854775808"), ("int", "1.5", "1.5"), ("int", "abc", "abc"),
    ("int", "true", "true"), ("int", " 1", " 1"), ("int", "1_000", "1_000"), ("int", "", ""),
    ("int", 12, 12), ("int", 1.9, 1), ("int", -1.9, -1), ("int", 1e19, 1e19), ("int", NAN, NAN),
    ("int", INF, INF), ("int", True, 1), ("int", False, 0), ("int", b"\x01", b"\x01"), ("int", [1], [1]),
    ("double", "1.5", 1.5), ("double", "12", 12.0), ("double", "-1e3", -1000.0), ("double", ".5", 0.5),
    ("double", "inf", INF), ("double", "-Infinity", -INF), ("double", "NaN", NAN), ("double", "abc", "abc"),
    ("double", "1e400", "1e400"), ("double", "0x1p-2", "0x1p-2"), ("double", "true", "true"),
    ("double", 12, 12.0), ("double", -3, -3.0), ("double", 1.5, 1.5), ("double", True, 1.0),
    ("double", False, 0.0), ("double", b"\x01", b"\x01"), ("double", {"k": 1}, {"k": 1}),
    ("string", "x", "x"), ("string", 12, "12"), ("string", -3, "-3"), ("string", 1.0, "1"),
    ("string", 1.5, "1.5"), ("string", 0.1, "0.1"), ("string", 1e20, "100000000000000000000"),
    ("string", 1e21, "1e+21"), ("string", 1e-7, "1e-7"), ("string", 1.5e-7, "1.5e-7"),
    ("string", 0.000001, "0.000001"), ("string", NAN, "NaN"), ("string", INF, "+Inf"), ("string", -INF, "-Inf"),
    ("string", True, "true"), ("string", False, "false"), ("string", b"\x00\xff", "AP8="),
    ("string", ["a", 1, True], '["a",1,true]'), ("string", {"b": 1, "a": "x"}, '{"a":"x","b":1}'),
])
def test_convert(converted_type, value, expected):
    got = run_on_span([action(f"key: v, converted_type: {converted_type}, action: convert")], [("v", value)])
    assert got == typed_pairs([("v", expected)])


@pytest.mark.parametrize("converted_type", ["int", "double", "string"])
def test_convert_of_an_absent_key_changes_nothing(converted_type):
    got = run_on_span([action(f"key: v, converted_type: {converted_type}, action: convert")], [("a", "1")])
    assert got == typed_pairs([("a", "1")])


def test_convert_of_an_empty_value_to_string_writes_empty_text():
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="s")
    span.attributes.add(key="v")
    attributes.process_function(config_of({"actions": [action("key: v, converted_type: string, action: convert")]}))(
        request)
    assert span.attributes[0].value == AnyValue(string_value="")


# --- several actions ------------------------------------------------------------------------------------------

def test_actions_run_in_config_order_with_case_insensitive_names():
    got = run_on_span([
        action("key: id, value: user-1, action: INSERT"),
        action("key: copy, from_attribute: id, action: Upsert"),
        action("key: id, action: hash"),
        action("key: n, converted_type: int, action: CONVERT"),
        action("key: tmp, action: Delete"),
    ], [("n", "3"), ("tmp", True)])
    assert got == typed_pairs([("n", 3), ("id", sha256(b"user-1")), ("copy", "user-1")])


def test_every_data_point_type_and_log_records_get_the_actions():
    process = attributes.process_function(config_of({"actions": [action("key: k, value: v, action: insert")]}))
    metrics = ExportMetricsServiceRequest()
    scope = metrics.resource_metrics.add().scope_metrics.add()
    for kind in ("gauge", "sum", "histogram", "exponential_histogram", "summary"):
        metric = scope.metrics.add(name=kind)
        for _ in range(2):
            getattr(metric, kind).data_points.add()
    scope.metrics.add(name="no-data")
    process(metrics)
    points = [getattr(m, m.WhichOneof("data")).data_points for m in scope.metrics[:5]]
    assert [attribute_pairs(p.attributes) for ps in points for p in ps] == [typed_pairs([("k", "v")])] * 10
    assert metrics.resource_metrics[0].resource.attributes == []  # resources are the resource processor's

    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    records.add()
    records.add()
    process(logs)
    assert [attribute_pairs(r.attributes) for r in records] == [typed_pairs([("k", "v")])] * 2


def test_nothing_is_compiled_per_request(monkeypatch):
    process = attributes.process_function(config_of({
        "actions": [action('pattern: "^tmp", action: delete'), action('pattern: "^user", action: hash'),
                    action('key: url, pattern: "(?P<host>[a-z]+)", action: extract'),
                    action("key: n, converted_type: string, action: convert")],
        "include": {"match_type": "regexp", "span_names": ["^s"], "attributes": [{"key": "url", "value": "."}]},
        "exclude": {"match_type": "regexp", "services": ["^internal"]},
    }))

    def no_compiling(*args, **kwargs):
        raise AssertionError("a regular expression was compiled while processing")

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="s")
    fill_attributes(span.attributes, [("tmp.a", 1), ("user.id", "u"), ("url", "abc"), ("n", 1e22)])
    monkeypatch.setattr(re, "compile", no_compiling)
    monkeypatch.setattr(re, "_compile", no_compiling)
    process(request)
    monkeypatch.undo()
    assert attribute_pairs(span.attributes) == typed_pairs(
        [("user.id", sha256(b"u")), ("url", "abc"), ("n", "1e+22"), ("host", "abc")])


# --- config validation ----------------------------------------------------------------------------------------

VALID_KEYS = ("action, converted_type, default_value, from_attribute, from_context, key, pattern, value")


@pytest.mark.parametrize("actions, problems", [
    (["key: k, action: insert"],
     ['actions::0: the "insert" action needs one of "value", "from_attribute" or "from_context"']),
    (["action: insert"],
     ['actions::0::key: required for the "insert" action',
      'actions::0: the "insert" action needs one of "value", "from_attribute" or "from_context"']),
    (['key: "", value: 1, action: update'], ['actions::0::key: required for the "update" action']),
    (["value: 1, action: upsert"], ['actions::0::key: required for the "upsert" action']),
    (["key: k, value: 1, from_attribute: a, from_context: metadata.x, action: insert"],
     ['actions::0::from_attribute: cannot be combined with "value": give exactly one of "value", '
      '"from_attribute" or "from_context"',
      'actions::0::from_context: cannot be combined with "value": give exactly one of "value", '
      '"from_attribute" or "from_context"']),
    (["key: k, from_attribute: a, from_context: metadata.x, action: upsert"],
     ['actions::0::from_context: cannot be combined with "from_attribute": give exactly one of "value", '
      '"from_attribute" or "from_context"']),
    (["key: k, value: 1, pattern: x, converted_type: int, action: update"],
     ['actions::0::pattern: not used by the "update" action',
      'actions::0::converted_type: not used by the "update" action']),
    (["key: k, value: 1, default_value: 2, action: upsert"],
     ['actions::0::default_value: only used with "from_attribute" or "from_context", when that source is '
      'missing']),
    (["key: k, default_value: 2, action: upsert"],
     ['actions::0: the "upsert" action needs one of "value", "from_attribute" or "from_context"']),
    (["key: k, from_context: auth.subject, action: upsert"],
     ['actions::0::from_context: "auth.*" is not supported: bearertokenauth, the one authenticator, '
      'attaches no auth data']),
    (['key: k, from_context: "metadata.", action: insert'],
     ['actions::0::from_context: names no metadata key (e.g. "metadata.x-tenant")']),
    (["key: k, value: 2024-05-01, action: upsert"],
     ["actions::0::value: a YAML timestamp is not an attribute value: quote it to keep it as a string"]),
    (["key: k, value: 9223372036854775808, action: upsert"],
     ["actions::0::value: 9223372036854775808 does not fit in a 64-bit integer"]),
    (["key: k, value: [1, null], action: upsert"], ["actions::0::value: null is not an attribute value"]),
    (["key: k, value: {1: a}, action: upsert"], ["actions::0::value: map keys must be strings"]),
    (["key: k, from_attribute: a, default_value: [null], action: upsert"],
     ["actions::0::default_value: null is not an attribute value"]),
    (["key: k, action: frobnicate"],
     ['actions::0::action: unknown action "frobnicate" (valid: insert, update, upsert, delete, hash, '
      'extract, convert)']),
    (["key: k, value: 1"], ["actions::0::action: required key is missing"]),
    (["key: k, value: 1, action: insert, form_attribute: a"],
     [f"actions::0::form_attribute: unknown key (valid keys: {VALID_KEYS})"]),
    (["action: delete"], ['actions::0: the "delete" action needs "key", "pattern" or both']),
    (["action: HASH"], ['actions::0: the "hash" action needs "key", "pattern" or both']),
    (["key: k, value: 1, from_context: metadata.x, converted_type: int, action: delete"],
     ['actions::0::value: not used by the "delete" action',
      'actions::0::from_context: not used by the "delete" action',
      'actions::0::converted_type: not used by the "delete" action']),
    (['key: k, pattern: "(", action: hash'],
     ["actions::0::pattern: invalid regular expression: missing ), unterminated subpattern at position 0"]),
    (["key: k, action: extract"], ['actions::0::pattern: required for the "extract" action']),
    (['key: k, pattern: "([0-9]+)", action: extract'],
     ["actions::0::pattern: needs at least one named group, e.g. (?P<name>...)"]),
    (['key: k, pattern: "(?P<a>[0-9]+)-([0-9]+)", action: extract'],
     ["actions::0::pattern: every group must be named, e.g. (?P<name>...); use (?:...) to group without "
      "capturing"]),
    (['key: k, pattern: "(?P<a>x)", from_attribute: y, action: extract'],
     ['actions::0::from_attribute: not used by the "extract" action']),
    (["key: k, action: convert"],
     ['actions::0::converted_type: required for the "convert" action (int, double or string)']),
    (["key: k, converted_type: float, action: convert"],
     ['actions::0::converted_type: "float" is not one of: int, double, string']),
    (["key: k, converted_type: int, value: 1, pattern: x, action: convert"],
     ['actions::0::value: not used by the "convert" action',
      'actions::0::pattern: not used by the "convert" action']),
    # Every bad action is reported, each at its own index.
    (["key: a, value: 1, action: upsert", "action: delete", "key: b, value: 1, action: upsert",
      "key: c, converted_type: bool, action: convert"],
     ['actions::1: the "delete" action needs "key", "pattern" or both',
      'actions::3::converted_type: "bool" is not one of: int, double, string']),
])
def test_invalid_actions(actions, problems):
    _, got = decode(attributes.Config, {"actions": [action(a) for a in actions]})
    assert [str(p) for p in got] == problems


@pytest.mark.parametrize("text", [
    "key: k, value: false, action: insert",
    'key: k, value: "", action: update',
    "key: k, value: [], action: upsert",
    "key: k, from_attribute: a, default_value: 0, action: upsert",
    "key: k, from_context: client.address, action: insert",
    "key: k, from_context: x-tenant, action: insert",
    'pattern: "^tmp\\\\.", action: delete',
    'key: k, pattern: "^user", action: hash',
    'key: k, pattern: "(?<a>x)(?:y)", action: extract',
    "key: k, converted_type: double, action: convert",
])
def test_valid_actions(text):
    assert decode(attributes.Config, {"actions": [action(text)]})[1] == []


@pytest.mark.parametrize("raw, problems", [
    ({}, ["actions: at least one action is required"]),
    ({"actions": []}, ["actions: at least one action is required"]),
    ({"actions": [{"key": "k", "action": "delete"}], "include": None},
     ["include::match_type: required key is missing"]),
    ({"actions": [{"key": "k", "action": "delete"}], "include": {"match_type": "strict"}},
     ['include: give at least one of "services", "span_names", "span_kinds", "metric_names", "libraries", '
      '"attributes", "resources"']),
    ({"actions": [{"key": "k", "action": "delete"}], "exclude": {"match_type": "glob", "services": ["a"]}},
     ['exclude::match_type: "glob" is not one of: strict, regexp']),
    ({"actions": [{"key": "k", "action": "delete"}],
      "include": {"match_type": "regexp", "services": ["ok", "(x"], "span_names": ["[a"],
                  "libraries": [{"name": "a", "version": "*"}],
                  "attributes": [{"key": "a", "value": 1}, {"key": "b", "value": "+"}],
                  "resources": [{"key": "r", "value": True}]}},
     ["include::services::1: invalid regular expression: missing ), unterminated subpattern at position 0",
      "include::span_names::0: invalid regular expression: unterminated character set at position 0",
      "include::libraries::0::version: invalid regular expression: nothing to repeat at position 0",
      "include::attributes::1::value: invalid regular expression: nothing to repeat at position 0",
      'include::attributes::0::value: must be a string when match_type is "regexp"',
      'include::resources::0::value: must be a string when match_type is "regexp"']),
    ({"actions": [{"key": "k", "action": "delete"}],
      "exclude": {"match_type": "strict", "span_kinds": ["SPAN_KIND_CLIENT", "client"]}},
     ['exclude::span_kinds::1: "client" is not a span kind (valid: SPAN_KIND_UNSPECIFIED, SPAN_KIND_INTERNAL, '
      'SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER)']),
    ({"actions": [{"key": "k", "action": "delete"}],
      "include": {"match_type": "strict", "attributes": [{"key": ""}, {"value": 1}]}},
     ["include::attributes::0::key: must not be empty", "include::attributes::1::key: required key is missing"]),
    ({"actions": [{"key": "k", "action": "delete"}],
      "include": {"match_type": "strict", "log_bodies": ["x"]}},
     ["include::log_bodies: unknown key (valid keys: attributes, libraries, match_type, metric_names, "
      "resources, services, span_kinds, span_names)"]),
])
def test_invalid_processor_settings(raw, problems):
    _, got = decode(attributes.Config, raw)
    assert [str(p) for p in got] == problems


def registry():
    return default_registry()


def test_every_problem_of_every_processor_is_reported_at_once():
    text = """
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:4317"}}}}
processors:
  attributes/a:
    actions:
      - {key: a, value: 1, from_context: metadata.x, action: insert}
      - {key: b, value: 2, action: upsert}
      - {key: c, action: explode}
  attributes/b:
    include: {match_type: regexp, span_names: ["("]}
    actions:
      - {key: k, action: extract, pattern: "(x)"}
  resource:
    attributes:
      - {key: service.name, action: upsert}
exporters: {debug: {}}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [attributes/a, attributes/b, resource], exporters: [debug]}
"""
    with pytest.raises(ConfigError) as caught:
        load(text, registry(), env={})
    assert [str(p) for p in caught.value.problems] == [
        'processors::attributes/a::actions::0::from_context: cannot be combined with "value": give exactly '
        'one of "value", "from_attribute" or "from_context"',
        'processors::attributes/a::actions::2::action: unknown action "explode" (valid: insert, update, '
        'upsert, delete, hash, extract, convert)',
        "processors::attributes/b::actions::0::pattern: needs at least one named group, e.g. (?P<name>...)",
        "processors::attributes/b::include::span_names::0: invalid regular expression: missing ), "
        "unterminated subpattern at position 0",
        'processors::resource::attributes::0: the "upsert" action needs one of "value", "from_attribute" or '
        '"from_context"',
    ]


# --- include / exclude ----------------------------------------------------------------------------------------

def spans_request() -> ExportTraceServiceRequest:
    """checkout (env prod, scope lib.http 1.0): "GET /a", "db query";
    billing (env dev, scope lib.db 2.1): "GET /b", "charge"."""
    request = ExportTraceServiceRequest()
    layout = [
        ("checkout", "prod", ("lib.http", "1.0"), [
            ("GET /a", Span.SPAN_KIND_SERVER, [("http.method", "GET"), ("status", 200)]),
            ("db query", Span.SPAN_KIND_CLIENT, [("db.system", "postgres"), ("ratio", 0.5)]),
        ]),
        ("billing", "dev", ("lib.db", "2.1"), [
            ("GET /b", Span.SPAN_KIND_SERVER, [("http.method", "POST"), ("status", 500)]),
            ("charge", Span.SPAN_KIND_INTERNAL, []),
        ]),
    ]
    for service, env, (scope_name, scope_version), spans in layout:
        rs = request.resource_spans.add()
        fill_attributes(rs.resource.attributes, [("service.name", service), ("env", env)])
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = scope_name, scope_version
        for name, kind, span_attributes in spans:
            span = ss.spans.add(name=name, kind=kind)
            fill_attributes(span.attributes, span_attributes)
    return request


def tagged_spans(filters: dict) -> list[str]:
    request = spans_request()
    attributes.process_function(config_of(dict(filters, actions=[{"key": "tagged", "value": True,
                                                                  "action": "insert"}])))(request)
    return [span.name for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans
            if attrs.get(span.attributes, "tagged") is True]


ALL_SPANS = ["GET /a", "db query", "GET /b", "charge"]


@pytest.mark.parametrize("filters, expected", [
    ("{}", ALL_SPANS),
    ("include: {match_type: strict, services: [checkout]}", ["GET /a", "db query"]),
    ("include: {match_type: strict, services: [check]}", []),
    ("include: {match_type: regexp, services: [^bill]}", ["GET /b", "charge"]),
    ("include: {match_type: regexp, services: [kou]}", ["GET /a", "db query"]),
    ("include: {match_type: strict, span_names: [GET /a, charge]}", ["GET /a", "charge"]),
    ("include: {match_type: regexp, span_names: [^GET ]}", ["GET /a", "GET /b"]),
    ("include: {match_type: strict, attributes: [{key: http.method}]}", ["GET /a", "GET /b"]),
    ("include: {match_type: strict, attributes: [{key: http.method, value: GET}]}", ["GET /a"]),
    ("include: {match_type: strict, attributes: [{key: status, value: 200}]}", ["GET /a"]),
    ('include: {match_type: strict, attributes: [{key: status, value: "200"}]}', []),
    ("include: {match_type: strict, attributes: [{key: status, value: 200.0}]}", []),
    ("include: {match_type: strict, attributes: [{key: http.method, value: GET}, {key: status, value: 500}]}",
     []),
    ("include: {match_type: strict, attributes: [{key: http.method, value: POST}, {key: status, value: 500}]}",
     ["GET /b"]),
    ("include: {match_type: regexp, attributes: [{key: status, value: ^5}]}", ["GET /b"]),
    ("include: {match_type: regexp, attributes: [{key: ratio, value: ^0\\.5$}]}", ["db query"]),
    ("include: {match_type: regexp, attributes: [{key: http.method, value: ^P}]}", ["GET /b"]),
    ("include: {match_type: strict, resources: [{key: env, value: prod}]}", ["GET /a", "db query"]),
    ("include: {match_type: strict, resources: [{key: env}]}", ALL_SPANS),
    ("include: {match_type: regexp, resources: [{key: env, value: ^d}]}", ["GET /b", "charge"]),
    ("include: {match_type: strict, span_kinds: [SPAN_KIND_CLIENT, SPAN_KIND_INTERNAL]}", ["db query", "charge"]),
    ("include: {match_type: regexp, span_kinds: [SERVER]}", ["GET /a", "GET /b"]),
    ("include: {match_type: strict, libraries: [{name: lib.db}]}", ["GET /b", "charge"]),
    ("include: {match_type: strict, libraries: [{name: lib.db, version: '2.0'}]}", []),
    ("include: {match_type: regexp, libraries: [{name: ^lib\\., version: ^1\\.}]}", ["GET /a", "db query"]),
    ("include: {match_type: strict, services: [checkout, billing], span_names: [db query, charge]}",
     ["db query", "charge"]),
    ("include: {match_type: strict, services: [checkout], span_names: [charge]}", []),
    ("include: {match_type: strict, metric_names: [GET /a]}", []),
    ("exclude: {match_type: strict, services: [checkout]}", ["GET /b", "charge"]),
    ("exclude: {match_type: regexp, span_names: [^GET]}", ["db query", "charge"]),
    ("exclude: {match_type: strict, attributes: [{key: http.method}]}", ["db query", "charge"]),
    ("exclude: {match_type: strict, resources: [{key: env, value: dev}]}", ["GET /a", "db query"]),
    ("exclude: {match_type: strict, services: [checkout], span_names: [GET /a, GET /b]}",
     ["db query", "GET /b", "charge"]),
    ("exclude: {match_type: strict, metric_names: [GET /a]}", ALL_SPANS),
    ("{include: {match_type: strict, services: [checkout, billing]},"
     " exclude: {match_type: strict, span_names: [GET /b]}}", ["GET /a", "db query", "charge"]),
    ("{include: {match_type: regexp, span_names: [^GET]},"
     " exclude: {match_type: strict, resources: [{key: env, value: dev}]}}", ["GET /a"]),
    ("{include: {match_type: regexp, span_names: [^GET]},"
     " exclude: {match_type: strict, attributes: [{key: http.method, value: POST}]}}", ["GET /a"]),
    ("{include: {match_type: regexp, services: [.]}, exclude: {match_type: regexp, services: [.]}}", []),
])
def test_span_filters(filters, expected):
    assert tagged_spans(yaml.safe_load(filters)) == expected


def test_a_resource_without_service_name_matches_as_the_empty_name():
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(name="s")
    config = config_of({"include": {"match_type": "regexp", "services": ["^$"]},
                        "actions": [{"key": "tagged", "value": True, "action": "insert"}]})
    attributes.process_function(config)(request)
    assert attrs.get(request.resource_spans[0].scope_spans[0].spans[0].attributes, "tagged") is True


def metrics_request() -> ExportMetricsServiceRequest:
    """checkout: http.requests (sum, 2 points), http.duration (histogram), queue.depth (gauge);
    billing: charges (summary), http.requests (exponential histogram)."""
    request = ExportMetricsServiceRequest()
    layout = [("checkout", [("http.requests", "sum", 2), ("http.duration", "histogram", 1),
                            ("queue.depth", "gauge", 1)]),
              ("billing", [("charges", "summary", 1), ("http.requests", "exponential_histogram", 1)])]
    for service, metrics in layout:
        rm = request.resource_metrics.add()
        fill_attributes(rm.resource.attributes, [("service.name", service)])
        sm = rm.scope_metrics.add()
        for name, kind, points in metrics:
            metric = sm.metrics.add(name=name)
            for index in range(points):
                fill_attributes(getattr(metric, kind).data_points.add().attributes, [("i", index)])
    return request


def tagged_points(filters: dict) -> list[tuple[str, str, int]]:
    request = metrics_request()
    attributes.process_function(config_of(dict(filters, actions=[{"key": "tagged", "value": True,
                                                                  "action": "insert"}])))(request)
    out = []
    for rm in request.resource_metrics:
        for metric in rm.scope_metrics[0].metrics:
            for point in getattr(metric, metric.WhichOneof("data")).data_points:
                if attrs.get(point.attributes, "tagged") is True:
                    out.append((attrs.get(rm.resource.attributes, "service.name"), metric.name,
                                attrs.get(point.attributes, "i")))
    return out


@pytest.mark.parametrize("filters, expected", [
    ("{}", [("checkout", "http.requests", 0), ("checkout", "http.requests", 1), ("checkout", "http.duration", 0),
            ("checkout", "queue.depth", 0), ("billing", "charges", 0), ("billing", "http.requests", 0)]),
    ("include: {match_type: strict, metric_names: [http.requests]}",
     [("checkout", "http.requests", 0), ("checkout", "http.requests", 1), ("billing", "http.requests", 0)]),
    ("include: {match_type: regexp, metric_names: [^http\\.]}",
     [("checkout", "http.requests", 0), ("checkout", "http.requests", 1), ("checkout", "http.duration", 0),
      ("billing", "http.requests", 0)]),
    ("include: {match_type: strict, resources: [{key: service.name, value: billing}]}",
     [("billing", "charges", 0), ("billing", "http.requests", 0)]),
    ("include: {match_type: strict, services: [billing], metric_names: [http.requests]}",
     [("billing", "http.requests", 0)]),
    ("exclude: {match_type: regexp, metric_names: [^http]}", [("checkout", "queue.depth", 0),
                                                              ("billing", "charges", 0)]),
    ("{include: {match_type: regexp, metric_names: [^http]},"
     " exclude: {match_type: strict, metric_names: [http.duration]}}",
     [("checkout", "http.requests", 0), ("checkout", "http.requests", 1), ("billing", "http.requests", 0)]),
    ("include: {match_type: strict, span_names: [http.requests]}", []),
    ("include: {match_type: strict, attributes: [{key: i}]}", []),
    ("exclude: {match_type: strict, attributes: [{key: i}]}",
     [("checkout", "http.requests", 0), ("checkout", "http.requests", 1), ("checkout", "http.duration", 0),
      ("checkout", "queue.depth", 0), ("billing", "charges", 0), ("billing", "http.requests", 0)]),
])
def test_metric_filters(filters, expected):
    assert tagged_points(yaml.safe_load(filters)) == expected


def logs_request() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for service, records in [("checkout", [("a1", "info"), ("a2", "error")]), ("billing", [("b1", "error")])]:
        rl = request.resource_logs.add()
        fill_attributes(rl.resource.attributes, [("service.name", service)])
        sl = rl.scope_logs.add()
        sl.scope.name = "app"
        for name, level in records:
            fill_attributes(sl.log_records.add().attributes, [("name", name), ("level", level)])
    return request


@pytest.mark.parametrize("filters, expected", [
    ("{}", ["a1", "a2", "b1"]),
    ("include: {match_type: strict, attributes: [{key: level, value: error}]}", ["a2", "b1"]),
    ("include: {match_type: strict, resources: [{key: service.name, value: checkout}]}", ["a1", "a2"]),
    ("include: {match_type: strict, libraries: [{name: app}]}", ["a1", "a2", "b1"]),
    ("{include: {match_type: regexp, attributes: [{key: level, value: ^err}]},"
     " exclude: {match_type: strict, services: [billing]}}", ["a2"]),
    ("exclude: {match_type: strict, attributes: [{key: level, value: info}]}", ["a2", "b1"]),
    ("{include: {match_type: strict, attributes: [{key: level, value: error}]},"
     " exclude: {match_type: strict, attributes: [{key: name, value: b1}]}}", ["a2"]),
    ("include: {match_type: strict, span_names: [a1]}", []),
    ("include: {match_type: strict, metric_names: [a1]}", []),
])
def test_log_filters(filters, expected):
    request = logs_request()
    attributes.process_function(config_of(dict(yaml.safe_load(filters), actions=[
        {"key": "tagged", "value": True, "action": "insert"}])))(request)
    assert [attrs.get(r.attributes, "name") for rl in request.resource_logs for r in rl.scope_logs[0].log_records
            if attrs.get(r.attributes, "tagged") is True] == expected


# --- the reference config (production-monitoring-guide.md, "Core Configuration") ------------------------------

# Its resource and attributes/genops processors, verbatim; the pipelines keep their order and drop
# what this module does not provide (batch, transform, other receivers and exporters).
REFERENCE = reference_subset({"resource", "attributes/genops"})

SDK = [("telemetry.sdk.language", "python"), ("telemetry.sdk.name", "opentelemetry"),
       ("telemetry.sdk.version", "1.45.2")]


def run_reference(pipeline_id: str, request):
    config = load(REFERENCE, registry(), env={})
    sink = Recorder()
    head = sink
    pipeline = next(p for p in config.pipelines if p.id == pipeline_id)
    for id_ in reversed(pipeline.processors):
        head = config.factories["processors"][id_].create(Settings(id_, None), config.components["processors"][id_], head)
    asyncio.run(head.consume(request))
    assert sink.requests == [request]
    return request


def test_reference_config_loads_both_processors():
    config = load(REFERENCE, registry(), env={})
    genops = config.components["processors"][ComponentID("attributes", "genops")]
    assert [(a.key, a.value, a.action) for a in genops.actions] == [
        ("genops.cost.currency", "USD", "upsert"), ("genops.provider", "openrouter", "upsert")]
    assert [p.processors for p in config.pipelines] == [
        [ComponentID("resource"), ComponentID("attributes", "genops")],
        [ComponentID("resource"), ComponentID("attributes", "genops")],
        [ComponentID("resource")]]


def test_reference_config_on_spans():
    request = fixtures.load("traces_llm")
    # The second resource carries the attribute names the reference config reads from.
    fill_attributes(request.resource_spans[1].resource.attributes,
                    [("service_version", "1.4.0"), ("deployment_environment", "staging")])
    gpt4o = request.resource_spans[1].scope_spans[0].spans[0]
    assert gpt4o.name == "chat openai/gpt-4o"
    attrs.put(gpt4o.attributes, "genops.provider", "anthropic")  # so the overwrite shows
    before = {(i, span.name): attribute_pairs(span.attributes)
              for i, rs in enumerate(request.resource_spans) for ss in rs.scope_spans for span in ss.spans}
    provider_at = [kv.key for kv in gpt4o.attributes].index("genops.provider")

    run_reference("traces", request)

    assert [attribute_pairs(rs.resource.attributes) for rs in request.resource_spans] == [
        typed_pairs([("service.name", "genops-openrouter"), ("service.version", "2.3.1"),
                     ("deployment.environment.name", "production")] + SDK),
        typed_pairs([("service.name", "genops-openrouter"), ("service.version", "1.4.0"),
                     ("deployment.environment.name", "production")] + SDK
                    + [("service_version", "1.4.0"), ("deployment_environment", "staging"),
                       ("environment", "staging")]),
    ]
    currency, provider = ("genops.cost.currency", typed("USD")), ("genops.provider", typed("openrouter"))
    appended = {  # what each span gains at its end; keys it already had are overwritten in place
        (0, "POST /v1/chat"): [currency, provider],
        (0, "chat openai/gpt-4o"): [currency, provider],
        (0, "chat meta-llama/llama-3.1-70b-instruct"): [currency, provider],
        (0, "chat anthropic/claude-3.5-sonnet"): [currency, provider],
        (1, "chat openai/gpt-4o"): [],
        (1, "chat anthropic/claude-3.5-sonnet"): [],
        (1, "chat meta-llama/llama-3.1-70b-instruct"): [currency],
        (1, "chat openai/o1-mini"): [],
        (1, "chat openai/gpt-4o-mini"): [],
    }
    after = {(i, span.name): attribute_pairs(span.attributes)
             for i, rs in enumerate(request.resource_spans) for ss in rs.scope_spans for span in ss.spans}
    assert set(after) == set(appended)
    before[(1, "chat openai/gpt-4o")][provider_at] = provider
    for span_id, gained in appended.items():
        assert after[span_id] == before[span_id] + gained, span_id


def test_reference_config_on_metrics():
    request = fixtures.load("metrics")
    run_reference("metrics", request)
    assert attribute_pairs(request.resource_metrics[0].resource.attributes) == typed_pairs(
        [("service.name", "genops-openrouter"), ("service.version", "0.9.0"),
         ("deployment.environment.name", "production")] + SDK)
    points = {metric.name: [attribute_pairs(point.attributes)
                            for point in getattr(metric, metric.WhichOneof("data")).data_points]
              for metric in request.resource_metrics[0].scope_metrics[0].metrics}
    usd, openrouter = ("genops.cost.currency", "USD"), ("genops.provider", "openrouter")
    assert points == {
        "genops.llm.requests": [
            typed_pairs([("genops.team", "support"), ("gen_ai.request.model", "openai/gpt-4o"), openrouter, usd]),
            typed_pairs([("genops.team", "support"), ("gen_ai.request.model", "anthropic/claude-3.5-sonnet"),
                         openrouter, usd]),
            typed_pairs([("genops.team", "search"), ("gen_ai.request.model", "meta-llama/llama-3.1-70b-instruct"),
                         openrouter, usd]),
        ],
        "genops.budget.remaining": [typed_pairs([("genops.team", "support"), usd, openrouter]),
                                    typed_pairs([("genops.team", "search"), usd, openrouter])],
        "gen_ai.client.token.usage": [
            typed_pairs([("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "openai/gpt-4o"),
                         ("gen_ai.token.type", "input"), usd, openrouter]),
            typed_pairs([("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "openai/gpt-4o"),
                         ("gen_ai.token.type", "output"), usd, openrouter]),
        ],
    }


def test_reference_config_on_logs():
    request = fixtures.load("logs")
    records_before = [attribute_pairs(r.attributes) for rl in request.resource_logs for sl in rl.scope_logs
                      for r in sl.log_records]
    run_reference("logs", request)
    assert [attribute_pairs(rl.resource.attributes) for rl in request.resource_logs] == [
        typed_pairs([("service.name", "genops-openrouter"), ("service.version", "2.3.1"),
                     ("deployment.environment.name", "production")] + SDK),
        typed_pairs([("service.name", "genops-openrouter"), ("service.version", "0.9.0"),
                     ("deployment.environment.name", "production")] + SDK),
    ]
    # The logs pipeline has no attributes/genops: records keep exactly what they had.
    assert [attribute_pairs(r.attributes) for rl in request.resource_logs for sl in rl.scope_logs
            for r in sl.log_records] == records_before
