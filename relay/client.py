"""What a receiver knows about the client that sent the request being processed.

Receivers with ``include_metadata: true`` set it for the duration of one
request; processors read it with ``current()`` (the collector's client.Info).
A context variable carries it, so it follows the request through fan-out
tasks without being threaded through every call.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from urllib.parse import unquote


@dataclass(frozen=True)
class ClientInfo:
    # Keys lowercased, as gRPC metadata and HTTP/2 headers are; a key may repeat.
    metadata: dict[str, tuple[str, ...]] = field(default_factory=dict)
    address: str = ""

    def get(self, key: str) -> tuple[str, ...]:
        return self.metadata.get(key.lower(), ())

    @classmethod
    def from_pairs(cls, pairs, address: str = "") -> "ClientInfo":
        """From gRPC-style (key, value) pairs and a peer ("ipv4:10.0.0.1:5000" or "host:port")."""
        metadata: dict[str, list[str]] = {}
        for key, value in pairs or ():
            if isinstance(value, bytes):  # binary "-bin" metadata is not text
                continue
            metadata.setdefault(key.lower(), []).append(value)
        return cls({k: tuple(v) for k, v in metadata.items()}, peer_host(address) if address else "")


def peer_host(address: str) -> str:
    """The IP of a gRPC peer ("ipv4:10.0.0.1:5000", "ipv6:[::1]:5000") or a "host:port"."""
    scheme, sep, rest = address.partition(":")
    if sep and scheme in ("ipv4", "ipv6"):
        address = unquote(rest)  # newer gRPC writes the IPv6 brackets as %5B / %5D
    if address.startswith("["):
        end = address.find("]")
        return address[1:end] if end > 0 else address
    host, sep, port = address.partition(":")
    # More than one colon without brackets is a bare IPv6 address, which has no port.
    return host if sep and port.isdigit() else address


_EMPTY = ClientInfo()
_current: contextvars.ContextVar[ClientInfo] = contextvars.ContextVar("relay_client", default=_EMPTY)


def current() -> ClientInfo:
    return _current.get()


def bind(info: ClientInfo) -> contextvars.Token:
    return _current.set(info)


def unbind(token: contextvars.Token) -> None:
    _current.reset(token)


def from_context(source: str) -> str | None:
    """The value of a ``from_context`` source: ``metadata.<key>`` or ``client.address``.

    Several values of one key are joined with ";", as the collector does.
    """
    info = current()
    if source == "client.address":
        return info.address or None
    if source.startswith("metadata."):
        values = info.get(source[len("metadata."):])
        return ";".join(values) if values else None
    return None
