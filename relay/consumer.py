"""Consumers: anything that takes an OTLP request and passes it on.

``consume(request)`` returns once the request is handed on for good (for an
exporter without a queue: once the downstream acknowledged it) and raises a
``relay.errors`` error otherwise. A consumer that changes the request in place
sets ``mutates_data`` so that fan-out gives it its own copy; one whose
``consume`` never waits (it only computes) sets ``runs_inline``, and fan-out
calls it directly rather than in a task of its own.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from relay.errors import PermanentError, RetryableError


class Consumer(Protocol):
    mutates_data: bool

    async def consume(self, request) -> None: ...


class Fanout:
    """Hands one request to several consumers concurrently.

    Every branch gets the data even when another fails. The combined error is
    retryable if any branch's was, so the client resends and the failed branch
    is not lost (the others may then see the request twice: at-least-once).
    """

    def __init__(self, consumers: list[Consumer]):
        if not consumers:
            raise ValueError("fan-out needs at least one consumer")
        self.consumers = list(consumers)
        self.mutates_data = False
        # Branches that change data get copies. Only when every branch changes
        # it may one of them keep the original: nobody else reads it then.
        self._copy = [c.mutates_data for c in self.consumers]
        if all(self._copy):
            self._copy[0] = False

        branches = list(zip(self.consumers, self._copy))
        self._inline = [(c, copy) for c, copy in branches if getattr(c, "runs_inline", False)]
        self._waiting = [(c, copy) for c, copy in branches if not getattr(c, "runs_inline", False)]

    async def consume(self, request) -> None:
        errors: list[BaseException] = []
        for consumer, copy in self._inline:
            try:
                await consumer.consume(_clone(request) if copy else request)
            except Exception as error:  # noqa: BLE001 - combined below, like the others
                errors.append(error)
        if len(self._waiting) == 1:
            consumer, copy = self._waiting[0]
            try:
                await consumer.consume(_clone(request) if copy else request)
            except Exception as error:  # noqa: BLE001
                errors.append(error)
        elif self._waiting:
            results = await asyncio.gather(
                *(c.consume(_clone(request) if copy else request) for c, copy in self._waiting),
                return_exceptions=True,
            )
            errors += [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise combine(errors)


def _clone(request):
    copy = type(request)()
    copy.CopyFrom(request)
    return copy


def combine(errors: list[BaseException]) -> BaseException:
    if len(errors) == 1:
        return errors[0]
    text = "; ".join(str(e) for e in errors)
    retryable = [e for e in errors if not isinstance(e, PermanentError)]
    if retryable:
        hints = [e.retry_after for e in retryable
                 if isinstance(e, RetryableError) and e.retry_after is not None]
        return RetryableError(text, max(hints) if hints else None)
    return PermanentError(text)


def fanout(consumers: list[Consumer]) -> Consumer:
    return consumers[0] if len(consumers) == 1 else Fanout(consumers)
