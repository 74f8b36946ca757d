"""Span names from the semantic conventions, for the ``set_semconv_span_name`` editor.

The rules are the transform processor's: by span kind, the first of the HTTP,
RPC, database and messaging conventions whose identifying attribute the span
has gives the name (server: HTTP, RPC, messaging; client: HTTP, RPC,
database, messaging; producer and consumer: messaging); otherwise the name
stays. Each current attribute falls back to the older name it replaced
(``http.method`` for ``http.request.method`` and so on).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# The semantic-convention versions the collector's editor accepts.
OLDEST, NEWEST = (1, 37, 0), (1, 43, 0)

_SERVER, _CLIENT, _PRODUCER, _CONSUMER = 2, 3, 4, 5

# Current attribute -> the older one read in its absence.
OLDER = {
    "http.request.method": "http.method",
    "rpc.method": "rpc.grpc.method",
    "rpc.service": "rpc.grpc.service",
    "rpc.system.name": "rpc.system",
    "db.system.name": "db.system",
    "db.operation.name": "db.operation",
    "db.namespace": "db.name",
    "messaging.operation.name": "messaging.operation",
    "messaging.destination.name": "messaging.destination",
}

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")

Text = Callable[[Any], str]


def parse_version(text: str) -> tuple[int, int, int] | None:
    found = _VERSION.fullmatch(text)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2)), int(found.group(3) or 0)


def span_name(kind: int, name: str, attributes: dict[str, Any], text: Text) -> str:
    """The name the conventions give a span of ``kind`` with ``attributes``; ``name`` when none does.

    ``text`` turns an attribute value into the string the collector would write for it.
    """
    rules: tuple[Callable[[dict, Text], str], ...] = {
        _SERVER: (lambda a, t: _http(a, t, "http.route"), _rpc, _messaging),
        _CLIENT: (lambda a, t: _http(a, t, "url.template"), _rpc, _database, _messaging),
        _PRODUCER: (_messaging,),
        _CONSUMER: (_messaging,),
    }.get(kind, ())
    for rule in rules:
        derived = rule(attributes, text)
        if derived:
            return derived
    return name


def _get(attributes: dict, key: str) -> tuple[bool, Any]:
    if key in attributes:
        return True, attributes[key]
    older = OLDER.get(key)
    if older is not None and older in attributes:
        return True, attributes[older]
    return False, None


def _http(attributes: dict, text: Text, subject: str) -> str:
    has_method, method = _get(attributes, "http.request.method")
    if not has_method:
        return ""
    if subject in attributes:
        return f"{text(method)} {text(attributes[subject])}"
    return text(method)


def _rpc(attributes: dict, text: Text) -> str:
    has_system, system = _get(attributes, "rpc.system.name")
    if not has_system:
        return ""
    has_method, method = _get(attributes, "rpc.method")
    has_service, service = _get(attributes, "rpc.service")
    if has_method and has_service:
        return f"{text(service)}/{text(method)}"
    if has_method:
        return text(method)
    if has_service:
        return f"{text(service)}/*"
    return text(system)


def _address(attributes: dict, text: Text) -> str:
    if "server.address" not in attributes:
        return ""
    if "server.port" in attributes:
        return f"{text(attributes['server.address'])}:{text(attributes['server.port'])}"
    return text(attributes["server.address"])


def _database(attributes: dict, text: Text) -> str:
    has_system, system = _get(attributes, "db.system.name")
    if not has_system:
        return ""
    if "db.query.summary" in attributes:
        return text(attributes["db.query.summary"])
    has_operation, operation = _get(attributes, "db.operation.name")
    operation = text(operation) if has_operation else ""
    target = _database_target(attributes, text)
    if operation and target:
        return f"{operation} {target}"
    return operation or target or text(system)


def _database_target(attributes: dict, text: Text) -> str:
    has_namespace, namespace = _get(attributes, "db.namespace")
    namespace = text(namespace) if has_namespace else ""
    for key in ("db.collection.name", "db.stored_procedure.name"):
        if key in attributes:
            inner = text(attributes[key])
            return f"{namespace}.{inner}" if namespace else inner
    return namespace or _address(attributes, text)


def _messaging(attributes: dict, text: Text) -> str:
    if "messaging.system" not in attributes:
        return ""
    has_operation, operation = _get(attributes, "messaging.operation.name")
    destination = _destination(attributes, text)
    if has_operation and destination:
        return f"{text(operation)} {destination}"
    if destination:
        return destination
    if has_operation:
        return text(operation)
    return text(attributes["messaging.system"])


def _destination(attributes: dict, text: Text) -> str:
    # Only a true bool marks a temporary or anonymous destination.
    if attributes.get("messaging.destination.temporary") is True:
        return "(temporary)"
    if attributes.get("messaging.destination.anonymous") is True:
        return "(anonymous)"
    if "messaging.destination.template" in attributes:
        return text(attributes["messaging.destination.template"])
    has_name, name = _get(attributes, "messaging.destination.name")
    if has_name:
        return text(name)
    return _address(attributes, text)
