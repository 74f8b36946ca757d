"""Reading and writing OTLP attribute lists (``repeated KeyValue``) in place.

Attribute lists are short, so a linear scan beats building a dict per span.
Values cross this boundary as plain Python: str, bool, int, float, bytes,
list, dict.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def find(kvs, key: str) -> AnyValue | None:
    for kv in kvs:
        if kv.key == key:
            return kv.value
    return None


def get(kvs, key: str) -> Any:
    value = find(kvs, key)
    return None if value is None else to_python(value)


def first(kvs, keys) -> tuple[str, Any] | tuple[None, None]:
    """(key, value) of the first of ``keys`` present with a value, in ``keys`` order."""
    for key in keys:
        value = find(kvs, key)
        if value is not None and value.WhichOneof("value") is not None:
            return key, to_python(value)
    return None, None


def to_python(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [to_python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: to_python(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def fill(target: AnyValue, value: Any) -> None:
    """Write a Python value into an AnyValue (bool before int: bool is an int in Python)."""
    target.Clear()
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, (list, tuple)):
        target.array_value.SetInParent()
        for item in value:
            fill(target.array_value.values.add(), item)
    elif isinstance(value, dict):
        target.kvlist_value.SetInParent()
        for key, item in value.items():
            kv = target.kvlist_value.values.add()
            kv.key = key
            fill(kv.value, item)
    else:
        raise TypeError(f"cannot store a {type(value).__name__} in an attribute")


def put(kvs, key: str, value: Any) -> None:
    """Upsert ``key``: overwrite it where present, else append it."""
    existing = find(kvs, key)
    if existing is None:
        kv = kvs.add()
        kv.key = key
        existing = kv.value
    fill(existing, value)


def put_value(kvs, key: str, value: AnyValue) -> None:
    """Upsert ``key`` with a copy of an AnyValue, keeping its exact type."""
    existing = find(kvs, key)
    if existing is None:
        kv = kvs.add()
        kv.key = key
        existing = kv.value
    existing.CopyFrom(value)


def delete(kvs, predicate) -> int:
    """Remove every key for which ``predicate(key)`` holds; returns how many went."""
    doomed = [index for index, kv in enumerate(kvs) if predicate(kv.key)]
    for index in reversed(doomed):
        del kvs[index]
    return len(doomed)
