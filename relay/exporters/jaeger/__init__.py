"""The ``jaeger`` exporter: traces to a Jaeger collector over gRPC (``api_v2``, port 14250).

Each OTLP request is translated (``translate``) into one Jaeger ``Batch`` per
resource and sent with ``CollectorService/PostSpans``, behind the queue, retry
and timeout every push exporter has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from relay.component import Settings
from relay.errors import Problem
from relay.exporters.helper.config import HelperSettings
from relay.exporters.helper.exporter import Exporter
from relay.jaeger.proto import DEFAULT_PORT
from relay.net.endpoints import endpoint_problem
from relay.net.headers import clean as clean_headers
from relay.net.tls import TLSClientConfig
from relay.signals import Signal

TYPE = "jaeger"
SIGNALS = (Signal.TRACES,)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"endpoint": "127.0.0.1:14250", "tls": {"insecure": True}}


@dataclass
class Config(HelperSettings):
    endpoint: str
    headers: dict[str, str] = field(default_factory=dict)
    tls: TLSClientConfig = field(default_factory=TLSClientConfig)
    # The collector's Jaeger exporter sends uncompressed unless told otherwise.
    compression: Literal["gzip", "none", ""] = "none"

    def validate(self) -> list[Problem]:
        problems = []
        host = self.endpoint.rpartition(":")[0]
        if endpoint_problem(self.endpoint) or not host or self.endpoint.startswith(("http://", "https://")):
            problems.append(Problem(("endpoint",), f'"{self.endpoint}" must be host:port '
                                                    f'(a Jaeger collector listens for gRPC on {DEFAULT_PORT})'))
        problems += clean_headers(self.headers, grpc=True)[1]
        return problems


def create(settings: Settings, config: Config, **hooks) -> Exporter:
    from relay.exporters.jaeger.transport import JaegerTransport

    id_, telemetry, host = settings.id, settings.telemetry, settings.host
    return Exporter(id_, JaegerTransport(id_, config), telemetry, timeout=config.timeout,
                    settings=config, host=host, **hooks)
