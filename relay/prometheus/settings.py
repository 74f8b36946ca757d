"""Settings the Prometheus exporters share."""

from __future__ import annotations

from dataclasses import dataclass

from relay.errors import Problem


@dataclass
class ResourceToTelemetryConfig:
    enabled: bool = False

    def validate(self) -> list[Problem]:
        return []
