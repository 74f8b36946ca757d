"""The retry sender: exponential backoff with jitter, as the collector's ``retry_on_failure``.

Retryable failures are tried again after ``initial_interval``, growing by
``multiplier`` up to ``max_interval``, each delay spread by
``randomization_factor``. A downstream's own delay (gRPC ``RetryInfo``, HTTP
``Retry-After``) is honoured: the wait is the longer of the two. Past
``max_elapsed_time`` the last error is raised, as it is at once for a permanent
error. Shutdown ends a backoff early with ``ShutdownError``, so the queue above
can keep the request (on disk) or give it its last attempt (in memory).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Awaitable, Callable

from relay.errors import RetryableError, ShutdownError
from relay.exporters.helper.config import RetryConfig


class Backoff:
    """The delays of one request's retries; ``rng`` is injected so tests know them."""

    def __init__(self, config: RetryConfig, rng: Callable[[], float] = random.random):
        self.config = config
        self.rng = rng
        self.interval = float(config.initial_interval)

    def next_delay(self, hint: float | None) -> float:
        spread = self.config.randomization_factor * self.interval
        delay = self.interval - spread + 2 * spread * self.rng()
        self.interval = min(self.interval * self.config.multiplier, float(self.config.max_interval))
        return max(delay, hint) if hint else delay


class Stopper:
    """Ends every wait at once when set; the production waiter of the retry sender."""

    def __init__(self):
        self.event = asyncio.Event()

    def stop(self) -> None:
        self.event.set()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()

    async def wait(self, delay: float) -> bool:
        """Wait ``delay`` seconds; True if shutdown cut the wait short."""
        try:
            async with asyncio.timeout(delay):
                await self.event.wait()
        except TimeoutError:
            return False
        return True


class RetrySender:
    def __init__(self, next_sender, config: RetryConfig, stopper: Stopper, *,
                 clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], Awaitable[bool]] | None = None,
                 rng: Callable[[], float] = random.random):
        self.next = next_sender
        self.config = config
        self.stopper = stopper
        self.clock = clock
        self.wait = wait or stopper.wait
        self.rng = rng

    async def send(self, request) -> None:
        if not self.config.enabled:
            return await self.next.send(request)
        started = self.clock()
        backoff = Backoff(self.config, self.rng)
        while True:
            try:
                return await self.next.send(request)
            except RetryableError as error:
                failure = error
            if self.stopper.stopped:
                raise ShutdownError(f"not delivered before shutdown: {failure}") from failure
            delay = backoff.next_delay(failure.retry_after)
            limit = self.config.max_elapsed_time
            if limit and self.clock() - started + delay > limit:
                raise RetryableError(f"gave up after {limit:g}s of retries: {failure}") from failure
            if await self.wait(delay):
                raise ShutdownError(f"not delivered before shutdown: {failure}") from failure

