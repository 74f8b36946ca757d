"""``include`` / ``exclude``: which spans, metrics or log records a processor acts on.

As in the collector: ``match_type`` is ``strict`` (equality) or ``regexp``
(Python ``re``, searched, not anchored, like RE2's MatchString); every field
given must match; a string field matches when any of its entries does; in
``attributes`` and ``resources`` every entry must match (key present and, when
``value`` is given, equal to it, or, with regexp, the value's text matching
it; a strict value matches only its own type: 1 is not 1.0 nor "1");
``libraries`` match when any entry does. An item is acted on when it matches
``include`` (if given) and does not match ``exclude`` (if given).

One config serves every signal of the pipelines naming the processor, so each
field applies where the data has it:

* ``services`` (the resource's ``service.name``), ``resources`` and
  ``libraries`` (instrumentation scope name and version): every signal;
* ``span_names``, ``span_kinds`` (``SPAN_KIND_CLIENT``, ...): spans;
* ``metric_names``: metrics (the metric's data points are then acted on);
* ``attributes``: span and log record attributes.

Data without a field cannot match it: ``include: {span_names: [x]}`` selects
no metric or log record, and the same ``exclude`` excludes none.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from relay import attrs
from relay.attributes.attraction import compile_regex, to_any_value, value_problem
from relay.attributes.values import scalar_text
from relay.errors import Problem
from relay.signals import Signal

_KIND_NAMES = {number: name for name, number in Span.SpanKind.items()}
_STRING_FIELDS = ("services", "span_names", "span_kinds", "metric_names")
_LIST_FIELDS = _STRING_FIELDS + ("libraries", "attributes", "resources")
_APPLIES = {
    "services": set(Signal), "resources": set(Signal), "libraries": set(Signal),
    "span_names": {Signal.TRACES}, "span_kinds": {Signal.TRACES},
    "metric_names": {Signal.METRICS},
    "attributes": {Signal.TRACES, Signal.LOGS},
}


@dataclass
class AttributeMatch:
    key: str
    value: Any = None

    def validate(self) -> list[Problem]:
        problems = [] if self.key else [Problem(("key",), "must not be empty")]
        if self.value is not None and (message := value_problem(self.value)):
            problems.append(Problem(("value",), message))
        return problems


@dataclass
class LibraryMatch:
    name: str
    version: str | None = None

    def validate(self) -> list[Problem]:
        return []


@dataclass
class MatchProperties:
    match_type: Literal["strict", "regexp"]
    services: list[str] = field(default_factory=list)
    span_names: list[str] = field(default_factory=list)
    span_kinds: list[str] = field(default_factory=list)
    metric_names: list[str] = field(default_factory=list)
    libraries: list[LibraryMatch] = field(default_factory=list)
    attributes: list[AttributeMatch] = field(default_factory=list)
    resources: list[AttributeMatch] = field(default_factory=list)

    def validate(self) -> list[Problem]:
        if not any(getattr(self, name) for name in _LIST_FIELDS):
            return [Problem((), "give at least one of " + ", ".join(f'"{n}"' for n in _LIST_FIELDS))]
        problems = []
        if self.match_type == "regexp":
            for path, text in self._patterns():
                try:
                    compile_regex(text)
                except re.error as error:
                    problems.append(Problem(path, f"invalid regular expression: {error}"))
            for name in ("attributes", "resources"):
                for index, entry in enumerate(getattr(self, name)):
                    if entry.value is not None and not isinstance(entry.value, str):
                        problems.append(Problem((name, str(index), "value"),
                                                'must be a string when match_type is "regexp"'))
        else:
            for index, kind in enumerate(self.span_kinds):
                if kind not in _KIND_NAMES.values():
                    problems.append(Problem(("span_kinds", str(index)), f'"{kind}" is not a span kind (valid: '
                                            + ", ".join(_KIND_NAMES.values()) + ")"))
        return problems

    def _patterns(self):
        """(path, text) of every string that match_type regexp compiles."""
        for name in _STRING_FIELDS:
            for index, text in enumerate(getattr(self, name)):
                yield (name, str(index)), text
        for index, library in enumerate(self.libraries):
            yield ("libraries", str(index), "name"), library.name
            if library.version is not None:
                yield ("libraries", str(index), "version"), library.version
        for name in ("attributes", "resources"):
            for index, entry in enumerate(getattr(self, name)):
                if isinstance(entry.value, str):
                    yield (name, str(index), "value"), entry.value


# --- compiled ----------------------------------------------------------------------------------------------

Test = Callable[[Any], bool]


def _every(_item) -> bool:
    return True


def _never(_item) -> bool:
    return False


def _strings(match_type: str, texts: list[str]) -> Callable[[str], bool]:
    if match_type == "strict":
        return frozenset(texts).__contains__
    searches = [compile_regex(text).search for text in texts]
    return lambda text: any(search(text) is not None for search in searches)


def _value_test(match_type: str, wanted: Any) -> Callable[[AnyValue], bool] | None:
    if wanted is None:
        return None  # the key's presence is enough
    if match_type == "strict":
        expected = to_any_value(wanted)
        return expected.__eq__  # AnyValue equality compares the kind too
    search = compile_regex(wanted).search

    def matches(value: AnyValue) -> bool:
        text = scalar_text(value)
        return text is not None and search(text) is not None
    return matches


def _attributes(match_type: str, entries: list[AttributeMatch]) -> Callable[[Any], bool]:
    tests = [(entry.key, _value_test(match_type, entry.value)) for entry in entries]

    def matches(kvs) -> bool:
        for key, test in tests:
            value = attrs.find(kvs, key)
            if value is None or (test is not None and not test(value)):
                return False
        return True
    return matches


def _libraries(match_type: str, entries: list[LibraryMatch]) -> Test:
    tests = [(_strings(match_type, [e.name]), None if e.version is None else _strings(match_type, [e.version]))
             for e in entries]
    return lambda scope: any(name(scope.name) and (version is None or version(scope.version))
                             for name, version in tests)


def _all_of(tests: list[Test]) -> Test:
    if not tests:
        return _every
    if len(tests) == 1:
        return tests[0]
    return lambda item: all(test(item) for test in tests)


def _service_name(resource) -> str:
    value = attrs.find(resource.attributes, "service.name")
    return "" if value is None else value.string_value


class Matcher:
    """One ``include`` or ``exclude`` block for one signal, as tests at the three levels of OTLP data."""

    def __init__(self, props: MatchProperties, signal: Signal):
        mt = props.match_type
        if any(getattr(props, name) and signal not in _APPLIES[name] for name in _LIST_FIELDS):
            self.resource = self.scope = self.item = _never
            return
        resource_tests = []
        if props.services:
            services = _strings(mt, props.services)
            resource_tests.append(lambda resource: services(_service_name(resource)))
        if props.resources:
            resources = _attributes(mt, props.resources)
            resource_tests.append(lambda resource: resources(resource.attributes))
        item_tests = []
        if props.span_names or props.metric_names:  # only the one naming this signal's items gets here
            names = _strings(mt, props.span_names or props.metric_names)
            item_tests.append(lambda item: names(item.name))
        if props.span_kinds:
            kinds = _strings(mt, props.span_kinds)
            item_tests.append(lambda span: kinds(_KIND_NAMES.get(span.kind, "")))
        if props.attributes:
            attributes = _attributes(mt, props.attributes)
            item_tests.append(lambda item: attributes(item.attributes))
        self.resource = _all_of(resource_tests)
        self.scope = _libraries(mt, props.libraries) if props.libraries else _every
        self.item = _all_of(item_tests)


class Selection:
    """``include`` and ``exclude`` compiled for one signal."""

    def __init__(self, include: MatchProperties | None, exclude: MatchProperties | None, signal: Signal):
        self.include = None if include is None else Matcher(include, signal)
        self.exclude = None if exclude is None else Matcher(exclude, signal)

    def chooser(self, resource, scope) -> Test | None:
        """The test choosing items under ``resource`` and ``scope``; None when it would choose none."""
        include, exclude = self.include, self.exclude
        if include is not None and not (include.resource(resource) and include.scope(scope)):
            return None
        wanted = _every if include is None else include.item
        if exclude is None or not (exclude.resource(resource) and exclude.scope(scope)):
            return wanted
        unwanted = exclude.item
        if unwanted is _every:
            return None
        if wanted is _every:
            return lambda item: not unwanted(item)
        return lambda item: wanted(item) and not unwanted(item)


def selection(include: MatchProperties | None, exclude: MatchProperties | None,
              signal: Signal) -> Selection | None:
    """None when there is nothing to filter, so callers can take the plain path."""
    return None if include is None and exclude is None else Selection(include, exclude, signal)
