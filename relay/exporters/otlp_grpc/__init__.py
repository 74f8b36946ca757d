"""The ``otlp`` / ``otlp_grpc`` exporter: OTLP/gRPC to a downstream endpoint.

``auth: {authenticator: <id>}`` adds an authenticator extension's header
(``bearertokenauth``, or ``basicauth`` with ``client_auth``) to every call's
metadata, read per call so that a rotated token is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from relay.component import Settings
from relay.errors import Problem
from relay.exporters.helper.config import HelperSettings
from relay.exporters.helper.exporter import Exporter
from relay.net.auth import CLIENT, AuthConfig, authenticator_for
from relay.net.endpoints import endpoint_problem, split_target
from relay.net.headers import clean as clean_headers
from relay.net.tls import TLSClientConfig
from relay.signals import Signal

TYPE = "otlp_grpc"
ALIASES = ("otlp",)
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS, Signal.PROFILES)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"endpoint": "127.0.0.1:4317", "tls": {"insecure": True}}


@dataclass
class Config(HelperSettings):
    endpoint: str
    headers: dict[str, str] = field(default_factory=dict)
    tls: TLSClientConfig = field(default_factory=TLSClientConfig)
    compression: Literal["gzip", "none", ""] = "gzip"
    auth: AuthConfig | None = None
    # Larger requests are split by resource, scope and item before sending: the gRPC default
    # a collector receives, 4 MiB. Enrichment can make a request grow past what arrived.
    max_request_size: int = 4 * 1024 * 1024

    def extension_references(self) -> list[tuple[tuple[str, ...], str, str]]:
        refs = super().extension_references()
        return refs + [self.auth.reference()] if self.auth is not None else refs

    def validate(self) -> list[Problem]:
        problems = []
        target, _ = split_target(self.endpoint)
        if endpoint_problem(target):
            problems.append(Problem(("endpoint",), f'"{self.endpoint}" must be host:port '
                                                    '(optionally with an http:// or https:// scheme)'))
        if self.max_request_size < 1024:
            problems.append(Problem(("max_request_size",), "must be at least 1024 bytes"))
        return problems + clean_headers(self.headers, grpc=True)[1]


def create(settings: Settings, config: Config, **hooks) -> Exporter:
    from relay.exporters.otlp_grpc.transport import GrpcTransport

    id_, telemetry, host = settings.id, settings.telemetry, settings.host
    authenticator = authenticator_for(host, config.auth, "exporters", str(id_), role=CLIENT)
    return Exporter(id_, GrpcTransport(id_, config, telemetry, authenticator), telemetry, timeout=config.timeout,
                    settings=config, host=host, **hooks)
