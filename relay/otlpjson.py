"""OTLP/JSON codec.

OTLP/JSON is the proto3 JSON mapping with a few deviations, and only these
need code of our own: trace and span ids are hex rather than base64, enums
travel as integers, and unknown fields must be ignored so that senders on a
newer protocol version keep working. Everything else is delegated to
``google.protobuf.json_format``.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Callable

from google.protobuf import json_format
from google.protobuf.message import Message

__all__ = ["decode", "encode"]

# Byte width of every id field. The proto names are listed too because
# json_format accepts them on input, so a sender may use either spelling.
_ID_BYTES = {
    "traceId": 16,
    "trace_id": 16,
    "spanId": 8,
    "span_id": 8,
    "parentSpanId": 8,
    "parent_span_id": 8,
    # Profiles (v1development) write their ids in hex as well, as the collector's pdata does.
    "profileId": 16,
    "profile_id": 16,
}
# MessageToDict only ever emits the JSON names.
_JSON_ID_KEYS = frozenset(key for key in _ID_BYTES if "_" not in key)

_JSON_TYPE_NAMES = {
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


class _BadId(Exception):
    """Raised deep in the walk; collects the path while it unwinds so that
    the happy path never pays for building path strings."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.segments: list[str] = []

    def where(self) -> str:
        return "".join(reversed(self.segments)).removeprefix(".")


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _rewrite(node: Any, convert: Callable[[Any, str], Any], keys: frozenset | dict, inplace: bool) -> Any:
    """Return ``node`` with ``convert`` applied to the value of every key in
    ``keys``, at any depth.

    Ids sit at several depths in all three signals (spans, links, log records,
    exemplars), so matching by key name covers them all without knowing the
    schema. In OTLP, user-chosen names only ever appear as *values* (``key``
    of a KeyValue), never as object keys, so a key match is always the field.

    Unless ``inplace``, containers on the way to a change are copied rather
    than mutated, so a caller's dict is never modified.
    """
    if isinstance(node, dict):
        out = node
        for key, value in node.items():
            try:
                if key in keys:
                    new = convert(value, key)
                elif isinstance(value, (dict, list)):
                    new = _rewrite(value, convert, keys, inplace)
                else:
                    continue
            except _BadId as err:
                err.segments.append(f".{key}")
                raise
            if new is not value:
                if out is node and not inplace:
                    out = dict(node)
                # Replacing the value of an existing key is safe mid-iteration.
                out[key] = new
        return out
    if isinstance(node, list):
        out = node
        for index, value in enumerate(node):
            if not isinstance(value, (dict, list)):
                continue
            try:
                new = _rewrite(value, convert, keys, inplace)
            except _BadId as err:
                err.segments.append(f"[{index}]")
                raise
            if new is not value:
                if out is node and not inplace:
                    out = list(node)
                out[index] = new
        return out
    return node


def _hex_to_base64(value: Any, key: str) -> Any:
    # null and "" both mean "unset"; json_format already treats them so.
    if value is None or value == "":
        return value
    if not isinstance(value, str):
        raise _BadId(f"not a hex string (got a JSON {_json_type(value)})")
    width = _ID_BYTES[key]
    if len(value) != 2 * width:
        raise _BadId(f"expected {2 * width} hex characters, got {len(value)}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    # fromhex skips whitespace, so a right-length string can still be short.
    if len(raw) != width:
        raise _BadId("not a hex string")
    return base64.b64encode(raw).decode("ascii")


def _reject_constant(name: str) -> Any:
    # Python's json module accepts NaN and Infinity literals; JSON does not.
    raise ValueError(f"{name} is not valid JSON")


def _base64_to_hex(value: Any, key: str) -> Any:
    return base64.b64decode(value).hex()


_INT32 = (-(2**31), 2**31 - 1)
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def _check_shapes(node: dict, descriptor, path: str) -> None:
    """Refuse what ``ParseDict`` would quietly turn into something else.

    Unknown fields must be ignored (OTLP/JSON says so), and with that switch on,
    json_format also walks a string where an object belongs as if its letters
    were unknown keys, skips an unknown enum name, lets an out-of-range enum
    number wrap, and decodes malformed base64 to nothing. Each of those would
    forward data other than what was sent, so they are errors here.
    """
    fields = descriptor.fields_by_camelcase_name
    by_name = descriptor.fields_by_name
    seen: dict[str, str] = {}
    for key, value in node.items():
        field = fields.get(key) or by_name.get(key)
        if field is None:
            continue
        where = f"{path}.{key}" if path else key
        # Both spellings of one field in one object: ParseDict would keep the last and drop the rest.
        if field.name in seen:
            raise ValueError(f'{where}: the field is given twice (as "{seen[field.name]}" and "{key}")')
        seen[field.name] = key
        if value is None:
            continue
        if field.is_repeated:
            if not isinstance(value, list):
                raise ValueError(f"{where}: expected a JSON array, got a JSON {_json_type(value)}")
            for index, item in enumerate(value):
                _check_value(field, item, f"{where}[{index}]")
        else:
            _check_value(field, value, where)


def _check_value(field, value: Any, where: str) -> None:
    if field.type == field.TYPE_MESSAGE:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a JSON object, got a JSON {_json_type(value)}")
        _check_shapes(value, field.message_type, where)
    elif field.type == field.TYPE_ENUM:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"{where}: expected an enum number, got a JSON {_json_type(value)}")
        if isinstance(value, int) and not _INT32[0] <= value <= _INT32[1]:
            raise ValueError(f"{where}: enum value {value} is out of range")
        if isinstance(value, str) and value not in field.enum_type.values_by_name:
            raise ValueError(f'{where}: "{value[:64]}" is not a {field.enum_type.name} value')
    elif field.type == field.TYPE_BYTES:
        if not isinstance(value, str) or not _BASE64.fullmatch(value):
            raise ValueError(f"{where}: expected base64 bytes")


class _RepeatedKey(ValueError):
    pass


def _object_without_repeats(pairs: list) -> dict:
    """A JSON object, refusing a key given twice: json.loads would keep the last and drop the rest."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(f'the key "{key[:64]}" is given twice in one object')
            seen.add(key)
    return out


def decode(data: bytes | bytearray | memoryview | str | dict, message_class: type[Message]) -> Message:
    """Parse OTLP/JSON into a new ``message_class`` instance.

    ``data`` is a JSON document (bytes in any JSON-legal Unicode encoding, or
    str) or an already-parsed dict, which is left unmodified. Invalid input
    raises ``ValueError`` naming the problem and, where known, its path.
    """
    if isinstance(data, dict):
        tree, owned = data, False
    elif isinstance(data, (bytes, bytearray, memoryview, str)):
        try:
            tree = json.loads(
                bytes(data) if isinstance(data, memoryview) else data,
                parse_constant=_reject_constant,
                object_pairs_hook=_object_without_repeats,
            )
        except RecursionError:
            raise ValueError("malformed JSON: nested too deeply") from None
        except _RepeatedKey as err:
            raise ValueError(f"invalid OTLP/JSON: {err}") from None
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            raise ValueError(f"malformed JSON: {err}") from None
        owned = True
    else:
        raise TypeError(f"cannot decode OTLP/JSON from {type(data).__name__}")
    if not isinstance(tree, dict):
        raise ValueError(f"expected a JSON object at the top level, got a JSON {_json_type(tree)}")

    try:
        tree = _rewrite(tree, _hex_to_base64, _ID_BYTES, inplace=owned)
    except _BadId as err:
        raise ValueError(f"{err.where()}: {err.problem}") from None
    except RecursionError:
        raise ValueError("OTLP/JSON nested too deeply") from None

    message = message_class()
    try:
        _check_shapes(tree, message.DESCRIPTOR, "")
        json_format.ParseDict(tree, message, ignore_unknown_fields=True)
    # OverflowError: json_format lets an infinite float reach int() for enums.
    except (ValueError, json_format.ParseError, OverflowError) as err:
        if isinstance(err, UnicodeError):
            raise ValueError(f"invalid {message.DESCRIPTOR.name}: unpaired surrogate in a string") from None
        raise ValueError(f"invalid {message.DESCRIPTOR.name}: {err}") from None
    except (UnicodeError, SystemError) as err:
        # JSON escapes can smuggle in unpaired surrogates; the upb backend
        # reports those while looking up names as a SystemError wrapping a
        # UnicodeEncodeError. Anything else is a genuine fault.
        if not isinstance(err, UnicodeError) and not isinstance(err.__context__, UnicodeError):
            raise
        raise ValueError(f"invalid {message.DESCRIPTOR.name}: unpaired surrogate in a string") from None
    except RecursionError:
        raise ValueError(f"invalid {message.DESCRIPTOR.name}: nested too deeply") from None
    return message


def encode(message: Message, *, indent: int | None = None) -> bytes:
    """Serialise ``message`` as OTLP/JSON (UTF-8).

    Output is compact unless ``indent`` is given. Fields at their default
    value are omitted, which OTLP/JSON permits.
    """
    tree = json_format.MessageToDict(
        message,
        preserving_proto_field_name=False,
        use_integers_for_enums=True,
    )
    _rewrite(tree, _base64_to_hex, _JSON_ID_KEYS, inplace=True)
    separators = (",", ":") if indent is None else None
    return json.dumps(tree, ensure_ascii=False, indent=indent, separators=separators).encode("utf-8")
