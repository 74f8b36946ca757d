"""One Zipkin v2 span as the decoders leave it, whatever it came in as (v2 JSON, v2 protobuf or
v1 JSON), checked: ids are bytes of the OTLP lengths and not zero, times are microseconds."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from relay.errors import InvalidDataError

KINDS = ("CLIENT", "SERVER", "PRODUCER", "CONSUMER")


@dataclass
class Endpoint:
    service_name: str = ""
    ipv4: str = ""
    ipv6: str = ""
    port: int = 0


@dataclass
class ZipkinSpan:
    trace_id: bytes
    id: bytes
    parent_id: bytes | None = None
    name: str = ""
    # One of KINDS, or "" where the span has none.
    kind: str = ""
    # Microseconds since the epoch; None where the span has no timestamp.
    timestamp: int | None = None
    duration: int = 0
    local_endpoint: Endpoint | None = None
    remote_endpoint: Endpoint | None = None
    # (microseconds since the epoch, value)
    annotations: list[tuple[int, str]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    debug: bool = False
    shared: bool = False


def hex_id(value, size: int, what: str) -> bytes:
    """An id from its hex form: at most ``size`` bytes' worth of digits, left-padded with zeros
    (as zipkin-go reads them), never zero."""
    if not isinstance(value, str):
        raise InvalidDataError(f"{what} must be a hex string, not {type(value).__name__}")
    if not 0 < len(value) <= 2 * size or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise InvalidDataError(f'{what} "{value[:80]}" is not 1 to {2 * size} hex digits')
    raw = bytes.fromhex(value.rjust(2 * size, "0"))
    if not any(raw):
        raise InvalidDataError(f"{what} is zero")
    return raw


def hex_parent(value, what: str) -> bytes | None:
    """A parent span id; absent, empty or all zeros is no parent (a root span)."""
    if value in (None, "") or (isinstance(value, str) and value.strip("0") == "" and 0 < len(value) <= 16):
        return None
    return hex_id(value, 8, what)


def raw_id(value: bytes, sizes: tuple[int, ...], size: int, what: str) -> bytes:
    """An id from protobuf bytes of one of ``sizes``, left-padded to ``size``, never zero."""
    if len(value) not in sizes:
        raise InvalidDataError(f"{what} has {len(value)} bytes (expected {' or '.join(map(str, sizes))})")
    if not any(value):
        raise InvalidDataError(f"{what} is zero")
    return value.rjust(size, b"\0")


def address(value, version: int, what: str) -> str:
    """An IP address in its text form; ``value`` is text (JSON) or packed bytes (protobuf)."""
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        shown = value.hex() if isinstance(value, bytes) else str(value)[:80]
        raise InvalidDataError(f'{what} "{shown}" is not an IPv{version} address') from None
    if parsed.version != version:
        if version == 6:
            return str(parsed)  # an IPv4 address written in the ipv6 field is still an address
        raise InvalidDataError(f'{what} "{parsed}" is not an IPv4 address')
    return str(parsed)
