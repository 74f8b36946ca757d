"""The ``otlp`` receiver: OTLP/gRPC on 4317 and OTLP/HTTP on 4318.

Profiles (the collector's development signal) come in on the ``ProfilesService`` and on
``/v1development/profiles``, a fixed path as in the collector. The collector takes them only
behind its ``service.profilesSupport`` feature gate; the relay, which passes them through
unread, takes them whenever a ``profiles`` pipeline names the receiver.

Each protocol may require TLS (``tls``, with client certificates when
``client_ca_file`` is set) and credentials (``auth.authenticator``, the id
of a ``bearertokenauth`` extension), with the collector's keys.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from relay.component import Settings
from relay.config.decode import Duration
from relay.errors import Problem
from relay.net import body
from relay.net.auth import AuthConfig, authenticator_for
from relay.net.endpoints import endpoint_problem, split_endpoint
from relay.net.tls import TLSServerConfig
from relay.signals import Signal

TYPE = "otlp"
SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS, Signal.PROFILES)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"protocols": {"grpc": {"endpoint": "127.0.0.1:4317"}, "http": {"endpoint": "127.0.0.1:4318"}}}

# The collector's path for profiles; unlike the other three it is not a setting.
PROFILES_URL_PATH = "/v1development/profiles"


@dataclass
class GrpcConfig:
    endpoint: str = "0.0.0.0:4317"
    # The collector's default; the OTLP spec recommends servers accept up to 64 MiB.
    max_recv_msg_size_mib: int = 4
    max_concurrent_streams: int = 0
    # Keep the client's gRPC metadata for processors' from_context (as the collector's option).
    include_metadata: bool = False
    tls: TLSServerConfig | None = None
    auth: AuthConfig | None = None

    def validate(self) -> list[Problem]:
        problems = []
        if message := endpoint_problem(self.endpoint):
            problems.append(Problem(("endpoint",), message))
        if not 0 < self.max_recv_msg_size_mib <= 2047:
            problems.append(Problem(("max_recv_msg_size_mib",), "must be between 1 and 2047"))
        if self.max_concurrent_streams < 0:
            problems.append(Problem(("max_concurrent_streams",), "must not be negative"))
        return problems


@dataclass
class CorsConfig:
    # Empty: no CORS at all. Entries may hold "*" wildcards; "*" alone allows any origin.
    allowed_origins: list[str] = field(default_factory=list)
    allowed_headers: list[str] = field(default_factory=list)
    # Seconds a browser may cache a preflight answer; 0 sends no Access-Control-Max-Age.
    max_age: int = 0

    def validate(self) -> list[Problem]:
        problems = [Problem(("allowed_origins", str(i)), "must not be empty")
                    for i, origin in enumerate(self.allowed_origins) if not origin.strip()]
        if self.max_age < 0:
            problems.append(Problem(("max_age",), "must not be negative"))
        return problems


@dataclass
class HttpConfig:
    endpoint: str = "0.0.0.0:4318"
    traces_url_path: str = "/v1/traces"
    metrics_url_path: str = "/v1/metrics"
    logs_url_path: str = "/v1/logs"
    # Bounds the body on the wire and once inflated; 0 means the default, as in the collector.
    max_request_body_size: int = body.DEFAULT_MAX_REQUEST_BODY_SIZE
    # Keep the client's HTTP headers for processors' from_context.
    include_metadata: bool = False
    cors: CorsConfig | None = None
    tls: TLSServerConfig | None = None
    auth: AuthConfig | None = None
    # The collector's confighttp server timeouts and defaults; 0 is none, except that
    # read_header_timeout and idle_timeout then take read_timeout's value, as in Go.
    # What each one bounds is in connections.py.
    read_timeout: Duration = Duration(0.0)
    read_header_timeout: Duration = Duration(60.0)
    write_timeout: Duration = Duration(30.0)
    idle_timeout: Duration = Duration(60.0)
    # The relay's own key, not the collector's: connections open at once; 0 is half the
    # process's open-file limit, read at start, so that a flood of connections to this
    # port leaves descriptors for every other.
    max_connections: int = 0

    def url_path(self, signal: Signal) -> str:
        if signal is Signal.PROFILES:
            return PROFILES_URL_PATH
        # The collector adds a missing leading slash rather than refusing the path.
        path = getattr(self, f"{signal.value}_url_path")
        return path if path.startswith("/") else "/" + path

    def body_limit(self) -> int:
        return body.body_limit(self.max_request_body_size)

    def validate(self) -> list[Problem]:
        problems = []
        if message := endpoint_problem(self.endpoint):
            problems.append(Problem(("endpoint",), message))
        if problem := body.size_problem(self.max_request_body_size):
            problems.append(problem)
        for key, zero in (("read_timeout", "none"), ("read_header_timeout", "read_timeout's value"),
                          ("write_timeout", "none"), ("idle_timeout", "read_timeout's value")):
            if getattr(self, key) < 0:
                problems.append(Problem((key,), f"must not be negative (0 means {zero})"))
        if self.max_connections < 0:
            problems.append(Problem(("max_connections",),
                                    "must not be negative (0 means half the open-file limit)"))
        seen: dict[str, str] = {PROFILES_URL_PATH: "profiles path"}
        for signal in (Signal.TRACES, Signal.METRICS, Signal.LOGS):
            key = f"{signal.value}_url_path"
            path = self.url_path(signal)
            if any(c in path for c in "?# "):
                problems.append(Problem((key,), f'"{getattr(self, key)}" is not a URL path'))
            elif path in seen:
                problems.append(Problem((key,), f'"{path}" is already the {seen[path]}'))
            seen.setdefault(path, key)
        return problems


@dataclass
class Protocols:
    grpc: GrpcConfig | None = None
    http: HttpConfig | None = None

    def validate(self) -> list[Problem]:
        if self.grpc is None and self.http is None:
            return [Problem((), "at least one protocol must be configured (grpc, http)")]
        if (self.grpc is not None and self.http is not None
                and not endpoint_problem(self.grpc.endpoint) and not endpoint_problem(self.http.endpoint)):
            grpc_at, http_at = split_endpoint(self.grpc.endpoint), split_endpoint(self.http.endpoint)
            if grpc_at == http_at and grpc_at[1] != 0:
                return [Problem(("http", "endpoint"), "is the same as the grpc endpoint")]
        return []


@dataclass
class Config:
    protocols: Protocols

    def validate(self) -> list[Problem]:
        return []

    def extension_references(self) -> list[tuple[tuple[str, ...], str, str]]:
        """Each protocol's authenticator, for the loader to check against service::extensions."""
        return [protocol.auth.reference("protocols", name)
                for name, protocol in (("grpc", self.protocols.grpc), ("http", self.protocols.http))
                if protocol is not None and protocol.auth is not None]


class OtlpReceiver:
    """Both protocols of one receiver, started and stopped together."""

    def __init__(self, grpc, http):
        self.grpc = grpc
        self.http = http

    async def start(self) -> None:
        await self.grpc.start()
        try:
            await self.http.start()
        except BaseException:
            # The service only stops what started, and this did not.
            await self.grpc.shutdown(0)
            raise

    async def shutdown(self, grace: float = 5.0) -> None:
        await asyncio.gather(self.http.shutdown(grace), self.grpc.shutdown(grace))


def create(settings: Settings, config: Config, consumers: dict):
    """``host`` holds the extensions an ``auth.authenticator`` names; only needed when one does."""
    id_, telemetry, host = settings.id, settings.telemetry, settings.host
    grpc = http = None
    where = ("receivers", str(id_), "protocols")
    if config.protocols.grpc is not None:
        from relay.receivers.otlp.grpc import GrpcReceiver

        settings = config.protocols.grpc
        grpc = GrpcReceiver(id_, settings, consumers, telemetry,
                            authenticator=authenticator_for(host, settings.auth, *where, "grpc"))
    if config.protocols.http is not None:
        from relay.receivers.otlp.http import HttpReceiver

        settings = config.protocols.http
        http = HttpReceiver(id_, settings, consumers, telemetry,
                            authenticator=authenticator_for(host, settings.auth, *where, "http"))
    if grpc is not None and http is not None:
        return OtlpReceiver(grpc, http)
    return grpc or http
