"""The bytes a request arrived as, for processors that read the wire form.

A receiver binds (request, bytes) while the request is being consumed.
``raw_bytes(request)`` returns them only while they still describe that very
request object: a processor that changes data in place calls ``changed()``
(or ``rebind()`` with the new wire form, when it can splice it), and a copy
made for a fan-out branch is a different object. Exporters send these bytes
instead of serializing again; everyone else serializes, so a stale payload is
never read.
"""

from __future__ import annotations

import contextvars

_current: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("relay_received", default=None)


def bind(request, data: bytes) -> contextvars.Token:
    return _current.set((request, data))


def rebind(request, data: bytes) -> None:
    """A processor that changed ``request`` and knows its new wire form (``data``) keeps it current."""
    _current.set((request, data))


def binding() -> tuple | None:
    return _current.get()


def unbind(token: contextvars.Token) -> None:
    _current.reset(token)


def changed() -> None:
    if _current.get() is not None:
        _current.set(None)


def raw_bytes(request) -> bytes | None:
    bound = _current.get()
    return bound[1] if bound is not None and bound[0] is request else None
