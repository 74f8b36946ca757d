"""The retry sender: exponential backoff with jitter, as the collector's ``retry_on_failure``,
for the exporters (``relay.exporters.helper.senders``) and the budget webhook alike.

Retryable failures are tried again after ``initial_interval``, growing by
``multiplier`` up to ``max_interval``, each delay spread by
``randomization_factor``. A downstream's own delay (gRPC ``RetryInfo``, HTTP
``Retry-After``) is honoured: the wait is the longer of the two. Past
``max_elapsed_time`` the last error is raised, as it is at once for a permanent
error. Shutdown ends a backoff early with ``ShutdownError``, so the queue above
can keep the request (on disk) or give it its last attempt (in memory).

Two limits serve senders whose data goes stale (an alert an hour late is worth little):
``max_attempts`` gives up after that many attempts in all, and ``hint_limit`` caps how long a
downstream's own delay is waited.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from relay.config.decode import Duration
from relay.errors import Problem, RetryableError, ShutdownError


@dataclass
class RetryConfig:
    enabled: bool = True
    initial_interval: Duration = Duration(5.0)
    max_interval: Duration = Duration(30.0)
    # 0 retries for ever. Past it a request is dropped (counted and logged).
    max_elapsed_time: Duration = Duration(300.0)
    multiplier: float = 1.5
    randomization_factor: float = 0.5

    def validate(self) -> list[Problem]:
        problems = []
        if self.initial_interval <= 0:
            problems.append(Problem(("initial_interval",), "must be positive"))
        if self.max_interval < self.initial_interval:
            problems.append(Problem(("max_interval",), "must not be below initial_interval"))
        if self.max_elapsed_time < 0:
            problems.append(Problem(("max_elapsed_time",), "must not be negative (0 retries for ever)"))
        if self.multiplier < 1:
            problems.append(Problem(("multiplier",), "must be at least 1"))
        if not 0 <= self.randomization_factor < 1:
            problems.append(Problem(("randomization_factor",), "must be in [0, 1)"))
        return problems


class Backoff:
    """The delays of one request's retries; ``rng`` is injected so tests know them."""

    def __init__(self, config: RetryConfig, rng: Callable[[], float] = random.random,
                 hint_limit: float | None = None):
        self.config = config
        self.rng = rng
        self.interval = float(config.initial_interval)
        self.hint_limit = hint_limit

    def next_delay(self, hint: float | None) -> float:
        spread = self.config.randomization_factor * self.interval
        delay = self.interval - spread + 2 * spread * self.rng()
        self.interval = min(self.interval * self.config.multiplier, float(self.config.max_interval))
        if hint and self.hint_limit is not None:
            hint = min(hint, self.hint_limit)
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
                 rng: Callable[[], float] = random.random,
                 max_attempts: int = 0, hint_limit: float | None = None):
        self.next = next_sender
        self.config = config
        self.stopper = stopper
        self.clock = clock
        self.wait = wait or stopper.wait
        self.rng = rng
        self.max_attempts = max_attempts  # 0: as many as max_elapsed_time allows
        self.hint_limit = hint_limit

    async def send(self, request) -> None:
        if not self.config.enabled:
            return await self.next.send(request)
        started = self.clock()
        backoff = Backoff(self.config, self.rng, self.hint_limit)
        attempts = 0
        while True:
            attempts += 1
            try:
                return await self.next.send(request)
            except RetryableError as error:
                failure = error
            if attempts == self.max_attempts:
                raise RetryableError(f"gave up after {attempts} attempts: {failure}") from failure
            if self.stopper.stopped:
                raise ShutdownError(f"not delivered before shutdown: {failure}") from failure
            delay = backoff.next_delay(failure.retry_after)
            limit = self.config.max_elapsed_time
            if limit and self.clock() - started + delay > limit:
                raise RetryableError(f"gave up after {limit:g}s of retries: {failure}") from failure
            if await self.wait(delay):
                raise ShutdownError(f"not delivered before shutdown: {failure}") from failure

