"""OTLP/gRPC server: the Trace, Metrics and Logs ``Export`` methods.

Requests arrive as raw bytes and are parsed here, so a payload that does not
parse is answered INVALID_ARGUMENT in the protocol's terms (gRPC's own
deserializer would surface it as an opaque INTERNAL). Oversize messages are
refused by gRPC itself with RESOURCE_EXHAUSTED before they are read whole.
The client is acknowledged only after the pipeline has taken the data.

With ``auth``, a call without the authenticator's header (gRPC metadata keys
are lowercase) is answered UNAUTHENTICATED before its payload is parsed.
With ``tls``, the port serves TLS only (see ``security``).
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError

from relay import client, ids, received, status
from relay.net.endpoints import split_endpoint
from relay.errors import InvalidDataError, RelayError
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
        accepted = self.metrics.receiver_accepted[signal].labels(str(self.id), TRANSPORT)
        refused = self.metrics.receiver_refused[signal]
        receiver_id = str(self.id)
        include_metadata = self.config.include_metadata
        gate = self._auth

        async def export(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if gate is not None and not gate.allows(_text_metadata(context), signal.value,
                                                    grpc.StatusCode.UNAUTHENTICATED.name, context.peer()):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
            try:
                request = parse(data)
            except DecodeError as error:
                failure = InvalidDataError(f"cannot parse {signal.request_type.__name__}: {error}")
                return await self._refuse(context, failure, signal, 0)
            wrong = ids.problem(signal, request, data)
            if wrong is not None:
                failure = InvalidDataError(f"invalid {signal.request_type.__name__}: {wrong}")
                return await self._refuse(context, failure, signal, 0)
            count = signal.count(request, data)
            if count == 0:
                return b""
            token = client.bind(client.ClientInfo.from_pairs(context.invocation_metadata(), context.peer())
                                ) if include_metadata else None
            payload = received.bind(request, data)
            try:
                await consumer.consume(request)
            except Exception as error:  # noqa: BLE001 - classified once, here at the edge
                refused.labels(receiver_id, TRANSPORT, type(error).__name__).inc(count)
                return await self._refuse(context, error, signal, count)
            finally:
                received.unbind(payload)
                if token is not None:
                    client.unbind(token)
            accepted.inc(count)
            return b""

        return export

    async def _refuse(self, context, error: BaseException, signal: Signal, count: int) -> bytes:
        code, retry_after = status.to_grpc(error)
        message = status.describe(error)
        if not isinstance(error, RelayError):
            self.log.error("pipeline failed unexpectedly", exc_info=error,
                           fields={"signal": signal.value, "items": count})
            # The client gets no internals, only what to do about it.
            message = "internal error in the relay; retry later"
        else:
            self.log.warning("refused request", fields={"signal": signal.value, "items": count,
                                                         "status": code.name, "error": message})
        self.metrics.receiver_refused_requests.labels(str(self.id), TRANSPORT, signal.value, code.name).inc()
        if retry_after is not None:
            context.set_trailing_metadata(status.retry_info_metadata(code, message, retry_after))
        await context.abort(code, message)
        return b""  # not reached: abort raises


def _text_metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    # Binary (-bin) values are bytes and never credentials.
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
