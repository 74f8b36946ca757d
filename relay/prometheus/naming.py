"""OTLP names, units and attribute values as Prometheus names and label values.

The rules are the collector's (``prometheus/otlptranslator``, used by the contrib
prometheus exporter with underscore escaping), so that dashboards written against a
collector keep working against the relay.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from decimal import Decimal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

# What metric_name needs to know about a metric beyond its name and unit. The last
# three are spelled as the OTLP data kinds they stand for.
COUNTER = "counter"          # monotonic sum
GAUGE = "gauge"              # gauge (only these get "_ratio" for unit "1")
NON_MONOTONIC = "updowncounter"
HISTOGRAM = "histogram"
SUMMARY = "summary"

_UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes", "TiBy": "tibibytes",
    "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    "Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent",
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}

_NAME_SEPARATORS = re.compile(r"[^a-zA-Z0-9:]+")
_NOT_NAME_CHAR = re.compile(r"[^a-zA-Z0-9:]")
_NOT_NAME_OR_UNDERSCORE = re.compile(r"[^a-zA-Z0-9:_]+")
_NOT_NAME_OR_UNDERSCORE_CHAR = re.compile(r"[^a-zA-Z0-9:_]")
_UNDERSCORES = re.compile(r"__+")
_NOT_LABEL_CHAR = re.compile(r"[^a-zA-Z0-9]+")
VALID_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
VALID_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _tokens(text: str) -> list[str]:
    return [t for t in _NAME_SEPARATORS.split(text) if t]


def _clean_unit(unit: str) -> str:
    return _UNDERSCORES.sub("_", _NOT_NAME_CHAR.sub("_", unit)).removeprefix("_")


def _unit_tokens(unit: str, tokens: list[str]) -> list[str]:
    """The unit suffixes still to append: an annotation such as "{request}" gives none,
    and neither does a suffix the name already has as a token."""
    main_text, slash, per_text = unit.partition("/")
    main_text, per_text = main_text.strip(), per_text.strip()
    main = per = ""
    if main_text and not any(c in main_text for c in "{}"):
        main = _clean_unit(_UNITS.get(main_text, main_text))
    if slash and per_text and not any(c in per_text for c in "{}"):
        per = _clean_unit("per_" + _PER_UNITS.get(per_text, per_text))
    if main in tokens:
        main = ""
    if per == "per_":
        per = ""
    else:
        per = per.removesuffix("_")
        if per in tokens:
            per = ""
    if per:
        main = main.removesuffix("_")
    return [t for t in (main, per) if t]


@functools.lru_cache(maxsize=4096)
def metric_name(name: str, unit: str, kind: str, namespace: str = "", suffixes: bool = True) -> str:
    """The exposed family name ("" when nothing valid is left of ``name``).

    With suffixes the name is rebuilt from tokens: the unit is appended unless a
    token already spells it, every "total" token moves to the end of a counter, and
    a gauge in unit "1" ends in "ratio". ``namespace`` gets each character a metric
    name cannot hold replaced by "_" ("genops-relay" -> "genops_relay"): the collector
    joins it as written and the Prometheus client's underscore escaping, which a scrape
    asks for by default, replaces those characters in the exposed name.
    """
    if not suffixes:
        base = "_".join(t for t in _NOT_NAME_OR_UNDERSCORE.split(name) if t)
        if namespace:
            ns = "_".join(t for t in _NOT_NAME_OR_UNDERSCORE.split(namespace) if t)
            return _checked(f"{ns}_{base}" if base else "")
        return _checked("_" + base if base[:1].isdigit() else base)
    tokens = _tokens(name)
    tokens += _unit_tokens(unit, tokens)
    if kind == COUNTER:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if kind == GAUGE and unit == "1":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    if namespace:
        tokens.insert(0, _NOT_NAME_OR_UNDERSCORE_CHAR.sub("_", namespace))
    joined = "_".join(tokens)
    return _checked("_" + joined if joined[:1].isdigit() else joined)


def _checked(name: str) -> str:
    return name if name.strip("_") else ""


@functools.lru_cache(maxsize=8192)
def label_name(key: str) -> str:
    """The label an attribute key becomes ("" for a key with nothing usable in it).

    Runs of characters outside [a-zA-Z0-9] (underscores included) become one "_"; a
    leading digit gets "key_" and a leading underscore "key". The collector keeps a
    ``__reserved__`` key as written; here it is sanitized like any other, because
    Prometheus reserves the "__" prefix (``__name__`` would rename the series) and
    parsers refuse such labels in a scrape.
    """
    out = _NOT_LABEL_CHAR.sub("_", key)
    if out[:1].isdigit():
        out = "key_" + out
    elif out.startswith("_"):
        out = "key" + out
    return out if out.strip("_") else ""


def target_info_name(namespace: str) -> str:
    # The collector builds this one with its label namer, not its metric namer.
    prefix = label_name(namespace)
    return f"{prefix}_target_info" if prefix else "target_info"


def value_string(value: AnyValue) -> str:
    """An attribute value as label text, written as pcommon's Value.AsString writes it."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return go_float_f(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind in ("array_value", "kvlist_value"):
        return json.dumps(_raw(value), separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return ""


def _raw(value: AnyValue):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_raw(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind) if kind else None


def _special(v: float) -> str | None:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return None


def go_float_f(v: float) -> str:
    """Go's FormatFloat(v, 'f', -1, 64): shortest digits, never an exponent."""
    special = _special(v)
    if special is not None:
        return special
    text = format(Decimal(repr(v)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def go_float_g(v: float) -> str:
    """How the Go client writes ``le`` and ``quantile``: FormatFloat(v, 'g', -1, 64).

    Python's repr writes 1.0 and 1000000.0 where Go writes 1 and 1e+06; a dashboard
    selecting le="1" must find the bucket.
    """
    special = _special(v)
    if special is not None:
        return special
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    sign, digits, exponent = Decimal(repr(v)).normalize().as_tuple()
    text = "".join(map(str, digits))
    exp10 = len(digits) + exponent - 1
    minus = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"
    return minus + format(Decimal(repr(abs(v))).normalize(), "f")
