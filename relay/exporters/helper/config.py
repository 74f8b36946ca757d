"""The settings every push exporter shares, with the collector's names and defaults.

``sending_queue``, ``retry_on_failure`` and ``timeout`` are read by
``relay.exporters.helper.senders.build``; an exporter's Config embeds them
through ``HelperSettings``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from relay.config.decode import Duration
from relay.errors import Problem
from relay.retry import RetryConfig


@dataclass
class BatchConfig:
    """``sending_queue.batch``, the collector's defaults and checks. The queue's consumers merge
    queued requests into one export until ``min_size`` is reached or ``flush_timeout`` has passed
    since the batch's first request, and split what exceeds ``max_size`` (0: no limit)."""

    flush_timeout: Duration = Duration(0.2)
    min_size: int = 8192
    max_size: int = 0
    # Unset: the queue's sizer, or items where that counts requests.
    sizer: Literal["items", "bytes"] | None = None

    def validate(self) -> list[Problem]:
        problems = []
        if self.flush_timeout <= 0:
            problems.append(Problem(("flush_timeout",), "must be positive"))
        for name in ("min_size", "max_size"):
            if getattr(self, name) < 0:
                problems.append(Problem((name,), "must not be negative"))
        if 0 < self.max_size < self.min_size:
            problems.append(Problem(("max_size",), "must be at least min_size (or 0, no maximum)"))
        return problems


@dataclass
class QueueConfig:
    enabled: bool = True
    num_consumers: int = 10
    # Counted in ``sizer`` units: requests, items (spans, data points, log records) or bytes.
    queue_size: int = 1000
    sizer: Literal["requests", "items", "bytes"] = "requests"
    # The id of a ``file_storage`` extension: the queue then lives on disk.
    storage: str = ""
    # Full: wait for room (until the caller gives up or the relay stops) instead of refusing.
    block_on_overflow: bool = False
    # Unset: each queued request is sent as it is.
    batch: BatchConfig | None = None

    def validate(self) -> list[Problem]:
        problems = []
        if self.num_consumers < 1:
            problems.append(Problem(("num_consumers",), "must be at least 1"))
        if self.queue_size < 1:
            problems.append(Problem(("queue_size",), "must be at least 1"))
        return problems


@dataclass(kw_only=True)
class HelperSettings:
    """Mixed into an exporter's Config (as its last fields) for the three shared settings."""

    timeout: Duration = Duration(5.0)
    sending_queue: QueueConfig = field(default_factory=QueueConfig)
    retry_on_failure: RetryConfig = field(default_factory=RetryConfig)

    def validate(self) -> list[Problem]:
        """Run by decode for every exporter Config that embeds these settings."""
        if self.timeout < 0:
            return [Problem(("timeout",), "must not be negative")]
        return []

    def extension_references(self) -> list[tuple[tuple[str, ...], str, str]]:
        """(key path, extension id, required type) for the loader to check."""
        if self.sending_queue.enabled and self.sending_queue.storage:
            return [(("sending_queue", "storage"), self.sending_queue.storage, "file_storage")]
        return []
