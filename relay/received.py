"""The bytes a request arrived as, for processors that read the wire form.

A receiver binds (request, bytes) while the request is being consumed.
``raw_bytes(request)`` returns them only while they still describe that very
request object: a processor that changes data in place calls ``changed()``,
and a copy made for a fan-out branch is a different object. Everyone else
serializes, so a stale payload is never read.
"""

from __future__ import annotations

import contextvars

_current: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("relay_received", default=None)


def bind(request, data: bytes) -> contextvars.Token:
    return _current.set((request, data))


def unbind(token: contextvars.Token) -> None:
    _current.reset(token)


def changed() -> None:
    if _current.get() is not None:
        _current.set(None)


def raw_bytes(request) -> bytes | None:
    bound = _current.get()
    return bound[1] if bound is not None and bound[0] is request else None
