"""The ``memory_limiter`` processor: refuse data while the relay's memory is high.

Every ``check_interval`` the process's resident memory is compared with two
limits: at or above the soft limit (``limit - spike``) data is refused with a
retryable error, so clients see gRPC UNAVAILABLE / HTTP 503 and resend later;
at or above the hard limit a garbage collection is forced as well. The limits
are given in MiB (``limit_mib``, ``spike_limit_mib``) or as percentages of the
memory available to the process (``limit_percentage``, ``spike_limit_percentage``);
an unset spike is a fifth of the limit. Put it first in a pipeline, so that
refused data costs nothing further.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from relay.component import Settings
from relay.config.decode import Duration
from relay.errors import Problem, RetryableError
from relay.processors.memory_limiter.limiter import MemoryLimiter
from relay.signals import Signal

TYPE = "memory_limiter"
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS, Signal.PROFILES)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"check_interval": "1s", "limit_mib": 4000, "spike_limit_mib": 800}
REFUSED = "data refused due to high memory usage"

__all__ = ["TYPE", "SIGNALS", "Config", "create", "MemoryLimiter", "MemoryLimiterProcessor", "REFUSED"]


@dataclass
class Config:
    check_interval: Duration = Duration(0)
    limit_mib: int = 0
    spike_limit_mib: int = 0
    limit_percentage: int = 0
    spike_limit_percentage: int = 0

    def validate(self) -> list[Problem]:
        problems = []
        if self.check_interval <= 0:
            problems.append(Problem(("check_interval",), "must be greater than zero (1s is recommended)"))
        for key in ("limit_mib", "spike_limit_mib", "limit_percentage", "spike_limit_percentage"):
            if getattr(self, key) < 0:
                problems.append(Problem((key,), "must not be negative"))
        if problems:
            return problems
        if self.limit_mib and self.limit_percentage:
            return [Problem(("limit_percentage",), "cannot be combined with limit_mib: give one of the two")]
        if self.limit_mib:
            if self.spike_limit_percentage:
                problems.append(Problem(("spike_limit_percentage",),
                                        "goes with limit_percentage; with limit_mib use spike_limit_mib"))
            if self.spike_limit_mib >= self.limit_mib:
                problems.append(Problem(("spike_limit_mib",), "must be smaller than limit_mib"))
        elif self.limit_percentage:
            if self.spike_limit_mib:
                problems.append(Problem(("spike_limit_mib",),
                                        "goes with limit_mib; with limit_percentage use spike_limit_percentage"))
            if self.limit_percentage > 100:
                problems.append(Problem(("limit_percentage",), "must be between 1 and 100"))
            elif self.spike_limit_percentage >= self.limit_percentage:
                problems.append(Problem(("spike_limit_percentage",), "must be smaller than limit_percentage"))
        else:
            problems.append(Problem((), "limit_mib or limit_percentage must be greater than zero"))
        return problems


# One limiter per component id and relay (its telemetry), shared by the pipelines.
_shared: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()


def create(settings: Settings, config: Config, next_consumer, **injected) -> "MemoryLimiterProcessor":
    """``injected`` (tests): MemoryLimiter's usage_reader, total_reader, force and tick;
    used only by the first processor of an id, which builds the shared limiter."""
    id_, telemetry = settings.id, settings.telemetry
    limiters = _shared.setdefault(telemetry, {})
    limiter = limiters.get(id_)
    if limiter is None or limiter.config != config:
        limiter = limiters[id_] = MemoryLimiter(id_, config, **injected)
    return MemoryLimiterProcessor(id_, limiter, next_consumer, telemetry)


class MemoryLimiterProcessor:
    changes_data = False  # it passes requests on or refuses them

    def __init__(self, id_, limiter: MemoryLimiter, next_consumer, telemetry):
        self.id = id_
        self.limiter = limiter
        self.next = next_consumer
        self.mutates_data = next_consumer.mutates_data
        name = str(id_)
        self._counters = {}
        for signal in SIGNALS:
            item = signal.item
            accepted = telemetry.counter(f"otelcol_processor_memory_limiter_accepted_{item}",
                                         f"Number of {item} the memory limiter passed on", ["processor"])
            refused = telemetry.counter(f"otelcol_processor_memory_limiter_refused_{item}",
                                        f"Number of {item} the memory limiter refused for high memory usage",
                                        ["processor"])
            self._counters[signal.request_type] = (signal.count, accepted.labels(name), refused.labels(name))

    async def start(self) -> None:
        await self.limiter.start()

    async def shutdown(self) -> None:
        await self.limiter.shutdown()

    def check(self) -> None:
        self.limiter.check()

    async def consume(self, request) -> None:
        count, accepted, refused = self._counters[type(request)]
        if self.limiter.refusing:
            refused.inc(count(request))
            raise RetryableError(REFUSED)
        accepted.inc(count(request))
        await self.next.consume(request)
