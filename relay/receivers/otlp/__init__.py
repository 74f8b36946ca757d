"""The ``otlp`` receiver: OTLP/gRPC on 4317 (OTLP/HTTP arrives with its own issue)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.config.load import endpoint_problem
from relay.errors import Problem
from relay.signals import Signal

TYPE = "otlp"
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS)


@dataclass
class GrpcConfig:
    endpoint: str = "0.0.0.0:4317"
    # The collector's default; the OTLP spec recommends servers accept up to 64 MiB.
    max_recv_msg_size_mib: int = 4
    max_concurrent_streams: int = 0
    # Keep the client's gRPC metadata for processors' from_context (as the collector's option).
    include_metadata: bool = False

    def validate(self) -> list[Problem]:
        problems = []
        if message := endpoint_problem(self.endpoint):
            problems.append(Problem(("endpoint",), message))
        if not 0 < self.max_recv_msg_size_mib <= 2047:
            problems.append(Problem(("max_recv_msg_size_mib",), "must be between 1 and 2047"))
        if self.max_concurrent_streams < 0:
            problems.append(Problem(("max_concurrent_streams",), "must not be negative"))
        return problems


_ABSENT = object()


@dataclass
class Protocols:
    grpc: GrpcConfig | None = None
    # Any, so that even an empty "http:" section is seen and reported.
    http: Any = _ABSENT

    def validate(self) -> list[Problem]:
        if self.http is not _ABSENT:
            return [Problem(("http",), 'protocol "http" (OTLP/HTTP) is not supported yet (supported: grpc)')]
        if self.grpc is None:
            return [Problem((), "at least one protocol must be configured (grpc)")]
        return []


@dataclass
class Config:
    protocols: Protocols

    def validate(self) -> list[Problem]:
        return []


def create(id_, config: Config, consumers: dict, telemetry):
    from relay.receivers.otlp.grpc import GrpcReceiver

    return GrpcReceiver(id_, config.protocols.grpc, consumers, telemetry)
