"""The ``zipkin`` receiver: Zipkin v2 (JSON and protobuf) and v1 JSON spans over HTTP, on 9411,
translated to OTLP traces as the collector's zipkinreceiver translates them.

Keys, as the collector's: ``endpoint`` (default ``localhost:9411``), ``parse_string_tags``
(default false: tags stay strings; true: "12", "1.5" and "true" become an int, a double and a
bool), and from its HTTP server settings ``max_request_body_size`` and ``tls`` (``cert_file``,
``key_file``, ``client_ca_file`` for mutual TLS). The TLS files are read once, at start: this
receiver does not look at them again, whatever ``reload_interval`` says.

What each endpoint takes and answers is in ``server``, the decoding in ``v2`` and ``v1``, the
translation in ``translate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.component import Settings
from relay.errors import Problem
from relay.net import body
from relay.net.endpoints import endpoint_problem
from relay.net.tls import TLSServerConfig
from relay.signals import Signal

TYPE = "zipkin"
SIGNALS = (Signal.TRACES,)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"endpoint": "127.0.0.1:9411"}



@dataclass
class Config:
    endpoint: str = "localhost:9411"
    parse_string_tags: bool = False
    # Bounds the body on the wire and once inflated; 0 means the default, as in the collector.
    max_request_body_size: int = body.DEFAULT_MAX_REQUEST_BODY_SIZE
    tls: TLSServerConfig | None = None

    def body_limit(self) -> int:
        return body.body_limit(self.max_request_body_size)

    def validate(self) -> list[Problem]:
        problems = []
        if message := endpoint_problem(self.endpoint):
            problems.append(Problem(("endpoint",), message))
        if problem := body.size_problem(self.max_request_body_size):
            problems.append(problem)
        return problems


def create(settings: Settings, config: Config, consumers: dict):
    from relay.receivers.zipkin.server import ZipkinReceiver

    return ZipkinReceiver(settings.id, config, consumers[Signal.TRACES], settings.telemetry)
