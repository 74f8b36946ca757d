"""Senders: the stack an exporter pushes each request through.

A sender has one method, ``async send(request)``, and wraps the next one.
``build`` is the single place that decides the order::

    queue -> retry -> timeout -> transport

The queue acknowledges once a request is stored and delivers it from its own
tasks; without a queue (``sending_queue.enabled: false``) the caller waits for
retry and timeout and gets the final error.

Shutdown order (``Stack.shutdown``): stop retrying (a backoff in progress ends
at once), drain the queue giving each request one attempt, keep what is left
on disk (or report it lost, in memory), then close the transport.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable, Protocol

from relay.errors import RetryableError
from relay.exporters.helper.config import QueueConfig, RetryConfig
from relay.exporters.helper.queue import QueueSender
from relay.retry import RetrySender, Stopper


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


@dataclass
class Stack:
    """The built senders: ``deliver`` is retry -> timeout -> transport; ``queue`` may sit on top."""

    deliver: Sender
    stopper: Stopper
    queue: QueueSender | None = None

    async def shutdown(self) -> None:
        self.stopper.stop()
        if self.queue is not None:
            await self.queue.close()


def build(transport: Sender, *, timeout: float, retry: RetryConfig | None = None,
          queue: QueueConfig | None = None, make_queue: Callable[[Sender], QueueSender] | None = None,
          **retry_hooks) -> Stack:
    stopper = Stopper()
    sender: Sender = TimeoutSender(transport, timeout)
    if retry is not None and retry.enabled:
        sender = RetrySender(sender, retry, stopper, **retry_hooks)
    stack = Stack(sender, stopper)
    if queue is not None and queue.enabled and make_queue is not None:
        stack.queue = make_queue(sender)
    return stack
