"""The ``otlp_http`` / ``otlphttp`` exporter: OTLP over HTTP to a downstream.

Each signal is POSTed to its own URL: ``endpoint`` plus the signal's path
(``/v1/traces``, ``/v1/metrics``, ``/v1/logs``, ``/v1development/profiles``), or the signal's own
``<signal>_endpoint``, used as given. The scheme decides TLS: ``https://``
URLs use it, ``http://`` URLs do not. ``auth: {authenticator: <id>}`` adds an
authenticator extension's header (``bearertokenauth``, or ``basicauth`` with
``client_auth``) to every POST, read per POST so that a rotated token is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from relay.component import Settings
from relay.config.decode import Duration
from relay.errors import Problem
from relay.exporters.helper.config import HelperSettings
from relay.exporters.helper.exporter import Exporter
from relay.net.auth import CLIENT, AuthConfig, authenticator_for
from relay.net.endpoints import url_problem
from relay.net.http_client import header_problems
from relay.net.tls import TLSClientConfig
from relay.signals import Signal

TYPE = "otlp_http"
ALIASES = ("otlphttp",)
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS, Signal.PROFILES)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"endpoint": "http://127.0.0.1:4318"}

SIGNAL_PATHS = {Signal.TRACES: "v1/traces", Signal.METRICS: "v1/metrics", Signal.LOGS: "v1/logs",
                Signal.PROFILES: "v1development/profiles"}



@dataclass(kw_only=True)
class Config(HelperSettings):
    endpoint: str = ""
    traces_endpoint: str = ""
    metrics_endpoint: str = ""
    logs_endpoint: str = ""
    profiles_endpoint: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    encoding: Literal["proto", "json"] = "proto"
    compression: Literal["gzip", "none", ""] = "gzip"
    tls: TLSClientConfig = field(default_factory=TLSClientConfig)
    # The collector's otlphttp default; HelperSettings' 5 s suits gRPC.
    timeout: Duration = Duration(30.0)
    auth: AuthConfig | None = None

    def extension_references(self) -> list[tuple[tuple[str, ...], str, str]]:
        refs = super().extension_references()
        return refs + [self.auth.reference()] if self.auth is not None else refs

    def validate(self) -> list[Problem]:
        problems = []
        keys = ("endpoint",) + tuple(f"{signal.value}_endpoint" for signal in SIGNALS)
        for key in keys:
            value = getattr(self, key)
            if value and (message := url_problem(value)):
                problems.append(Problem((key,), message))
        if not any(getattr(self, key) for key in keys):
            problems.append(Problem(("endpoint",), "required: a base URL (e.g. http://host:4318), or "
                                                   "traces_endpoint, metrics_endpoint and logs_endpoint"))
        credentials_in_url = any("@" in urlsplit(getattr(self, key)).netloc for key in keys
                                 if getattr(self, key) and not url_problem(getattr(self, key)))
        problems += header_problems(self.headers, credentials_in_url)
        return problems

    def url(self, signal: Signal) -> str:
        """Where ``signal`` is POSTed; "" when neither key gives a URL."""
        own = getattr(self, f"{signal.value}_endpoint")
        if own:
            return own
        if not self.endpoint:
            return ""
        return self.endpoint + ("" if self.endpoint.endswith("/") else "/") + SIGNAL_PATHS[signal]

    def signal_problems(self, signals) -> list[Problem]:
        """Problems for the ``signals`` the pipelines send here but no key gives a URL for."""
        return [Problem((f"{signal.value}_endpoint",),
                        f"no URL for {signal.value}: set endpoint or {signal.value}_endpoint")
                for signal in SIGNALS if signal in signals and not self.url(signal)]


def create(settings: Settings, config: Config, **hooks) -> Exporter:
    from relay.exporters.otlp_http.transport import HttpTransport

    id_, telemetry, host = settings.id, settings.telemetry, settings.host
    authenticator = authenticator_for(host, config.auth, "exporters", str(id_), role=CLIENT)
    transport = HttpTransport(id_, config, telemetry, settings.signals, authenticator)
    return Exporter(id_, transport, telemetry, timeout=config.timeout, settings=config, host=host, **hooks)
