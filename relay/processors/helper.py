"""Processors are pure functions from request to request; this wraps one as a consumer.

A processor function returns the (possibly changed) request, or ``None`` when
nothing is left to pass on. The wrapper chains it to the next consumer, so the
function itself never awaits, counts or handles downstream errors. After a
function that changes data, the bytes the request arrived as are marked stale
(``relay.received``) unless the function bound the new wire form itself.
"""

from __future__ import annotations

from typing import Callable

from relay import received


class FunctionProcessor:
    mutates_data = True

    def __init__(self, id_, process: Callable, next_consumer, *, mutates: bool = True):
        self.id = id_
        self.process = process
        self.next = next_consumer
        self.changes_data = mutates
        self.mutates_data = mutates or next_consumer.mutates_data

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume(self, request) -> None:
        before = received.binding()
        result = self.process(request)
        if self.changes_data and received.binding() is before:
            received.changed()  # the bytes the request arrived as no longer describe it
        if result is not None:
            await self.next.consume(result)
