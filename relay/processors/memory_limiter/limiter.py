"""The periodic memory check behind the ``memory_limiter`` processor.

One ``MemoryLimiter`` per component id, shared by every pipeline that names
it (as in the collector), so that pipelines refuse together and a forced
collection runs once per check, not once per pipeline. Processors only read
``refusing``; everything else happens in ``check()``, every check_interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Awaitable, Callable

from relay.processors.memory_limiter import usage
from relay.telemetry import component_logger

MIB = 1024 * 1024
# The longest wait between forced collections while they do not bring usage under
# the hard limit: memory held by live data (a queue behind a dead downstream) does
# not come back however often the collector runs, and each run costs CPU.
MAX_FORCE_INTERVAL = 30.0


@dataclass(frozen=True)
class Limits:
    hard: int  # bytes
    spike: int

    @property
    def soft(self) -> int:
        return self.hard - self.spike

    @classmethod
    def of(cls, hard: int, spike: int) -> "Limits":
        # The collector's default headroom: a fifth of the hard limit.
        return cls(hard, spike or hard // 5)


class MemoryLimiter:
    """Refcounted: the first ``start()`` begins checking, the last ``shutdown()`` stops it."""

    def __init__(self, id_, config, *, usage_reader: Callable[[], int] = usage.resident_bytes,
                 total_reader: Callable[[], int] = usage.total_memory,
                 force: Callable[[], None] = usage.release_memory,
                 tick: Callable[[float], Awaitable] = asyncio.sleep):
        self.id = id_
        self.config = config
        self.interval = float(config.check_interval)
        self.refusing = False
        self.limits: Limits | None = None
        self._usage = usage_reader
        self._total = total_reader
        self._force = force
        self._tick = tick
        self._log = component_logger(id_)
        self._users = 0
        self._task: asyncio.Task | None = None
        # Forced collections back off in whole checks: 1, 2, 4... up to the cap.
        self._max_gap = max(1, int(MAX_FORCE_INTERVAL // self.interval))
        self._gap = 1
        self._skip = 0

    def compute_limits(self) -> Limits:
        config = self.config
        if config.limit_mib:
            return Limits.of(config.limit_mib * MIB, config.spike_limit_mib * MIB)
        total = self._total()
        self._log.info("memory limits are a percentage of the total memory",
                       fields={"total_memory_mib": total // MIB, "limit_percentage": config.limit_percentage,
                               "spike_limit_percentage": config.spike_limit_percentage})
        return Limits.of(total * config.limit_percentage // 100, total * config.spike_limit_percentage // 100)

    async def start(self) -> None:
        if self._users == 0:
            self.limits = self.compute_limits()
            self._log.info("memory limiter configured", fields={
                "limit_mib": self.limits.hard // MIB, "spike_limit_mib": self.limits.spike // MIB,
                "soft_limit_mib": self.limits.soft // MIB, "check_interval": self.interval})
            self.check()  # so that the first request already meets the right state
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._users += 1

    async def shutdown(self) -> None:
        if self._users == 0:
            return
        self._users -= 1
        if self._users == 0 and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._tick(self.interval)
            try:
                self.check()
            except Exception:  # noqa: BLE001 - a failed check keeps the last state; the next may succeed
                self._log.exception("memory check failed")

    def check(self) -> None:
        """Measure once and set ``refusing``; above the hard limit, force a collection first."""
        limits = self.limits
        if limits is None:
            self.limits = limits = self.compute_limits()
        used = self._usage()
        if used >= limits.hard:
            used = self._maybe_force(used, limits)
        else:
            self._gap, self._skip = 1, 0
        refusing = used >= limits.soft
        if refusing != self.refusing:
            self.refusing = refusing
            fields = {"usage_mib": used // MIB, "soft_limit_mib": limits.soft // MIB,
                      "hard_limit_mib": limits.hard // MIB}
            if refusing:
                self._log.warning("memory usage is above the soft limit: refusing data", fields=fields)
            else:
                self._log.info("memory usage is back under the soft limit: accepting data", fields=fields)

    def _maybe_force(self, used: int, limits: Limits) -> int:
        if self._skip:
            self._skip -= 1
            return used
        self._force()
        after = self._usage()
        self._log.warning("memory usage is above the hard limit: forced a garbage collection",
                          fields={"usage_mib": used // MIB, "after_mib": after // MIB,
                                  "hard_limit_mib": limits.hard // MIB})
        if after >= limits.hard:
            self._skip = self._gap - 1
            self._gap = min(self._gap * 2, self._max_gap)
        else:
            self._gap, self._skip = 1, 0
        return after
