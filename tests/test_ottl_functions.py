"""The OTTL editors and converters of ``relay.ottl``, as tables of (input, statement, expected output).

Expected values come from the collector's ``pkg/ottl/ottlfuncs`` documentation
and its documented examples (``$$`` there is the config file's escape for
``$``; statements here are OTTL text, so they write ``$``). Statements run in
the span context on one span whose attributes are the row's input.
"""

from __future__ import annotations

import hashlib

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from relay import attrs
from relay.ottl.compile import Scope, compile_statement, predicate, value_getter
from relay.ottl.contexts import EvalError, Item
from relay.ottl.parse import StatementError, parse_condition, parse_statement


def span_item(attributes: dict, name: str = "span") -> Item:
    rs = ResourceSpans()
    attrs.put(rs.resource.attributes, "service.name", "checkout")
    ss = rs.scope_spans.add()
    span = ss.spans.add(name=name)
    for key, value in attributes.items():
        attrs.put(span.attributes, key, value)
    item = Item()
    item.resource, item.scope = rs.resource, ss.scope
    item.span = item.item = span
    return item


def run(statement: str, attributes: dict, name: str = "span") -> tuple[dict, str]:
    item = span_item(attributes, name)
    compile_statement(parse_statement(statement), Scope("span"))(item)
    span = item.span
    return {kv.key: attrs.to_python(kv.value) for kv in span.attributes}, span.name


def value(expression: str, attributes: dict | None = None):
    """What an expression evaluates to, parsed where a value stands in a statement (set's second argument)."""
    node = parse_statement(f"set(attributes[\"out\"], {expression})").call.args[1]
    return value_getter(node, Scope("span"))(span_item(attributes or {}))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- editors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("before, statement, after", [
    # The README's examples.
    ({"process.command_line": "app password=s3cr3t --verbose"},
     'replace_pattern(attributes["process.command_line"], "password\\\\=[^\\\\s]*(\\\\s?)", "password=***")',
     {"process.command_line": "app password=***--verbose"}),
    ({"k": "kube_pod_name"}, 'replace_pattern(attributes["k"], "^kube_([0-9A-Za-z]+_)", "k8s.$1.")',
     {"k": "k8s.pod_.name"}),
    ({"k": "kube_pod_name"}, 'replace_pattern(attributes["k"], "^kube_([0-9A-Za-z]+_)", "$1.", SHA256, "k8s.%s")',
     {"k": "k8s." + sha256("pod_.") + "name"}),
    ({"k": "kube_pod_name"}, 'replace_pattern(attributes["k"], "^kube_([0-9A-Za-z]+_)", "$1.", SHA256)',
     {"k": sha256("pod_.") + "name"}),
    # Every match is replaced; Go's template forms: ${n}, named groups, $$ for a literal $.
    ({"k": "a1 b2 c3"}, 'replace_pattern(attributes["k"], "([a-z])([0-9])", "${2}${1}")', {"k": "1a 2b 3c"}),
    ({"k": "user=ann"}, 'replace_pattern(attributes["k"], "user=(?P<who>\\\\w+)", "[${who}]")', {"k": "[ann]"}),
    ({"k": "user=ann"}, 'replace_pattern(attributes["k"], "user=(?<who>\\\\w+)", "$who $$ $9 $nope")',
     {"k": "ann $  "}),
    ({"k": "abc"}, 'replace_pattern(attributes["k"], "x", "y")', {"k": "abc"}),
    # Not a string, or missing: left as it is.
    ({"n": 12}, 'replace_pattern(attributes["n"], "1", "x")', {"n": 12}),
    ({}, 'replace_pattern(attributes["missing"], ".*", "x")', {}),
    # replace_match: the whole value must match the glob pattern.
    ({"http.target": "/user/123/list/456"},
     'replace_match(attributes["http.target"], "/user/*/list/*", "/user/{userId}/list/{listId}")',
     {"http.target": "/user/{userId}/list/{listId}"}),
    ({"http.target": "/user/123/list"},
     'replace_match(attributes["http.target"], "/user/*/list/*", "/user/{userId}/list/{listId}")',
     {"http.target": "/user/123/list"}),
    ({"http.target": "/user/123/list/456"},
     'replace_match(attributes["http.target"], "/user/*/list/*", "/user/{userId}/list/{listId}", SHA256, '
     '"/user/%s")',
     {"http.target": "/user/" + sha256("/user/{userId}/list/{listId}")}),
    ({"v": "cat"}, 'replace_match(attributes["v"], "{cat,dog}", "pet")', {"v": "pet"}),
    ({"v": "c?t"}, 'replace_match(attributes["v"], "c\\\\?[!a]", "x")', {"v": "x"}),
    ({"v": "cat"}, 'replace_match(attributes["v"], "c?", "x")', {"v": "cat"}),
    # replace_all_patterns: the collector's own table, then the README's key examples.
    ({"test": "hello world", "test2": "hello", "test3": "goodbye world1 and world2"},
     'replace_all_patterns(attributes, "value", "hello", "hello {universe}")',
     {"test": "hello {universe} world", "test2": "hello {universe}", "test3": "goodbye world1 and world2"}),
    ({"test": "hello world", "test2": "hello", "test3": "goodbye world1 and world2"},
     'replace_all_patterns(attributes, "value", "world[^\\\\s]*(\\\\s?)", "**** ")',
     {"test": "hello **** ", "test2": "hello", "test3": "goodbye **** and **** "}),
    ({"url": "/account/1234/x", "n": 1234},
     'replace_all_patterns(attributes, "value", "/account/\\\\d{4}", "/account/{accountId}")',
     {"url": "/account/{accountId}/x", "n": 1234}),
    ({"kube_pod_name": "web-1", "other": "x"},
     'replace_all_patterns(attributes, "key", "^kube_([0-9A-Za-z]+_)", "k8s.$1.")',
     {"k8s.pod_.name": "web-1", "other": "x"}),
    ({"kube_pod_name": "web-1"},
     'replace_all_patterns(attributes, "key", "^kube_([0-9A-Za-z]+_)", "$1.", SHA256, "k8s.%s")',
     {"k8s." + sha256("pod_.") + "name": "web-1"}),
    ({"email": "ann@example.com", "note": "mail ann@example.com"},
     'replace_all_patterns(attributes, "value", "[a-z]+@example\\\\.com", "$0", SHA256)',
     {"email": sha256("ann@example.com"), "note": "mail " + sha256("ann@example.com")}),
    # limit: no more than the limit; priority keys are kept; the rest in order.
    ({"a": 1, "b": 2, "c": 3}, 'limit(attributes, 100, [])', {"a": 1, "b": 2, "c": 3}),
    ({"a": 1, "b": 2, "c": 3}, 'limit(attributes, 2, [])', {"a": 1, "b": 2}),
    ({"a": 1, "b": 2, "c": 3}, 'limit(attributes, 2, ["c"])', {"a": 1, "c": 3}),
    ({"a": 1, "b": 2, "c": 3}, 'limit(attributes, 1, ["c"])', {"c": 3}),
    ({"a": 1, "b": 2}, 'limit(attributes, 0, [])', {}),
    # truncate_all: strings only, the limit in bytes, never splitting a character.
    ({"a": "hello world", "n": 12345678, "b": "hi"}, 'truncate_all(attributes, 5)',
     {"a": "hello", "n": 12345678, "b": "hi"}),
    ({"a": "héllo"}, 'truncate_all(attributes, 2)', {"a": "h"}),
    ({"a": "héllo"}, 'truncate_all(attributes, 3)', {"a": "hé"}),
    ({"a": "x"}, 'truncate_all(attributes, 0)', {"a": ""}),
    # Converters as editor arguments.
    ({"email": "ann@example.com"}, 'set(attributes["h"], SHA256(attributes["email"]))',
     {"email": "ann@example.com", "h": sha256("ann@example.com")}),
    ({"m": "GET", "p": "/x"}, 'set(attributes["r"], Concat([attributes["m"], attributes["p"]], ": "))',
     {"m": "GET", "p": "/x", "r": "GET: /x"}),
    ({"j": '{"team": "a", "n": 2}'}, 'set(attributes["parsed"], ParseJSON(attributes["j"]))',
     {"j": '{"team": "a", "n": 2}', "parsed": {"team": "a", "n": 2.0}}),
    ({"x": "abc"}, 'set(attributes["ok"], true) where IsMatch(attributes["x"], "^a.*") and not IsString(name) == false',
     {"x": "abc", "ok": True}),
])
def test_editors(before, statement, after):
    assert run(statement, before)[0] == after


def test_replace_pattern_on_a_span_name():
    assert run('replace_pattern(name, "^GET /users/[0-9]+$", "GET /users/{id}")', {}, "GET /users/42")[1] == \
        "GET /users/{id}"


def test_parse_json_numbers_are_doubles_as_in_the_collector():
    number = value('ParseJSON("{\\"n\\": 1}")')["n"]
    assert type(number) is float and number == 1.0


# --- converters -----------------------------------------------------------------------------------

@pytest.mark.parametrize("attributes, expression, expected", [
    ({"http.path": "/foo/bar"}, 'IsMatch(attributes["http.path"], "foo")', True),
    ({}, 'IsMatch("string", ".*ring")', True),
    ({}, 'IsMatch("string", "^ring")', False),
    ({"code": 200}, 'IsMatch(attributes["code"], "^2\\\\d\\\\d$")', True),
    ({"ok": True}, 'IsMatch(attributes["ok"], "^true$")', True),
    ({"ratio": 0.5}, 'IsMatch(attributes["ratio"], "^0\\\\.5$")', True),
    ({"m": {"b": 1, "a": "x"}}, 'IsMatch(attributes["m"], "^\\\\{\\"a\\":\\"x\\",\\"b\\":1\\\\}$")', True),
    ({}, 'IsMatch(attributes["missing"], ".*")', False),
    # RE2's $ is the end of the text, not the end before a final newline.
    ({"t": "abc\n"}, 'IsMatch(attributes["t"], "abc$")', False),
    ({"t": "abc\n"}, 'IsMatch(attributes["t"], "(?m)abc$")', True),
    ({"t": "x9"}, 'IsMatch(attributes["t"], "[[:digit:]]")', True),
    ({"m": {"a": 1}}, 'IsMap(attributes["m"])', True),
    ({"s": "a"}, 'IsMap(attributes["s"])', False),
    ({}, 'IsMap(attributes["missing"])', False),
    ({}, 'IsMap(ParseJSON("{\\"attr\\":true}"))', True),
    ({"s": "a"}, 'IsString(attributes["s"])', True),
    ({"n": 1}, 'IsString(attributes["n"])', False),
    ({}, 'IsString(name)', True),
    ({}, 'SHA256("hello world")', "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"),
    ({}, 'SHA256("")', "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ({"http.method": "GET", "http.path": "/x"}, 'Concat([attributes["http.method"], attributes["http.path"]], ": ")',
     "GET: /x"),
    ({}, 'Concat([name, 1], " ")', "span 1"),
    ({"http.method": "GET"}, 'Concat(["HTTP method is: ", attributes["http.method"]], "")', "HTTP method is: GET"),
    ({"f": 1.0, "g": 2.5, "b": False}, 'Concat([attributes["f"], attributes["g"], attributes["b"]], ",")',
     "1,2.5,false"),
    ({}, 'Concat([attributes["missing"], "x"], "-")', "<nil>-x"),
    ({}, 'ParseJSON("{\\"attr\\":true}")', {"attr": True}),
    ({}, 'ParseJSON("[\\"attr1\\",\\"attr2\\"]")', ["attr1", "attr2"]),
    ({}, 'ParseJSON("{\\"a\\": {\\"b\\": [1, null]}}")', {"a": {"b": [1.0, None]}}),
    ({}, 'SHA256(Concat(["a", "b"], ""))', hashlib.sha256(b"ab").hexdigest()),
])
def test_converters(attributes, expression, expected):
    assert value(expression, attributes) == expected


@pytest.mark.parametrize("expression, error", [
    ('SHA256(attributes["missing"])', "SHA256: expected string but got nil"),
    ('SHA256(attributes["n"])', "SHA256: expected string but got int"),
    ('ParseJSON("1")', "ParseJSON: could not convert parsed value of type float64 to JSON object"),
    ('ParseJSON("true")', "ParseJSON: could not convert parsed value of type bool to JSON object"),
    ('ParseJSON(attributes["n"])', "ParseJSON: expected string but got int"),
    ('Concat(["a"], attributes["n"])', "Concat: expected string but got int"),
])
def test_converter_failures_depend_on_the_data(expression, error):
    with pytest.raises(EvalError) as raised:
        value(expression, {"n": 3})
    assert str(raised.value).startswith(error)


@pytest.mark.parametrize("condition, expected", [
    ('IsMatch(attributes["x"], "^a.*") and not IsString(name)', False),
    ('IsMatch(attributes["x"], "^a.*") and not IsMap(name)', True),
    ('IsMatch(attributes["x"], "^b") or IsString(attributes["x"])', True),
    ('not (IsMatch(name, "span") or false)', False),
    ('SHA256(name) == "' + sha256("span") + '"', True),
    ('Concat([name, "x"], ".") != "span.x"', False),
    ('IsMap(ParseJSON(attributes["j"]))', True),
])
def test_converters_in_conditions(condition, expected):
    check = predicate(parse_condition(condition), Scope("span"))
    assert check(span_item({"x": "abc", "j": "{}"})) is expected


# --- compile-time errors --------------------------------------------------------------------------

@pytest.mark.parametrize("text, error", [
    ('set(name, Frob(name))', 'unknown converter "Frob" (supported: Concat, IsMap, IsMatch, IsString, ParseJSON, '
                              'SHA256)'),
    ('SHA256(name)', '"SHA256" is a converter, which returns a value; a statement starts with an editor such as '
                     'set(...) (column 1)'),
    ('set(name, delete_key(attributes, "a"))', ('"delete_key" is an editor, which changes data and returns nothing; '
                                                'only converters (such as Concat or IsMatch) can be used as values '
                                                '(column 11)')),
    ('set(name, SHA256)', 'unknown enum "SHA256" (a converter is called with parentheses)'),
    ('set(name, SHA256(name, name))', 'SHA256 takes 1 argument (value), got 2'),
    ('set(name, IsMatch(name))', 'IsMatch takes 2 arguments (target, pattern), got 1'),
    ('set(name, IsMatch(name, attributes["p"]))', 'the pattern of IsMatch must be a string literal, got attributes["p"]'),
    ('set(name, IsMatch(name, "(?=a)"))', ('invalid regular expression "(?=a)": lookahead and lookbehind are not '
                                          "supported (the collector's regular expressions are RE2)")),
    ('set(name, IsMatch(name, "(a)\\\\1"))', ('invalid regular expression "(a)\\\\1": backreferences (\\1) are not '
                                             "supported (the collector's regular expressions are RE2)")),
    ('set(name, IsMatch(name, "[a"))', 'invalid regular expression "[a": missing ] for the class at position 0'),
    ('set(name, Concat(name, ""))', 'the values of Concat must be a list such as [name, "x"], got name'),
    ('set(name, Concat([name]))', 'Concat takes 2 arguments (values, delimiter), got 1'),
    ('set(name, IsString([name]))', 'the value of IsString must be a single value, got a list'),
    ('replace_pattern(name, "a")', ('replace_pattern takes 3 to 5 arguments (target, regex, replacement, function, '
                                    'replacementFormat), got 2')),
    ('replace_pattern("name", "a", "b")', 'the first argument of replace_pattern must be a path, got "name"'),
    ('replace_pattern(name, "a", "b", "SHA256")', ('the function of replace_pattern must be a converter name such '
                                                   'as SHA256, got "SHA256"')),
    ('replace_pattern(name, "a", "b", IsMap)', ('the function of replace_pattern must be a converter from string '
                                                'to string (SHA256), got IsMap')),
    ('replace_pattern(name, "a", "b", SHA256, "%s-%s")', ('the replacementFormat of replace_pattern must contain a '
                                                          'single %s and no other format specifiers, got "%s-%s"')),
    ('replace_pattern(name, "a", "b", SHA256, "%d")', ('the replacementFormat of replace_pattern must contain a '
                                                       'single %s and no other format specifiers, got "%d"')),
    ('replace_match(name, "[a", "b")', 'invalid glob pattern "[a": unclosed [ at position 0'),
    ('replace_match(name, "{a,b", "b")', 'invalid glob pattern "{a,b": unclosed {'),
    ('replace_all_patterns(attributes, "keys", "a", "b")', ('the mode of replace_all_patterns must be "key" or '
                                                            '"value", got "keys"')),
    ('replace_all_patterns(name, "key", "a", "b")', ('the first argument of replace_all_patterns must be a map such '
                                                     'as attributes, got "name"')),
    ('limit(attributes, 1, ["a", "b"])', 'the limit of limit (1) cannot be less than the number of priority_keys (2)'),
    ('limit(attributes, -1, [])', 'the limit of limit cannot be negative, got -1'),
    ('limit(attributes, "1", [])', 'the limit of limit must be an integer literal, got "1"'),
    ('limit(attributes, 1, "a")', 'the priority_keys of limit must be a list of strings like ["a", "b"], got "a"'),
    ('truncate_all(attributes, 1.5)', 'the limit of truncate_all must be an integer literal, got 1.5'),
    ('truncate_all(attributes)', 'truncate_all takes 2 arguments (target, limit), got 1'),
    ('set(name, "x") where SHA256(name)', ('SHA256 returns a string, not a bool, so it cannot stand alone as a '
                                           'condition (compare it, e.g. SHA256(...) == ...)')),
    ('set(name, "x") where Concat([name], "")', ('Concat returns a string, not a bool, so it cannot stand alone as a '
                                                 'condition (compare it, e.g. Concat(...) == ...)')),
])
def test_compile_errors(text, error):
    with pytest.raises(StatementError) as raised:
        compile_statement(parse_statement(text), Scope("span"))
    assert str(raised.value) == error
