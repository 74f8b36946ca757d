"""Senders: the stack an exporter pushes each request through.

A sender has one method, ``async send(request)``, and wraps the next one.
``build`` is the single place that decides the order; the queue and retry
senders slot in above the timeout without changing any transport::

    [queue] -> [retry] -> timeout -> transport

Shutdown order, when those exist: stop retrying (a backoff in progress ends),
drain the queue giving each request one attempt, then close the transport.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from relay.errors import RetryableError


class Sender(Protocol):
    async def send(self, request) -> None: ...


class TimeoutSender:
    """Bounds one attempt; a timed-out attempt is retryable, as DEADLINE_EXCEEDED is."""

    def __init__(self, next_sender: Sender, timeout: float):
        self.next = next_sender
        self.timeout = timeout

    async def send(self, request) -> None:
        if self.timeout <= 0:
            return await self.next.send(request)
        try:
            async with asyncio.timeout(self.timeout):
                await self.next.send(request)
        except TimeoutError:
            raise RetryableError(f"export timed out after {self.timeout:g}s") from None


def build(transport: Sender, *, timeout: float) -> Sender:
    return TimeoutSender(transport, timeout)
