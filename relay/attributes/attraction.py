"""The attribute action engine shared by the ``attributes`` and ``resource`` processors.

A list of ``ActionConfig`` (the collector's ``actions``) is checked by
``validate()`` and compiled once by ``Actions``; ``Actions.for_request()``
returns the function that runs every action, in config order, on one
attribute list (``repeated KeyValue``), in place.

The collector's semantics (contrib ``internal/coreinternal/attraction``), and
the choices made here where it is silent or unhelpful:

* ``from_context``: ``metadata.<key>`` (values of a repeated key joined with
  ";"), ``client.address`` (the peer's IP, without port, as the collector
  gives it) and, as the collector's backwards-compatible fallback, any other
  name is read as a metadata key. ``auth.*`` is refused: the one authenticator,
  ``bearertokenauth``, attaches no auth data to a request (nor does the
  collector's). A request with no known peer leaves ``client.address``
  actions undone (the collector writes "").
* ``default_value`` (newer collectors) is the fallback for a missing
  ``from_attribute`` or ``from_context``; beside ``value``, or alone, it is a
  config problem, since it would never be used or would just be ``value``.
* hash: SHA-256, hex. The bytes hashed are, as in the collector, so digests
  agree with it: a string's UTF-8; a bool's single byte 1 or 0; an int's
  8 bytes little-endian two's complement; a double's 8 bytes little-endian
  IEEE 754. Beyond the collector (which writes "" for them): bytes hash as
  themselves, arrays and maps as their deterministic protobuf encoding. An
  empty value stays empty. An attribute named by ``key`` and matched by
  ``pattern`` is hashed once (the collector hashes it twice).
* convert: ``int`` from a string takes an optional sign and decimal digits
  ("true", "1.5", " 1" and "1_000" fail); from a double it truncates toward
  zero, and NaN, infinities and doubles beyond int64 fail; from a bool 1/0.
  ``double`` from a string takes decimal and exponent notation and inf/nan
  (not Go's hex floats); a string that overflows fails. ``string`` writes
  bools as true/false, doubles as the collector (ES6 number form: "1", "1.5",
  "1e+21", "1e-7"; NaN and infinities as "NaN", "+Inf", "-Inf" where the
  collector writes a JSON error text), bytes as base64, arrays and maps as
  compact JSON with sorted keys. A failed conversion leaves the value as it was.
* Keys repeated within one list (invalid OTLP, seen in the wild): delete and
  hash act on every copy; the other actions read and write the first.
* Regular expressions are Python's ``re``, searched (not anchored) as the
  collector's RE2 ones are; Go's ``(?<name>...)`` is accepted too.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from relay import attrs, client
from relay.attributes.values import CONVERTERS, digest
from relay.errors import Problem

ACTIONS = ("insert", "update", "upsert", "delete", "hash", "extract", "convert")
CONVERTED_TYPES = ("int", "double", "string")
_WRITES = ("insert", "update", "upsert")
_SOURCES = ("value", "from_attribute", "from_context")
_OPTIONAL_FIELDS = ("value", "from_attribute", "from_context", "default_value", "pattern", "converted_type")
_USES = {
    "insert": {"value", "from_attribute", "from_context", "default_value"},
    "update": {"value", "from_attribute", "from_context", "default_value"},
    "upsert": {"value", "from_attribute", "from_context", "default_value"},
    "delete": {"pattern"},
    "hash": {"pattern"},
    "extract": {"pattern"},
    "convert": {"converted_type"},
}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

Step = Callable[[Any], None]  # runs on one attribute list


@dataclass
class ActionConfig:
    """One entry of ``actions`` (``attributes`` in the resource processor), in the collector's terms."""

    action: str
    key: str = ""
    value: Any = None
    from_attribute: str = ""
    from_context: str = ""
    default_value: Any = None
    pattern: str = ""
    converted_type: str = ""

    def validate(self) -> list[Problem]:
        problems = [Problem((name,), message) for name in ("value", "default_value")
                    if getattr(self, name) is not None and (message := value_problem(getattr(self, name)))]
        action = self.action.lower()
        if action not in ACTIONS:
            return problems + [Problem(("action",), f'unknown action "{self.action}" '
                                                    f'(valid: {", ".join(ACTIONS)})')]
        if action in ("delete", "hash"):
            if not self.key and not self.pattern:
                problems.append(Problem((), f'the "{action}" action needs "key", "pattern" or both'))
        elif not self.key:
            problems.append(Problem(("key",), f'required for the "{action}" action'))
        for name in _OPTIONAL_FIELDS:
            if name not in _USES[action] and self._is_set(name):
                problems.append(Problem((name,), f'not used by the "{action}" action'))
        if action in _WRITES:
            problems += self._source_problems(action)
        elif action == "convert":
            problems += self._converted_type_problems()
        elif self.pattern:
            problems += _pattern_problems(self.pattern, named_groups=action == "extract")
        elif action == "extract":
            problems.append(Problem(("pattern",), 'required for the "extract" action'))
        return problems

    def _is_set(self, name: str) -> bool:
        value = getattr(self, name)
        return value is not None if name in ("value", "default_value") else value != ""

    def _source_problems(self, action: str) -> list[Problem]:
        given = [name for name in _SOURCES if self._is_set(name)]
        if not given:
            return [Problem((), f'the "{action}" action needs one of "value", "from_attribute" or "from_context"')]
        problems = [Problem((name,), f'cannot be combined with "{given[0]}": give exactly one of "value", '
                                     f'"from_attribute" or "from_context"') for name in given[1:]]
        if self.default_value is not None and given == ["value"]:
            problems.append(Problem(("default_value",), 'only used with "from_attribute" or "from_context", '
                                                        'when that source is missing'))
        if self.from_context.startswith("auth."):
            problems.append(Problem(("from_context",), '"auth.*" is not supported: bearertokenauth, the '
                                                       'one authenticator, attaches no auth data'))
        elif self.from_context == "metadata.":
            problems.append(Problem(("from_context",), 'names no metadata key (e.g. "metadata.x-tenant")'))
        return problems

    def _converted_type_problems(self) -> list[Problem]:
        if not self.converted_type:
            return [Problem(("converted_type",), 'required for the "convert" action (int, double or string)')]
        if self.converted_type not in CONVERTED_TYPES:
            return [Problem(("converted_type",), f'"{self.converted_type}" is not one of: int, double, string')]
        return []


def _pattern_problems(pattern: str, named_groups: bool) -> list[Problem]:
    try:
        regex = compile_regex(pattern)
    except re.error as error:
        return [Problem(("pattern",), f"invalid regular expression: {error}")]
    if named_groups and not regex.groupindex:
        return [Problem(("pattern",), "needs at least one named group, e.g. (?P<name>...)")]
    if named_groups and regex.groups != len(regex.groupindex):
        return [Problem(("pattern",), "every group must be named, e.g. (?P<name>...); "
                                      "use (?:...) to group without capturing")]
    return []


# Go's RE2 also spells a named group (?<name>...), which Python reads as a broken lookbehind.
_GO_NAMED_GROUP = re.compile(r"(?<!\\)((?:\\\\)*)\(\?<(?=[A-Za-z_])")


def compile_regex(pattern: str) -> re.Pattern:
    return re.compile(_GO_NAMED_GROUP.sub(r"\1(?P<", pattern))


# --- config values -> AnyValue --------------------------------------------------------------------------


def value_problem(raw: Any) -> str | None:
    """Why a YAML value cannot be an attribute value, or None when it can."""
    if isinstance(raw, (bool, str, float, bytes)):
        return None
    if isinstance(raw, int):
        return None if _INT64_MIN <= raw <= _INT64_MAX else f"{raw} does not fit in a 64-bit integer"
    if isinstance(raw, list):
        return next(filter(None, map(value_problem, raw)), None)
    if isinstance(raw, dict):
        if not all(isinstance(key, str) for key in raw):
            return "map keys must be strings"
        return next(filter(None, map(value_problem, raw.values())), None)
    if raw is None:
        return "null is not an attribute value"
    if isinstance(raw, (datetime.date, datetime.datetime)):
        # YAML 1.1 reads 2024-05-01 as a date; the collector would have kept the text.
        return "a YAML timestamp is not an attribute value: quote it to keep it as a string"
    return f"a {type(raw).__name__} is not an attribute value"


def to_any_value(raw: Any) -> AnyValue:
    value = AnyValue()
    attrs.fill(value, raw)
    return value


# --- compiling actions ----------------------------------------------------------------------------------


def _writer(action: str, key: str) -> Callable[[Any, AnyValue], None]:
    if action == "insert":
        def write(kvs, value):
            if attrs.find(kvs, key) is None:
                kv = kvs.add()
                kv.key = key
                kv.value.CopyFrom(value)
    elif action == "update":
        def write(kvs, value):
            target = attrs.find(kvs, key)
            if target is not None:
                target.CopyFrom(value)
    else:
        def write(kvs, value):
            attrs.put_value(kvs, key, value)
    return write


def _constant_step(write, value: AnyValue) -> Step:
    return lambda kvs: write(kvs, value)


def _from_attribute_step(write, source: str, default: AnyValue | None) -> Step:
    def step(kvs):
        value = attrs.find(kvs, source)
        if value is None:
            value = default
        if value is not None:
            write(kvs, value)
    return step


class _FromContext:
    """A write whose value comes from the request's client info, so it is bound per request."""

    def __init__(self, write, source: str, default: AnyValue | None):
        self.write = write
        self.default = default
        # Names without a known prefix are metadata keys: the collector's backwards-compatible reading.
        self.source = source if source == "client.address" or source.startswith("metadata.") \
            else "metadata." + source

    def bind(self) -> Step | None:
        text = client.from_context(self.source)
        value = AnyValue(string_value=text) if text is not None else self.default
        return None if value is None else _constant_step(self.write, value)


def _key_predicate(key: str, pattern: str) -> Callable[[str], bool]:
    if not pattern:
        return key.__eq__
    search = compile_regex(pattern).search
    if not key:
        return lambda name: search(name) is not None
    return lambda name: name == key or search(name) is not None


def _hash_step(matches) -> Step:
    def step(kvs):
        for kv in kvs:
            if matches(kv.key):
                hexdigest = digest(kv.value)
                if hexdigest is not None:
                    kv.value.string_value = hexdigest
    return step


def _extract_step(key: str, pattern: str) -> Step:
    regex = compile_regex(pattern)
    names = sorted(regex.groupindex, key=regex.groupindex.get)  # in group order, as groups() returns them

    def step(kvs):
        value = attrs.find(kvs, key)
        if value is None or value.WhichOneof("value") != "string_value":
            return
        match = regex.search(value.string_value)
        if match is not None:
            # A group that took no part in the match writes "", as RE2's FindStringSubmatch does.
            for name, text in zip(names, match.groups("")):
                attrs.put(kvs, name, text)
    return step


def _convert_step(key: str, converted_type: str) -> Step:
    convert = CONVERTERS[converted_type]

    def step(kvs):
        value = attrs.find(kvs, key)
        if value is not None:
            convert(value)
    return step


def _compile(config: ActionConfig) -> Step | _FromContext:
    action = config.action.lower()
    if action in _WRITES:
        write = _writer(action, config.key)
        default = None if config.default_value is None else to_any_value(config.default_value)
        if config.value is not None:
            return _constant_step(write, to_any_value(config.value))
        if config.from_attribute:
            return _from_attribute_step(write, config.from_attribute, default)
        return _FromContext(write, config.from_context, default)
    if action == "delete":
        matches = _key_predicate(config.key, config.pattern)
        return lambda kvs: attrs.delete(kvs, matches)
    if action == "hash":
        return _hash_step(_key_predicate(config.key, config.pattern))
    if action == "extract":
        return _extract_step(config.key, config.pattern)
    return _convert_step(config.key, config.converted_type)


class Actions:
    """Validated ``ActionConfig``s, compiled once: regexes, constant values and key tests."""

    def __init__(self, configs: list[ActionConfig]):
        self._steps = [_compile(config) for config in configs]
        self._per_request = any(isinstance(step, _FromContext) for step in self._steps)
        self._fixed = _run_all(self._steps) if not self._per_request else None

    def for_request(self) -> Step:
        """The function applying every action to one attribute list, for the request being processed.

        Context values are read once here, not once per span.
        """
        if self._fixed is not None:
            return self._fixed
        steps = [step.bind() if isinstance(step, _FromContext) else step for step in self._steps]
        return _run_all([step for step in steps if step is not None])


def _run_all(steps: list[Step]) -> Step:
    if len(steps) == 1:
        return steps[0]

    def run(kvs):
        for step in steps:
            step(kvs)
    return run
