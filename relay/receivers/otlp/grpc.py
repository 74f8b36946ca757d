"""OTLP/gRPC server: the Trace, Metrics and Logs ``Export`` methods.

Requests arrive as raw bytes and are parsed here, so a payload that does not
parse is answered INVALID_ARGUMENT in the protocol's terms (gRPC's own
deserializer would surface it as an opaque INTERNAL). Oversize messages are
refused by gRPC itself with RESOURCE_EXHAUSTED before they are read whole.
The client is acknowledged only after the pipeline has taken the data; what
happens between parsing and answering is the shared ``intake``'s.

With ``auth``, a call without the authenticator's header (gRPC metadata keys
are lowercase) is answered UNAUTHENTICATED before its payload is parsed.
With ``tls``, the port serves TLS only (see ``security``).
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError

from relay import status
from relay.errors import InvalidDataError
from relay.intake import Intake
from relay.net.endpoints import split_endpoint
from relay.receivers.otlp.security import UNAUTHENTICATED_MESSAGE, AuthGate, grpc_server_credentials
from relay.signals import Signal
from relay.telemetry import component_logger

TRANSPORT = "grpc"


class GrpcReceiver:
    def __init__(self, id_, config, consumers: dict, telemetry, authenticator=None):
        self.id = id_
        self.config = config
        self.consumers = consumers
        self.metrics = telemetry
        self.log = component_logger(id_)
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._auth = (AuthGate(id_, authenticator, telemetry, TRANSPORT, self.log)
                      if authenticator is not None else None)

    async def start(self) -> None:
        limit = self.config.max_recv_msg_size_mib * 1024 * 1024
        options = [("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", 0)]
        if self.config.max_concurrent_streams:
            options.append(("grpc.max_concurrent_streams", self.config.max_concurrent_streams))
        credentials = None
        if self.config.tls is not None:
            # Before anything listens: an unusable certificate stops the start, naming the file.
            credentials = grpc_server_credentials(
                self.config.tls, ("receivers", str(self.id), "protocols", "grpc", "tls"), self.log)
        server = grpc.aio.server(options=options)
        for signal, consumer in self.consumers.items():
            handler = grpc.unary_unary_rpc_method_handler(self._export_handler(signal, consumer))
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(signal.service, {"Export": handler}),))
        host, port = split_endpoint(self.config.endpoint)
        # split_endpoint strips an IPv6 literal's brackets; gRPC needs them back
        # ("::1:4317" would parse as the address ::0.1.0.0 on the default port).
        if ":" in host:
            host = f"[{host}]"
        try:
            if credentials is not None:
                self.port = server.add_secure_port(f"{host}:{port}", credentials)
            else:
                self.port = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as error:
            raise OSError(f"cannot listen on {self.config.endpoint}: {error}") from None
        await server.start()
        self._server = server
        self.log.info("OTLP/gRPC receiver listening", fields={
            "endpoint": f"{host}:{self.port}", "tls": credentials is not None,
            **({"auth": self.config.auth.authenticator} if self._auth is not None else {})})

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop taking new calls; calls in flight get ``grace`` seconds to finish."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    def _export_handler(self, signal: Signal, consumer):
        parse = signal.request_type.FromString
        intake = Intake(self.id, signal, consumer, self.metrics, TRANSPORT, self.log, self.config.include_metadata)
        gate = self._auth

        async def export(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if gate is not None and not await gate.allows(_text_metadata(context), signal.value,
                                                          grpc.StatusCode.UNAUTHENTICATED.name, context.peer()):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
            try:
                request = parse(data)
            except DecodeError as error:
                failure = InvalidDataError(f"cannot parse {signal.request_type.__name__}: {error}")
                return await _refuse(context, intake, failure, 0)
            failure = intake.check(request, data)
            if failure is not None:
                return await _refuse(context, intake, failure, 0)
            count, failure = await intake.deliver(request, data, context.invocation_metadata() or (), context.peer())
            if failure is not None:
                return await _refuse(context, intake, failure, count)
            return b""

        return export


async def _refuse(context, intake: Intake, error: BaseException, count: int) -> bytes:
    code, retry_after = status.to_grpc(error)
    message = intake.refusal(error, count, code.name)
    if retry_after is not None:
        context.set_trailing_metadata(status.retry_info_metadata(code, message, retry_after))
    await context.abort(code, message)
    return b""  # not reached: abort raises


def _text_metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    # Binary (-bin) values are bytes and never credentials.
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
