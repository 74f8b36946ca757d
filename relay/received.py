"""The bytes a request arrived as, for processors that read the wire form.

A receiver binds (request, bytes) while the request is being consumed.
``raw_bytes(request)`` returns them only while they still describe that very
request object: a processor that changes data in place calls ``changed()``
(or ``rebind()`` with the new wire form, when it can splice it), and a copy
made for a fan-out branch is a different object. Exporters send these bytes
instead of serializing again; everyone else serializes, so a stale payload is
never read.

The pipeline graph makes this hold for every processor, not only those that
remember to call ``changed()``: it hands each processor an ``Exit`` as its next
consumer and calls it through ``Entered``. A request that leaves a processor
still bound as it was when it entered is unbound, unless the processor says it
does not change data (``changes_data = False``); a processor that bound a new
wire form (``rebind``) keeps it.
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


_entered: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("relay_entered", default=None)


class Entered:
    """A processor as its predecessor calls it: what was bound when it entered is kept for its ``Exit``."""

    __slots__ = ("processor", "mutates_data")

    def __init__(self, processor):
        self.processor = processor
        self.mutates_data = processor.mutates_data

    async def consume(self, request) -> None:
        token = _entered.set(_current.get())
        try:
            await self.processor.consume(request)
        finally:
            _entered.reset(token)


class Exit:
    """A processor's next consumer: a binding the processor left as it found it is dropped,
    since the processor may have changed the request in place (``changes``: set by the graph
    from the processor's ``changes_data``, True where it says nothing)."""

    __slots__ = ("next", "changes", "mutates_data")

    def __init__(self, next_consumer):
        self.next = next_consumer
        self.changes = True
        self.mutates_data = next_consumer.mutates_data

    async def consume(self, request) -> None:
        if self.changes:
            bound = _current.get()
            if bound is not None and bound is _entered.get():
                _current.set(None)
        await self.next.consume(request)
