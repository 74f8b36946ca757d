"""The transform processor: the OTTL subset, its config problems, contexts and error modes.

Processors are driven in-process through ``create`` with a recording consumer;
configs go through ``decode`` (or ``load`` for a whole file), as the relay does.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json

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
from prometheus_client import CollectorRegistry

from relay import attrs
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import ConfigError, PermanentError
from relay.ottl import parse as ottl
from relay.ottl.compile import Scope, predicate
from relay.ottl.contexts import Item
from relay.pipeline.registry import default_registry
from relay.processors import transform
from relay.signals import Signal
from relay.telemetry import SelfMetrics, setup_logging
from tests.support import Recorder, reference_subset

# The transform processor of the production monitoring guide's "Core Configuration",
# verbatim, in a pipeline of components the relay has.
# The reference config's transform processor, on its metrics pipeline.
REFERENCE_CONFIG = reference_subset({"transform"}, ("metrics",))


def registry():
    return default_registry()


def make(settings: dict, telemetry=None):
    config, problems = decode(transform.Config, settings)
    assert problems == []
    sink = Recorder()
    return transform.create(Settings(ComponentID("transform"), telemetry or SelfMetrics()), config, sink), sink


def run(settings: dict, request, telemetry=None):
    processor, sink = make(settings, telemetry)
    asyncio.run(processor.consume(request))
    assert sink.requests == [request]
    return request


def problems(settings: dict) -> list[str]:
    _, found = decode(transform.Config, settings, ("processors", "transform"))
    return [str(p) for p in found]


def put(kvs, values: dict):
    for key, value in values.items():
        attrs.put(kvs, key, value)


def as_dict(kvs) -> dict:
    return {kv.key: attrs.to_python(kv.value) for kv in kvs}


def cost_metrics() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    put(rm.resource.attributes, {"service.name": "openrouter"})
    sm = rm.scope_metrics.add()
    cost = sm.metrics.add(name="genops.cost.total", description="cost", unit="1")
    cost.sum.data_points.add(as_double=0.25).attributes.add(key="model", value={"string_value": "gpt-4o"})
    cost.sum.data_points.add(as_double=0.5)
    tokens = sm.metrics.add(name="genops.tokens.total", description="tokens", unit="{token}")
    tokens.sum.data_points.add(as_int=1200)
    return request


def llm_spans() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    put(rs.resource.attributes, {"service.name": "checkout", "team": "payments", "tenant.id": 42})
    spans = rs.scope_spans.add()
    spans.scope.name = "genops"
    chat = spans.spans.add(name="chat gpt-4o", kind=3)
    put(chat.attributes, {"gen_ai.system": "openai", "secret": "s3cr3t", "gen_ai.usage.input_tokens": 120})
    embed = spans.spans.add(name="embeddings", kind=1)
    put(embed.attributes, {"gen_ai.system": "cohere"})
    return request


def app_logs() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    put(rl.resource.attributes, {"service.name": "checkout"})
    records = rl.scope_logs.add().log_records
    warn = records.add(severity_text="WARN", severity_number=13)
    warn.body.string_value = "card 4111 declined"
    put(warn.attributes, {"secret": True, "user": "ann"})
    info = records.add(severity_text="INFO", severity_number=9)
    info.body.string_value = "ok"
    put(info.attributes, {"user": "bob"})
    return request


# --- the reference config ----------------------------------------------------------------------

def test_reference_config_changes_only_the_matching_metric():
    config = load(REFERENCE_CONFIG, registry(), env={})
    id_ = ComponentID("transform")
    sink = Recorder()
    processor = config.factories["processors"][id_].create(Settings(id_, SelfMetrics()), config.components["processors"][id_], sink)
    request = cost_metrics()
    tokens_before = request.resource_metrics[0].scope_metrics[0].metrics[1].SerializeToString()

    asyncio.run(processor.consume(request))

    cost, tokens = sink.requests[0].resource_metrics[0].scope_metrics[0].metrics
    assert (cost.name, cost.description, cost.unit) == ("genops.cost.total", "OpenRouter request cost in USD", "USD")
    assert [p.as_double for p in cost.sum.data_points] == [0.25, 0.5]
    assert tokens.SerializeToString() == tokens_before


@pytest.mark.parametrize("metric_statements", [
    pytest.param([{"context": "metric", "statements": [
        'set(description, "USD cost") where name == "genops.cost.total"',
        'set(unit, "USD") where name == "genops.cost.total"']}], id="context-relative (pre-0.120)"),
    pytest.param([{"context": "metric", "statements": [
        'set(metric.description, "USD cost") where metric.name == "genops.cost.total"',
        'set(metric.unit, "USD") where metric.name == "genops.cost.total"']}], id="prefixed, explicit context"),
    pytest.param([{"statements": [
        'set(metric.description, "USD cost") where metric.name == "genops.cost.total"',
        'set(metric.unit, "USD") where metric.name == "genops.cost.total"']}], id="prefixed, inferred group"),
    pytest.param(['set(metric.description, "USD cost") where metric.name == "genops.cost.total"',
                  'set(metric.unit, "USD") where metric.name == "genops.cost.total"'], id="flat list (0.120+)"),
])
def test_every_path_form_gives_the_same_result(metric_statements):
    request = run({"metric_statements": metric_statements}, cost_metrics())
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    assert [(m.name, m.description, m.unit) for m in metrics] == [
        ("genops.cost.total", "USD cost", "USD"), ("genops.tokens.total", "tokens", "{token}")]


def test_statements_are_compiled_once_not_per_request(monkeypatch):
    processor, sink = make({"metric_statements": ['set(metric.unit, "USD") where metric.name == "genops.cost.total"']})

    def no_parsing(text):
        raise AssertionError(f"parsed again: {text}")

    monkeypatch.setattr(ottl, "tokenize", no_parsing)
    for _ in range(3):
        asyncio.run(processor.consume(cost_metrics()))
    assert [r.resource_metrics[0].scope_metrics[0].metrics[0].unit for r in sink.requests] == ["USD"] * 3


def test_a_signal_without_statements_passes_through_unchanged():
    request = llm_spans()
    before = request.SerializeToString()
    run({"metric_statements": ['set(metric.unit, "USD")']}, request)
    assert request.SerializeToString() == before


def test_component_contract():
    assert transform.TYPE == "transform"
    assert set(transform.SIGNALS) == {Signal.TRACES, Signal.METRICS, Signal.LOGS}
    processor, _ = make({})
    assert processor.mutates_data is True
    assert transform.Config().validate() == []


# --- parsing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("section, statement", [
    ("metric_statements", 'set(description, "OpenRouter request cost in USD") where name == "genops.cost.total"'),
    ("metric_statements", 'set(metric.unit, "USD") where metric.name == "genops.cost.total"'),
    ("metric_statements", 'set(unit, "s") where type == METRIC_DATA_TYPE_SUM and is_monotonic == true'),
    ("metric_statements", 'set(name, "x") where resource.attributes["service.name"] != nil'),
    ("trace_statements", 'set(attributes["a.b"], "tab\\t \\"quoted\\" \\\\ \\u00e9")'),
    ("trace_statements", 'set(attributes["n"], -12)'),
    ("trace_statements", 'set(attributes["f"], 1.5e3)'),
    ("trace_statements", 'set(attributes["b"], false)'),
    ("trace_statements", "set(attributes[\"list\"], [1, \"two\", 3.0, true, nil])"),
    ("trace_statements", 'set(attributes["copy"], resource.attributes["team"])'),
    ("trace_statements", 'set(status.code, STATUS_CODE_ERROR) where kind == SPAN_KIND_CLIENT'),
    ("trace_statements", 'delete_key(attributes, "secret")'),
    ("trace_statements", 'keep_keys(attributes, ["a", "b"])'),
    ("trace_statements", 'keep_keys(attributes, [])'),
    ("trace_statements", 'delete_matching_keys(attributes, "^secret\\\\.")'),
    ("trace_statements", 'set(name, "x") where not (name == "a" or name == "b") and attributes["n"] >= 2'),
    ("trace_statements", 'set(name, "x") where true'),
    ("trace_statements", 'set(name,"x")where(name=="y")'),
    ("trace_statements", 'set(instrumentation_scope.name, "x") where instrumentation_scope.version == ""'),
    ("trace_statements", 'set(attributes["nested"], attributes["map"]["inner"][0])'),
    ("log_statements", 'set(body, "redacted") where attributes["secret"] == true'),
    ("log_statements", 'set(severity_number, SEVERITY_NUMBER_ERROR4) where severity_text == "FATAL"'),
])
def test_valid_statements_parse_and_compile(section, statement):
    context = {"metric_statements": "metric", "trace_statements": "span", "log_statements": "log"}[section]
    assert problems({section: [{"context": context, "statements": [statement]}]}) == []


def test_the_parse_tree_respects_precedence_and_escapes():
    tree = ottl.parse_statement('set(attributes["k"], "a\\"b") where not x == 1 and y != 2 or (z < 3)')
    assert tree.call == ottl.Call("set", (ottl.Path(("attributes",), ("k",)), ottl.Const('a"b')))
    assert tree.where == ottl.Or((
        ottl.And((ottl.Not(ottl.Compare("==", ottl.Path(("x",)), ottl.Const(1))),
                  ottl.Compare("!=", ottl.Path(("y",)), ottl.Const(2)))),
        ottl.Compare("<", ottl.Path(("z",)), ottl.Const(3))))


P = "processors::transform::metric_statements::0::statements::0"


@pytest.mark.parametrize("statement, why", [
    ('frobnicate(name)', ('unknown editor "frobnicate" (supported: append, delete_key, delete_matching_keys, '
                         'flatten, keep_keys, keep_matching_keys, limit, merge_maps, replace_all_patterns, '
                         'replace_match, replace_pattern, set, set_semconv_span_name, truncate_all)')),
    ('Concat(name, "x")', ('"Concat" is a converter, which returns a value; a statement starts with an editor '
                          'such as set(...) (column 1)')),
    ('set(colour, "red")', ('unknown path "colour" (metric paths: aggregation_temporality, description, '
                           'is_monotonic, name, type, unit)')),
    ('set(resource.name, "x")', 'unknown path "resource.name" (resource paths: attributes, dropped_attributes_count)'),
    ('set(attributes["k"], "v")', ('unknown path "attributes["k"]" (metric paths: aggregation_temporality, description, '
                                  'is_monotonic, name, type, unit)')),
    ('set(datapoint.attributes["k"], "v")', ('path "datapoint.attributes["k"]" belongs to the datapoint context, '
                                            'which metric statements cannot reach')),
    ('set(description, "unterminated) where name == "x"',
     'unterminated string starting at column 49'),
    ('set(description, "no end', 'unterminated string starting at column 18'),
    ('set(description, "bad \\q escape")', 'invalid escape \\q at column 23'),
    ('set(description, "x") where name = "y"',
     ('unexpected "=" at column 34 (comparisons are ==, !=, <, <=, >, >=; a named argument is name = value '
      'inside a call)')),
    ('set(description, "x") where name =~ "y"',
     ('unexpected "=" at column 34 (comparisons are ==, !=, <, <=, >, >=; a named argument is name = value '
      'inside a call)')),
    ('set(description, "x") where name <> "y"', 'expected a value at column 35, got ">"'),
    ('set(description, "x") where name', ('expected a comparison operator (==, !=, <, <=, >, >=) at column 33, '
                                         'got the end of the text')),
    ('set(description, "x") trailing', 'unexpected "trailing" at column 23; expected "where" or the end of the text'),
    ('set(description, "x") where name == "a" extra',
     'unexpected "extra" at column 41; expected "and", "or" or the end of the text'),
    ('set(description, "x") where', '"where" must be followed by a condition'),
    ('set(description, "x") where name == "a" and', 'expected a value at column 44, got the end of the text'),
    ('set(description, "x") where (name == "a"', ('expected ")" to close the parenthesis at column 41, '
                                                'got the end of the text')),
    ('set(description, "x"', 'expected ")" to close set( at column 21, got the end of the text'),
    ('set(description "x")', 'expected ")" to close set( at column 17, got "\\"x\\""'),
    ('set description', 'a statement starts with an editor call such as set(...), got "set" at column 1'),
    ('', 'a statement starts with an editor call such as set(...), got the end of the text at column 1'),
    ('set(description, Concat("a", "b"))', 'the values of Concat must be a list such as [name, "x"], got "a"'),
    ('set(description, Frob(name))', ('unknown converter "Frob" (supported: Concat, Double, ExtractPatterns, '
                                     'Format, HasPrefix, HasSuffix, Hex, Int, IsBool, IsDouble, IsInt, IsList, '
                                     'IsMap, IsMatch, IsString, Keys, Len, MD5, ParseJSON, ParseKeyValue, SHA1, '
                                     'SHA256, SHA512, SpanID, Split, String, Substring, ToLowerCase, ToUpperCase, '
                                     'TraceID, Trim, TrimPrefix, TrimSuffix, UUID, Values)')),
    ('set(description, set(name, "x"))', ('"set" is an editor, which changes data and returns nothing; only '
                                         'converters (such as Concat or IsMatch) can be used as values (column 18)')),
    ('set(unit, "a" + "b")', 'unexpected "+" at column 15 (arithmetic is not supported)'),
    ('set(unit, 0xff)', 'byte literals (0x...) are not supported (column 11)'),
    ('set(unit, 12ab)', 'invalid number "12ab" at column 11'),
    ('set(unit, "x") where name == NOT_AN_ENUM', 'unknown enum "NOT_AN_ENUM"'),
    ('set(unit, "x") where name == "a" && unit == "b"', 'unexpected character "&" at column 34'),
    ('set(unit)', 'set takes 2 arguments (target, value), got 1'),
    ('set("unit", "x")', 'the first argument of set must be a path, got "unit"'),
    ('set(type, 1)', 'path "type" cannot be set: it is read-only'),
    ('set(name["k"], "x")', 'path "name["k"]" cannot be indexed'),
    ('set(resource.attributes, "x") where resource.attributes.team == "a"',
     ('unknown path "resource.attributes.team" (resource paths: attributes, dropped_attributes_count); '
     'to read a key write attributes["team"]')),
    ('delete_key(name, "k")', 'the first argument of delete_key must be a map such as attributes, got "name"'),
    ('delete_key(resource.attributes, team)', 'the key of delete_key must be a string literal, got team'),
    ('keep_keys(resource.attributes, "a")', ('the keys of keep_keys must be a list of strings like ["a", "b"], '
                                            'got "a"')),
    ('delete_matching_keys(resource.attributes, "(")',
     'invalid regular expression "(": missing ), unterminated subpattern at position 0'),
    ('set(resource.attributes["a"]["b"], 1)', ('path "resource.attributes["a"]["b"]" cannot be set: '
                                              'setting a nested key is not supported')),
    ('set(resource.attributes[0], 1)', 'path "resource.attributes[0]": attribute keys are strings, got 0'),
])
def test_unsupported_statements_are_config_problems_quoting_them(statement, why):
    settings = {"metric_statements": [{"context": "metric", "statements": [statement]}]}
    assert problems(settings) == [f'{P}: unsupported OTTL statement "{statement}": {why}']


@pytest.mark.parametrize("settings, expected", [
    ({"metric_statements": ['set(name, "x")']},
     [('processors::transform::metric_statements::0: unsupported OTTL statement "set(name, \"x\")": cannot infer the '
      'context: no path starts with one of resource, scope, metric, datapoint (write e.g. datapoint.attributes, '
      'or give a context)')]),
    ({"metric_statements": ['set(span.name, "x")']},
     [('processors::transform::metric_statements::0: unsupported OTTL statement "set(span.name, \"x\")": span paths '
      'cannot be used with metrics (contexts: resource, scope, metric, datapoint)')]),
    ({"trace_statements": ['set(span.name, "x") where name == "a"']},
     [('processors::transform::trace_statements::0: unsupported OTTL statement "set(span.name, \"x\") where '
      'name == \"a\"": path "name" needs a context prefix (e.g. span.name) when the context is inferred')]),
    ({"trace_statements": [{"context": "span_event", "statements": ['set(name, "x")']}]},
     [('processors::transform::trace_statements::0::context: "span_event" is not a context for traces '
      '(use one of: resource, scope, span, spanevent)')]),
    ({"trace_statements": [{"context": "span_event", "statements": ['set(name, "x")', "set(name"]}]},
     [('processors::transform::trace_statements::0::context: "span_event" is not a context for traces '
      '(use one of: resource, scope, span, spanevent)'),
      ('processors::transform::trace_statements::0::statements::1: unsupported OTTL statement "set(name": expected '
      '")" to close set( at column 9, got the end of the text')]),
    ({"trace_statements": [{"statements": ['set(name, "x")']}]},
     [('processors::transform::trace_statements::0: cannot infer the context: no path starts with one of resource, '
      'scope, span, spanevent (write e.g. spanevent.attributes, or give a context); or set "context"')]),
    ({"log_statements": [{"context": "log", "statement": ['set(body, "x")']}]},
     [('processors::transform::log_statements::0::statement: unknown key (valid keys: conditions, context, '
      'error_mode, statements)'),
      'processors::transform::log_statements::0::statements: required key is missing']),
    ({"log_statements": [{"context": "log", "statements": [5]}]},
     ['processors::transform::log_statements::0::statements::0: expected a string, got integer']),
    ({"log_statements": [7]},
     [('processors::transform::log_statements::0: expected a statement string or a mapping with context and '
      'statements, got integer')]),
    ({"log_statements": [{"context": "log", "statements": ['set(body, "x")'], "conditions": ["body ="]}]},
     [('processors::transform::log_statements::0::conditions::0: unsupported OTTL condition "body =": unexpected '
      '"=" at column 6 (comparisons are ==, !=, <, <=, >, >=; a named argument is name = value inside a '
      'call)')]),
    ({"error_mode": "loud"}, ['processors::transform::error_mode: "loud" is not one of: ignore, silent, propagate']),
])
def test_structural_problems(settings, expected):
    assert problems(settings) == expected


def test_every_problem_of_a_file_is_reported_at_once():
    # Sections in a fixed order (traces, metrics, logs), statements in file order within one.
    tree = yaml.safe_load(REFERENCE_CONFIG)
    transform_ = tree["processors"]["transform"]
    transform_["metric_statements"][0]["statements"] += ['set(colour, "red")', 'set(unit, "USD") where name = "x"']
    transform_["trace_statements"] = ['delete_key(span.attributes, "k") where', 'keep_keys(span.attributes, ["a"])']
    text = yaml.safe_dump(tree)
    with pytest.raises(ConfigError) as raised:
        load(text, registry(), env={})
    assert [str(p) for p in raised.value.problems] == [
        ('processors::transform::trace_statements::0: unsupported OTTL statement '
        '"delete_key(span.attributes, \"k\") where": "where" must be followed by a condition'),
        ('processors::transform::metric_statements::0::statements::2: unsupported OTTL statement '
        '"set(colour, \"red\")": unknown path "colour" (metric paths: aggregation_temporality, description, '
        'is_monotonic, name, type, unit)'),
        ('processors::transform::metric_statements::0::statements::3: unsupported OTTL statement '
        '"set(unit, \"USD\") where name = \"x\"": unexpected "=" at column 29 (comparisons are ==, !=, <, <=, >, >=; '
        'a named argument is name = value inside a call)'),
    ]


def test_genops_relay_validate_quotes_the_bad_statement(tmp_path, monkeypatch, capsys):
    from relay import cli

    monkeypatch.setattr(cli, "default_registry", registry)
    path = tmp_path / "relay.yaml"
    path.write_text(REFERENCE_CONFIG.replace('where name == "genops.cost.total"\n', 'where name === "x"\n', 1))
    assert cli.main(["validate", "--config", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"invalid configuration in {path} (1 problem):\n"
        "  processors::transform::metric_statements::0::statements::0: unsupported OTTL statement "
        '"set(description, \"OpenRouter request cost in USD\") where name === \"x\"": unexpected "=" at column 65 '
        "(comparisons are ==, !=, <, <=, >, >=; a named argument is name = value inside a call)\n")


# --- where clauses ------------------------------------------------------------------------------

def span_item() -> Item:
    request = llm_spans()
    item = Item()
    item.resource = request.resource_spans[0].resource
    item.scope = request.resource_spans[0].scope_spans[0].scope
    item.span = item.item = request.resource_spans[0].scope_spans[0].spans[0]
    attrs.put(item.item.attributes, "ratio", 0.5)
    attrs.put(item.item.attributes, "ok", True)
    return item


@pytest.mark.parametrize("condition, expected", [
    ("true", True),
    ("false", False),
    ("not true", False),
    ("not not true", True),
    # and binds tighter than or: read as true or (true and false), not (true or true) and false.
    ("true or true and false", True),
    ("false and true or true", True),
    ("(true or true) and false", False),
    # not binds tighter than and / or.
    ("not false and false", False),
    ("not true or true", True),
    ("not (true or true)", False),
    ("not (true and false)", True),
    ("((true))", True),
    ('name == "chat gpt-4o"', True),
    ('name != "chat gpt-4o"', False),
    ('name == "embeddings"', False),
    ('name == "chat gpt-4o" and attributes["gen_ai.system"] == "openai"', True),
    ('name == "chat gpt-4o" and attributes["gen_ai.system"] == "cohere"', False),
    ('name == "x" or attributes["gen_ai.system"] == "openai"', True),
    ('not name == "x" and (kind == SPAN_KIND_CLIENT or kind == SPAN_KIND_SERVER)', True),
    ('resource.attributes["team"] == "payments"', True),
    ('resource.attributes["tenant.id"] == 42', True),
    ('resource.attributes["tenant.id"] == 42.0', True),
    ('resource.attributes["tenant.id"] == "42"', False),
    ('resource.attributes["tenant.id"] != "42"', True),
    ('attributes["ok"] == true', True),
    ('attributes["ok"] == 1', False),
    ('attributes["missing"] == nil', True),
    ('attributes["missing"] != nil', False),
    ('attributes["missing"] == ""', False),
    ('nil == nil', True),
    ('attributes["gen_ai.usage.input_tokens"] > 100', True),
    ('attributes["gen_ai.usage.input_tokens"] >= 120', True),
    ('attributes["gen_ai.usage.input_tokens"] < 120', False),
    ('attributes["ratio"] <= 0.5', True),
    ('"b" > "a"', True),
    ('attributes["missing"] < 1', False),
    ('"1" < 2', False),
    ('instrumentation_scope.name == "genops"', True),
    ('status.code == STATUS_CODE_UNSET', True),
])
def test_where_truth_table(condition, expected):
    check = predicate(ottl.parse_condition(condition), Scope("span"))
    assert check(span_item()) is expected


# --- spans and resources ------------------------------------------------------------------------

def test_span_set_with_literals_and_paths():
    request = run({"trace_statements": [{"context": "span", "statements": [
        'set(attributes["genops.team"], resource.attributes["team"])',
        'set(attributes["genops.tenant"], resource.attributes["tenant.id"])',
        'set(attributes["genops.billable"], true) where attributes["gen_ai.system"] == "openai"',
        'set(attributes["gen_ai.usage.cost"], 0.0012) where kind == SPAN_KIND_CLIENT',
        'set(name, "llm chat") where name == "chat gpt-4o"',
        'set(status.code, STATUS_CODE_ERROR) where attributes["gen_ai.system"] == "cohere"',
    ]}]}, llm_spans())
    chat, embed = request.resource_spans[0].scope_spans[0].spans
    assert chat.name == "llm chat" and chat.status.code == 0
    assert as_dict(chat.attributes) == {"gen_ai.system": "openai", "secret": "s3cr3t",
                                        "gen_ai.usage.input_tokens": 120, "genops.team": "payments",
                                        "genops.tenant": 42, "genops.billable": True, "gen_ai.usage.cost": 0.0012}
    assert attrs.find(chat.attributes, "genops.tenant").WhichOneof("value") == "int_value"
    assert embed.name == "embeddings" and embed.status.code == 2
    assert as_dict(embed.attributes) == {"gen_ai.system": "cohere", "genops.team": "payments", "genops.tenant": 42}


def test_setting_a_missing_value_is_a_no_op_not_an_error():
    telemetry = SelfMetrics(CollectorRegistry())
    request = run({"error_mode": "propagate", "trace_statements": [
        'set(span.attributes["copy"], resource.attributes["absent"])',
        'set(span.name, span.attributes["absent"])']}, llm_spans(), telemetry)
    spans = request.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["chat gpt-4o", "embeddings"]
    assert all(attrs.find(s.attributes, "copy") is None for s in spans)


def test_span_delete_key_and_keep_keys():
    request = run({"trace_statements": [
        'delete_key(span.attributes, "secret")',
        'delete_key(span.attributes, "not-there")',
        'keep_keys(resource.attributes, ["service.name", "tenant.id"])',
    ]}, llm_spans())
    rs = request.resource_spans[0]
    assert as_dict(rs.resource.attributes) == {"service.name": "checkout", "tenant.id": 42}
    assert [as_dict(s.attributes) for s in rs.scope_spans[0].spans] == [
        {"gen_ai.system": "openai", "gen_ai.usage.input_tokens": 120}, {"gen_ai.system": "cohere"}]


def test_matching_key_editors():
    request = run({"trace_statements": [{"context": "span", "statements": [
        'delete_matching_keys(attributes, "^gen_ai\\\\.usage\\\\.")',
        'keep_matching_keys(resource.attributes, "^(service|team)")']}]}, llm_spans())
    rs = request.resource_spans[0]
    assert as_dict(rs.resource.attributes) == {"service.name": "checkout", "team": "payments"}
    assert as_dict(rs.scope_spans[0].spans[0].attributes) == {"gen_ai.system": "openai", "secret": "s3cr3t"}


@pytest.mark.parametrize("statements", [
    [{"context": "resource", "statements": ['set(attributes["env"], "prod") where attributes["team"] == "payments"',
                                            'delete_key(attributes, "tenant.id")']}],
    ['set(resource.attributes["env"], "prod") where resource.attributes["team"] == "payments"',
     'delete_key(resource.attributes, "tenant.id")'],
], ids=["context-relative", "prefixed"])
def test_resource_context_in_both_path_forms(statements):
    request = llm_spans()
    other = request.resource_spans.add()
    put(other.resource.attributes, {"team": "search", "tenant.id": 7})
    run({"trace_statements": statements}, request)
    assert [as_dict(rs.resource.attributes) for rs in request.resource_spans] == [
        {"service.name": "checkout", "team": "payments", "env": "prod"}, {"team": "search"}]


def test_a_whole_map_can_be_copied_and_replaced():
    request = run({"trace_statements": [{"context": "span", "statements": [
        'set(attributes["resource"], resource.attributes) where name == "embeddings"',
        'set(attributes, resource.attributes) where name == "chat gpt-4o"']}]}, llm_spans())
    chat, embed = request.resource_spans[0].scope_spans[0].spans
    resource = {"service.name": "checkout", "team": "payments", "tenant.id": 42}
    assert as_dict(chat.attributes) == resource
    assert as_dict(embed.attributes) == {"gen_ai.system": "cohere", "resource": resource}


def test_group_conditions_gate_every_statement_of_the_group():
    request = run({"trace_statements": [{"context": "span", "conditions": ['name == "embeddings"', "kind == 99"],
                                         "statements": ['set(attributes["gated"], true)']}]}, llm_spans())
    spans = request.resource_spans[0].scope_spans[0].spans
    assert [attrs.get(s.attributes, "gated") for s in spans] == [None, True]


# --- metrics: metric and datapoint contexts -----------------------------------------------------

def test_datapoint_context_reads_its_metric():
    request = run({"metric_statements": [
        {"context": "datapoint", "statements": [
            'set(attributes["metric"], metric.name) where metric.type == METRIC_DATA_TYPE_SUM',
            'set(attributes["currency"], "USD") where metric.name == "genops.cost.total" and value_double > 0.3',
        ]},
        'delete_key(datapoint.attributes, "model") where metric.name == "genops.cost.total"',
    ]}, cost_metrics())
    cost, tokens = request.resource_metrics[0].scope_metrics[0].metrics
    assert [as_dict(p.attributes) for p in cost.sum.data_points] == [
        {"metric": "genops.cost.total"}, {"metric": "genops.cost.total", "currency": "USD"}]
    assert [as_dict(p.attributes) for p in tokens.sum.data_points] == [{"metric": "genops.tokens.total"}]


def test_datapoint_context_covers_every_metric_type():
    request = ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    metrics.add(name="g").gauge.data_points.add(as_int=1)
    metrics.add(name="h").histogram.data_points.add(count=2)
    metrics.add(name="e").exponential_histogram.data_points.add(count=3)
    metrics.add(name="s").summary.data_points.add(count=4)
    metrics.add(name="empty")
    run({"metric_statements": ['set(datapoint.attributes["m"], metric.name)']}, request)
    seen = [attrs.get(getattr(m, m.WhichOneof("data")).data_points[0].attributes, "m") for m in metrics[:4]]
    assert seen == ["g", "h", "e", "s"]


def test_metric_context_reads_resource_attributes():
    request = run({"metric_statements": [
        'set(metric.description, "from openrouter") where resource.attributes["service.name"] == "openrouter"']},
        cost_metrics())
    assert [m.description for m in request.resource_metrics[0].scope_metrics[0].metrics] == ["from openrouter"] * 2


# --- logs -----------------------------------------------------------------------------------------

def test_log_context():
    request = run({"log_statements": [{"context": "log", "statements": [
        'set(body, "redacted") where attributes["secret"] == true',
        'delete_key(attributes, "secret")',
        'set(attributes["level"], severity_text)',
        'set(severity_number, SEVERITY_NUMBER_WARN2) where severity_number == SEVERITY_NUMBER_WARN',
        'set(attributes["service"], resource.attributes["service.name"]) where body == "ok"',
    ]}]}, app_logs())
    warn, info = request.resource_logs[0].scope_logs[0].log_records
    assert warn.body.string_value == "redacted" and warn.severity_number == 14
    assert as_dict(warn.attributes) == {"user": "ann", "level": "WARN"}
    assert info.body.string_value == "ok" and info.severity_number == 9
    assert as_dict(info.attributes) == {"user": "bob", "level": "INFO", "service": "checkout"}


def test_log_statements_in_the_prefixed_form():
    request = run({"log_statements": ['set(log.attributes["user"], "anon") where log.attributes["user"] == "ann"']},
                  app_logs())
    assert [attrs.get(r.attributes, "user") for r in request.resource_logs[0].scope_logs[0].log_records] == [
        "anon", "bob"]


# --- error modes ----------------------------------------------------------------------------------

# set(name, <int>) is a type mismatch that only the data reveals: span attribute
# gen_ai.usage.input_tokens is an int on the chat span and absent (a no-op) elsewhere.
MISMATCH = 'set(span.name, span.attributes["gen_ai.usage.input_tokens"])'
AFTER = 'set(span.attributes["after"], true)'


def run_logged(settings: dict, request, telemetry):
    stream = io.StringIO()
    setup_logging("info", stream)
    run(settings, request, telemetry)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def errors_counted(telemetry) -> float | None:
    return telemetry.registry.get_sample_value("otelcol_processor_transform_errors_total",
                                               {"processor": "transform", "signal": "traces"})


@pytest.mark.parametrize("settings", [{}, {"error_mode": "ignore"}], ids=["default", "ignore"])
def test_ignore_logs_counts_and_goes_on(settings):
    telemetry = SelfMetrics(CollectorRegistry())
    request = llm_spans()
    request.resource_spans.append(llm_spans().resource_spans[0])
    lines = run_logged({**settings, "trace_statements": [MISMATCH, AFTER]}, request, telemetry)
    spans = [s for rs in request.resource_spans for s in rs.scope_spans[0].spans]
    assert [s.name for s in spans] == ["chat gpt-4o", "embeddings"] * 2
    assert all(attrs.get(s.attributes, "after") is True for s in spans)
    assert errors_counted(telemetry) == 2
    assert lines == [{
        "ts": lines[0]["ts"], "level": "warning", "msg": "OTTL statement failed", "component": "transform",
        "statement": MISMATCH, "error": "name takes a string, got int", "items": 2, "context": "span",
        "signal": "traces"}]


def test_silent_counts_without_logging():
    telemetry = SelfMetrics(CollectorRegistry())
    lines = run_logged({"error_mode": "silent", "trace_statements": [MISMATCH, AFTER]}, llm_spans(), telemetry)
    assert lines == [] and errors_counted(telemetry) == 1


def test_propagate_raises_a_permanent_error_and_passes_nothing_on():
    telemetry = SelfMetrics(CollectorRegistry())
    processor, sink = make({"error_mode": "propagate", "trace_statements": [MISMATCH]}, telemetry)
    with pytest.raises(PermanentError) as raised:
        asyncio.run(processor.consume(llm_spans()))
    assert str(raised.value) == (f'transform: OTTL statement "{MISMATCH}" failed: '
                                 "name takes a string, got int")
    assert sink.requests == [] and errors_counted(telemetry) is None


def test_a_group_may_override_the_error_mode():
    settings = {"error_mode": "propagate", "trace_statements": [
        {"context": "span", "error_mode": "ignore",
         "statements": ['set(name, attributes["gen_ai.usage.input_tokens"])']}]}
    request = run(settings, llm_spans())
    assert request.resource_spans[0].scope_spans[0].spans[0].name == "chat gpt-4o"


@pytest.mark.parametrize("statement, error", [
    ('set(span.attributes["x"], span.attributes["gen_ai.system"]["inner"])',
     'span.attributes["gen_ai.system"]["inner"]: cannot index a string with "inner"'),
    ('set(span.name, 5)', "name takes a string, got int"),
    ('set(span.kind, span.name)', "kind takes an int, got string"),
    ('set(span.attributes["x"], true) where span.attributes["gen_ai.system"][0] == "o"',
     'span.attributes["gen_ai.system"][0]: cannot index a string with 0'),
    ('set(span.start_time_unix_nano, -1)', "start_time_unix_nano: Value out of range: -1"),
])
def test_runtime_errors_are_data_dependent(statement, error):
    processor, _ = make({"error_mode": "propagate", "trace_statements": [statement]})
    with pytest.raises(PermanentError, match="failed: (.*)") as raised:
        asyncio.run(processor.consume(llm_spans()))
    assert str(raised.value).split("failed: ", 1)[1] == error


def hostile_spans() -> ExportTraceServiceRequest:
    request = llm_spans()
    chat = request.resource_spans[0].scope_spans[0].spans[0]
    put(chat.attributes, {"big": "1" * 5000, "deep": "[" * 100_000 + "]" * 100_000, "format": "%" + "9" * 5000 + "d"})
    return request


@pytest.mark.parametrize("statement, errors, changed", [
    # Past int64, Int gives nil (Go's strconv.ParseInt refuses it): setting nil is a no-op.
    ('set(span.attributes["n"], Int(span.attributes["big"]))', None, {}),
    ('set(span.attributes["j"], ParseJSON(span.attributes["deep"])) where span.attributes["deep"] != nil', 1, {}),
    ('set(span.attributes["f"], Format(span.attributes["format"], [1])) where span.attributes["format"] != nil', None,
     {"f": "%!(NOVERB)%!(EXTRA int64=1)"}),
], ids=["5000-digit int", "deep json", "5000-digit width"])
def test_hostile_data_fails_only_the_statement_never_the_request(statement, errors, changed):
    telemetry = SelfMetrics(CollectorRegistry())
    request = run({"trace_statements": [statement]}, hostile_spans(), telemetry)
    chat = request.resource_spans[0].scope_spans[0].spans[0]
    assert {k: v for k, v in as_dict(chat.attributes).items() if k in ("n", "j", "f")} == changed
    assert errors_counted(telemetry) == errors


def _broken(item):
    raise ZeroDivisionError("division by zero")


def broken_plan(error_mode: str):
    # A statement that raises something other than EvalError stands for a bug in a function:
    # no real one is known to (that is the point), so the plan is built by hand.
    from relay.processors.transform.config import Compiled, Group
    return {Signal.TRACES: (Group("span", (Compiled("broken()", _broken),), None, error_mode),)}


def test_any_exception_from_a_statement_is_a_failure_on_the_data():
    from relay.processors.transform.processor import Transform
    telemetry = SelfMetrics(CollectorRegistry())
    stream = io.StringIO()
    setup_logging("info", stream)
    request = llm_spans()
    assert Transform("transform", broken_plan("ignore"), telemetry)(request) is request
    assert errors_counted(telemetry) == 2
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["statement"], line["error"], line["items"]) == ("broken()", "ZeroDivisionError: division by zero", 2)
    with pytest.raises(PermanentError, match='"broken\\(\\)" failed: ZeroDivisionError: division by zero'):
        Transform("transform", broken_plan("propagate"), telemetry)(llm_spans())


def test_counters_are_shared_by_processors_on_one_registry():
    telemetry = SelfMetrics(CollectorRegistry())
    for _ in range(2):  # one processor instance per pipeline, as the graph builds them
        run({"trace_statements": [MISMATCH]}, llm_spans(), telemetry)
    assert errors_counted(telemetry) == 2


# --- span events and converters (relay.ottl) ------------------------------------------------------

def test_spanevent_context_reads_its_span_and_converters_work_in_statements():
    request = llm_spans()
    chat = request.resource_spans[0].scope_spans[0].spans[0]
    chat.events.add(name="gen_ai.choice")
    chat.events.add(name="exception")
    run({"trace_statements": [
        {"context": "spanevent", "statements": [
            'set(attributes["span"], span.name) where IsMatch(name, "^gen_ai\\\\.")']},
        'set(span.attributes["secret"], SHA256(span.attributes["secret"])) where IsString(span.attributes["secret"])',
        'replace_pattern(span.name, "^chat (.*)$", "llm.chat $1")',
    ]}, request)
    assert [as_dict(event.attributes) for event in chat.events] == [{"span": "chat gpt-4o"}, {}]
    # As the collector's SHA256 converter writes it: the digest in lower-case hex.
    assert attrs.get(chat.attributes, "secret") == hashlib.sha256(b"s3cr3t").hexdigest()
    assert chat.name == "llm.chat gpt-4o"
