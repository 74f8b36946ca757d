"""The OTTL contexts: which paths each one has, and how to walk a request through them.

A walk yields one reused ``Item`` per telemetry item, holding the protos every
path of that context may reach (its own item, plus the resource, scope and,
for data points, the metric, for span events, the span above it; for profiles, the request's
dictionary). Compiled statements read it when called, so nothing is allocated per item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint

from relay.signals import Signal


class EvalError(Exception):
    """A statement failed on one item at run time (a wrong type, a bad index)."""


class Item:
    __slots__ = ("dictionary", "item", "metric", "resource", "scope", "span")

    def __init__(self):
        self.resource = self.scope = self.metric = self.span = self.item = self.dictionary = None


@dataclass(frozen=True)
class Field:
    """One path of a context. ``kind`` "map" marks an attribute list, "any" an AnyValue."""

    get: Callable[[Any], Any]
    set: Callable[[Any, Any], None] | None = None
    kind: str = "scalar"


def _getter(names: tuple[str, ...]) -> Callable[[Any], Any]:
    if len(names) == 1:
        name = names[0]
        return lambda obj: getattr(obj, name)
    outer, name = names[0], names[1]
    return lambda obj: getattr(getattr(obj, outer), name)


def _typed(path: str, types: tuple[type, ...], what: str) -> Field:
    names = tuple(path.split("."))
    get = _getter(names)
    owner = _getter(names[:-1]) if len(names) > 1 else (lambda obj: obj)
    last = names[-1]

    def set_(obj, value):
        # bool is an int in Python, but never a valid value for an int field in OTTL.
        if not isinstance(value, types) or isinstance(value, bool):
            raise EvalError(f"{path} takes {what}, got {type_name(value)}")
        try:
            setattr(owner(obj), last, value)
        except (ValueError, TypeError) as error:
            raise EvalError(f"{path}: {error}") from None

    return Field(get, set_)


def _string(path: str) -> Field:
    return _typed(path, (str,), "a string")


def _int(path: str) -> Field:
    return _typed(path, (int,), "an int")


def _read_only(path: str) -> Field:
    return Field(_getter(tuple(path.split("."))))


def _hex(name: str) -> Field:
    return Field(lambda obj: getattr(obj, name).hex())


_ATTRIBUTES = Field(lambda obj: obj.attributes, kind="map")

_METRIC_TYPES = {None: 0, "gauge": 1, "sum": 2, "histogram": 3, "exponential_histogram": 4, "summary": 5}


def _metric_type(metric) -> int:
    return _METRIC_TYPES[metric.WhichOneof("data")]


def _temporality(metric) -> int:
    kind = metric.WhichOneof("data")
    return getattr(metric, kind).aggregation_temporality if kind in ("sum", "histogram",
                                                                     "exponential_histogram") else 0


def _monotonic(metric) -> bool:
    return metric.WhichOneof("data") == "sum" and metric.sum.is_monotonic


def _number_value(which: str) -> Callable[[Any], Any]:
    def get(point):
        if type(point) is NumberDataPoint and point.WhichOneof("value") == which:
            return getattr(point, which)
        return None
    return get


def _profile_attributes(item: Item) -> tuple:
    """A profile's attributes, looked up in the request's dictionary (a profile holds only indices
    into its attribute table). A read-only view: only the filter, which reads, takes profiles."""
    table, strings = item.dictionary.attribute_table, item.dictionary.string_table
    out = []
    for index in item.item.attribute_indices:
        if not 0 <= index < len(table):
            raise EvalError(f"profile.attributes: index {index} is not in the dictionary's attribute table")
        entry = table[index]
        if not 0 <= entry.key_strindex < len(strings):
            raise EvalError(f"profile.attributes: key index {entry.key_strindex} is not in the string table")
        out.append(KeyValue(key=strings[entry.key_strindex], value=entry.value))
    return tuple(out)


def _profile_field(name: str) -> Field:
    return Field(lambda item: getattr(item.item, name))


@dataclass(frozen=True)
class Context:
    name: str
    fields: dict[str, Field]
    # Contexts above this one whose paths it may use, prefixed ("resource.attributes").
    parents: tuple[str, ...]
    # Which part of an Item this context's own fields read.
    locate: Callable[[Item], Any]


CONTEXTS: dict[str, Context] = {c.name: c for c in (
    Context("resource", {
        "attributes": _ATTRIBUTES,
        "dropped_attributes_count": _read_only("dropped_attributes_count"),
    }, (), lambda item: item.resource),
    Context("scope", {
        "name": _string("name"),
        "version": _string("version"),
        "attributes": _ATTRIBUTES,
    }, ("resource",), lambda item: item.scope),
    Context("span", {
        "name": _string("name"),
        "kind": _int("kind"),
        "attributes": _ATTRIBUTES,
        "status.code": _int("status.code"),
        "status.message": _string("status.message"),
        "trace_state": _string("trace_state"),
        "start_time_unix_nano": _int("start_time_unix_nano"),
        "end_time_unix_nano": _int("end_time_unix_nano"),
        "trace_id.string": _hex("trace_id"),
        "span_id.string": _hex("span_id"),
        "parent_span_id.string": _hex("parent_span_id"),
        "dropped_attributes_count": _read_only("dropped_attributes_count"),
    }, ("resource", "scope"), lambda item: item.span),
    Context("spanevent", {
        "name": _string("name"),
        "time_unix_nano": _int("time_unix_nano"),
        "attributes": _ATTRIBUTES,
        "dropped_attributes_count": _read_only("dropped_attributes_count"),
    }, ("resource", "scope", "span"), lambda item: item.item),
    Context("metric", {
        "name": _string("name"),
        "description": _string("description"),
        "unit": _string("unit"),
        "type": Field(_metric_type),
        "aggregation_temporality": Field(_temporality),
        "is_monotonic": Field(_monotonic),
    }, ("resource", "scope"), lambda item: item.metric),
    Context("datapoint", {
        "attributes": _ATTRIBUTES,
        "start_time_unix_nano": _int("start_time_unix_nano"),
        "time_unix_nano": _int("time_unix_nano"),
        "value_int": Field(_number_value("as_int")),
        "value_double": Field(_number_value("as_double")),
    }, ("resource", "scope", "metric"), lambda item: item.item),
    Context("log", {
        "body": Field(lambda record: record.body, kind="any"),
        "attributes": _ATTRIBUTES,
        "severity_text": _string("severity_text"),
        "severity_number": _int("severity_number"),
        "time_unix_nano": _int("time_unix_nano"),
        "observed_time_unix_nano": _int("observed_time_unix_nano"),
        "trace_id.string": _hex("trace_id"),
        "span_id.string": _hex("span_id"),
        "dropped_attributes_count": _read_only("dropped_attributes_count"),
    }, ("resource", "scope"), lambda item: item.item),
    # Profiles read the whole Item: their attributes live in the request's dictionary.
    Context("profile", {
        "attributes": Field(_profile_attributes, kind="map"),
        "time_unix_nano": _profile_field("time_unix_nano"),
        "duration_unix_nano": _profile_field("duration_nano"),
        "period": _profile_field("period"),
        "profile_id.string": Field(lambda item: item.item.profile_id.hex()),
        "original_payload_format": _profile_field("original_payload_format"),
        "dropped_attributes_count": _profile_field("dropped_attributes_count"),
    }, ("resource", "scope"), lambda item: item),
)}

# The scope is "instrumentation_scope" in paths of the pre-0.120 form and "scope" in the newer one.
PREFIXES = {"resource": "resource", "scope": "scope", "instrumentation_scope": "scope", "span": "span",
            "spanevent": "spanevent", "metric": "metric", "datapoint": "datapoint", "log": "log",
            "profile": "profile"}

# Outermost first: an inferred context is the innermost one a statement names.
BY_SIGNAL: dict[Signal, tuple[str, ...]] = {
    Signal.TRACES: ("resource", "scope", "span", "spanevent"),
    Signal.METRICS: ("resource", "scope", "metric", "datapoint"),
    Signal.LOGS: ("resource", "scope", "log"),
    Signal.PROFILES: ("resource", "scope", "profile"),
}

ENUMS: dict[str, int] = {
    **{f"SPAN_KIND_{k}": v for v, k in enumerate(
        ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"))},
    **{f"STATUS_CODE_{k}": v for v, k in enumerate(("UNSET", "OK", "ERROR"))},
    **{f"METRIC_DATA_TYPE_{k}": v for v, k in enumerate(
        ("NONE", "GAUGE", "SUM", "HISTOGRAM", "EXPONENTIAL_HISTOGRAM", "SUMMARY"))},
    **{f"AGGREGATION_TEMPORALITY_{k}": v for v, k in enumerate(("UNSPECIFIED", "DELTA", "CUMULATIVE"))},
    "SEVERITY_NUMBER_UNSPECIFIED": 0,
    **{f"SEVERITY_NUMBER_{level}{'' if n == 1 else n}": 4 * index + n
       for index, level in enumerate(("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"))
       for n in range(1, 5)},
}


def walk(context: str, signal: Signal, request) -> Iterator[Item]:
    """Every item of ``context`` in ``request``; the same Item object, refilled each time."""
    resources_field, scopes_field, items_field = signal.layout
    item = Item()
    if signal is Signal.PROFILES:
        item.dictionary = request.dictionary
    for resource_group in getattr(request, resources_field):
        item.resource = resource_group.resource
        if context == "resource":
            item.item = item.resource
            yield item
            continue
        for scope_group in getattr(resource_group, scopes_field):
            item.scope = scope_group.scope
            if context == "scope":
                item.item = item.scope
                yield item
                continue
            for element in getattr(scope_group, items_field):
                if context == "datapoint":
                    item.metric = element
                    for point in data_points(element):
                        item.item = point
                        yield item
                    continue
                if context == "spanevent":
                    item.span = element
                    for event in element.events:
                        item.item = event
                        yield item
                    continue
                item.item = element
                if signal is Signal.METRICS:
                    item.metric = element
                elif signal is Signal.TRACES:
                    item.span = element
                yield item


def data_points(metric):
    """The repeated data points of a metric of any type (none for a metric without data)."""
    kind = metric.WhichOneof("data")
    return getattr(metric, kind).data_points if kind else ()


def type_name(value: Any) -> str:
    if value is None:
        return "nil"
    return {bool: "bool", int: "int", float: "float", str: "string", bytes: "bytes", list: "list",
            dict: "map"}.get(type(value), type(value).__name__)
