"""The ``jaeger`` receiver: traces from Jaeger clients and agents, as the collector's jaegerreceiver.

Four protocols, each started only when named under ``protocols`` (as in the collector, which
serves none by default):

- ``grpc`` (14250): ``jaeger.api_v2.CollectorService/PostSpans``;
- ``thrift_http`` (14268): ``POST /api/traces``, a ``jaeger.thrift`` Batch in Thrift's binary
  protocol, answered 202 Accepted;
- ``thrift_compact`` (6831) and ``thrift_binary`` (6832): UDP, one ``Agent.emitBatch`` call per
  datagram, as a Jaeger agent takes them. UDP has no answer: what cannot be taken is counted
  and logged, never dropped silently.

Every batch is translated to OTLP (``translate``) before the pipeline sees it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from relay.component import Settings
from relay.errors import Problem
from relay.net import body
from relay.net.endpoints import endpoint_problem, split_endpoint
from relay.signals import Signal

TYPE = "jaeger"
SIGNALS = (Signal.TRACES,)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"protocols": {"grpc": {"endpoint": "127.0.0.1:14250"}}}

# The collector's defaults: its servers listen on localhost unless told otherwise.
DEFAULT_GRPC = "localhost:14250"
DEFAULT_THRIFT_HTTP = "localhost:14268"
DEFAULT_THRIFT_COMPACT = "localhost:6831"
DEFAULT_THRIFT_BINARY = "localhost:6832"


def _endpoint(endpoint: str) -> list[Problem]:
    message = endpoint_problem(endpoint)
    return [Problem(("endpoint",), message)] if message else []


@dataclass
class GrpcConfig:
    endpoint: str = DEFAULT_GRPC
    max_recv_msg_size_mib: int = 4

    def validate(self) -> list[Problem]:
        problems = _endpoint(self.endpoint)
        if not 0 < self.max_recv_msg_size_mib <= 2047:
            problems.append(Problem(("max_recv_msg_size_mib",), "must be between 1 and 2047"))
        return problems


@dataclass
class ThriftHttpConfig:
    endpoint: str = DEFAULT_THRIFT_HTTP
    # 0 means the default, as in the collector.
    max_request_body_size: int = body.DEFAULT_MAX_REQUEST_BODY_SIZE

    def body_limit(self) -> int:
        return body.body_limit(self.max_request_body_size)

    def validate(self) -> list[Problem]:
        problems = _endpoint(self.endpoint)
        if problem := body.size_problem(self.max_request_body_size):
            problems.append(problem)
        return problems


@dataclass
class UdpConfig:
    """The collector's UDP server options, with its defaults."""

    endpoint: str = ""
    # Datagrams read but not yet handled; past this, new ones are dropped (and counted).
    queue_size: int = 1000
    # A larger datagram is dropped (and counted): a Jaeger client splits its batches below it.
    max_packet_size: int = 65_000
    # Datagrams handled at once.
    workers: int = 10
    # The socket's receive buffer (SO_RCVBUF) in bytes; 0 leaves the system's default.
    socket_buffer_size: int = 0

    def validate(self) -> list[Problem]:
        problems = _endpoint(self.endpoint)
        for key in ("queue_size", "max_packet_size", "workers"):
            if getattr(self, key) <= 0:
                problems.append(Problem((key,), "must be positive"))
        if self.max_packet_size > 65_535:
            problems.append(Problem(("max_packet_size",), "must be at most 65535, the largest UDP datagram"))
        if self.socket_buffer_size < 0:
            problems.append(Problem(("socket_buffer_size",), "must not be negative (0 means the system's default)"))
        return problems


@dataclass
class CompactConfig(UdpConfig):
    endpoint: str = DEFAULT_THRIFT_COMPACT


@dataclass
class BinaryConfig(UdpConfig):
    endpoint: str = DEFAULT_THRIFT_BINARY


@dataclass
class Protocols:
    grpc: GrpcConfig | None = None
    thrift_http: ThriftHttpConfig | None = None
    thrift_compact: CompactConfig | None = None
    thrift_binary: BinaryConfig | None = None

    def named(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in ("grpc", "thrift_http", "thrift_compact", "thrift_binary")
                if getattr(self, name) is not None}

    def validate(self) -> list[Problem]:
        named = self.named()
        if not named:
            return [Problem((), "at least one protocol must be configured "
                                "(grpc, thrift_http, thrift_compact, thrift_binary)")]
        problems = []
        # TCP and UDP ports are apart; two servers of one transport cannot share a port.
        for transport in (("grpc", "thrift_http"), ("thrift_compact", "thrift_binary")):
            first, second = (named.get(name) for name in transport)
            if first is None or second is None or endpoint_problem(first.endpoint) or endpoint_problem(second.endpoint):
                continue
            at = split_endpoint(first.endpoint)
            if at == split_endpoint(second.endpoint) and at[1] != 0:
                problems.append(Problem((transport[1], "endpoint"), f"is the same as the {transport[0]} endpoint"))
        return problems


@dataclass
class Config:
    protocols: Protocols

    def validate(self) -> list[Problem]:
        return []


class JaegerReceiver:
    """The servers of the protocols configured, started together and stopped together."""

    def __init__(self, servers: list):
        self.servers = servers

    @property
    def ports(self) -> dict[str, int | None]:
        return {server.protocol: server.port for server in self.servers}

    async def start(self) -> None:
        started = []
        try:
            for server in self.servers:
                await server.start()
                started.append(server)
        except BaseException:
            # The service only stops what started, and this did not.
            await asyncio.gather(*(server.shutdown(0) for server in started))
            raise

    async def shutdown(self, grace: float = 5.0) -> None:
        await asyncio.gather(*(server.shutdown(grace) for server in self.servers))


def create(settings: Settings, config: Config, consumers: dict) -> JaegerReceiver:
    from relay.receivers.jaeger.grpc import GrpcServer
    from relay.receivers.jaeger.http import ThriftHttpServer
    from relay.receivers.jaeger.udp import UdpServer

    id_, telemetry = settings.id, settings.telemetry
    consumer = consumers[Signal.TRACES]
    protocols = config.protocols
    servers = []
    if protocols.grpc is not None:
        servers.append(GrpcServer(id_, protocols.grpc, consumer, telemetry))
    if protocols.thrift_http is not None:
        servers.append(ThriftHttpServer(id_, protocols.thrift_http, consumer, telemetry))
    if protocols.thrift_compact is not None:
        servers.append(UdpServer(id_, protocols.thrift_compact, consumer, telemetry, compact=True))
    if protocols.thrift_binary is not None:
        servers.append(UdpServer(id_, protocols.thrift_binary, consumer, telemetry, compact=False))
    return JaegerReceiver(servers)
