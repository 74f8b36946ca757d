"""The ``batch`` processor: the collector's batch processor, except that errors reach the client.

Requests of one signal gather in a pending batch, which is passed on when it
holds ``send_batch_size`` items (a trigger, not a cap), when ``timeout`` has
passed since its first item arrived (0: every request is passed on at once),
or at shutdown. With ``send_batch_max_size`` above 0 a batch is passed on in
chunks of at most that many items; a single larger request is split too.

Unlike the collector, whose ``ConsumeTraces`` returns as soon as the data is
queued and which only logs "Sender failed" when the next consumer refuses a
batch, ``consume`` here returns only once the batch carrying the request was
accepted downstream, and raises the next consumer's error otherwise. So a
client is acknowledged only for data that was passed on, and a failure
reaches it as a retryable or permanent status instead of being dropped.

Delivery is at-least-once: when one chunk of a split batch fails, every
contributor of that batch gets the error (retryable if any chunk's was), so
clients resend chunks that did go through; a client that gives up waiting
leaves its items in the batch, and they are still sent. Batches are sent
concurrently, each in a task of its own, so their order downstream is not
guaranteed; items keep their order within a batch.

After shutdown, requests go straight to the next consumer: components
downstream shut down later. Requests without any item hold nothing to batch:
they are acknowledged and not passed on.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.component import Settings
from relay.config.decode import Duration
from relay.errors import Problem
from relay.processors.batch.processor import BatchProcessor
from relay.signals import Signal

TYPE = "batch"
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"timeout": "1s", "send_batch_size": 1024}

__all__ = ["TYPE", "SIGNALS", "Config", "create", "BatchProcessor"]


@dataclass
class Config:
    send_batch_size: int = 8192
    timeout: Duration = Duration(0.2)
    send_batch_max_size: int = 0

    def validate(self) -> list[Problem]:
        problems = []
        for key in ("send_batch_size", "send_batch_max_size"):
            if getattr(self, key) < 0:
                problems.append(Problem((key,), f"must not be negative, got {getattr(self, key)}"))
        if self.timeout < 0:
            problems.append(Problem(("timeout",), f"must not be negative, got {self.timeout}s"))
        if 0 < self.send_batch_max_size < self.send_batch_size:
            problems.append(Problem(("send_batch_max_size",), (
                f"must be 0 (no limit) or at least send_batch_size ({self.send_batch_size}), "
                f"got {self.send_batch_max_size}")))
        return problems


def create(settings: Settings, config: Config, next_consumer) -> BatchProcessor:
    id_, telemetry = settings.id, settings.telemetry
    return BatchProcessor(id_, config, next_consumer, telemetry)
