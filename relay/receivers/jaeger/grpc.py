"""Jaeger's gRPC collector API: ``jaeger.api_v2.CollectorService/PostSpans``.

Requests arrive as raw bytes and are parsed here, so a payload that does not parse is
answered INVALID_ARGUMENT (gRPC's own deserializer would surface it as an opaque INTERNAL),
as is a span whose ids are not 16 and 8 bytes. A refusal by the pipeline is answered by the
``relay.status`` table: UNAVAILABLE, with RetryInfo where a delay is known, for what may be
taken later. Oversize messages are refused by gRPC itself with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError

from relay import status
from relay.errors import InvalidDataError
from relay.jaeger import proto
from relay.net.endpoints import split_endpoint
from relay.receivers.jaeger.intake import Intake
from relay.telemetry import component_logger

TRANSPORT = "grpc"
_EMPTY_RESPONSE = proto.PostSpansResponse().SerializeToString()


class GrpcServer:
    protocol = "grpc"

    def __init__(self, id_, config, consumer, telemetry):
        self.config = config
        self.log = component_logger(id_)
        self.intake = Intake(id_, consumer, telemetry, TRANSPORT, self.log)
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        limit = self.config.max_recv_msg_size_mib * 1024 * 1024
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", 0)])
        handler = grpc.unary_unary_rpc_method_handler(self._post_spans)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(proto.SERVICE, {"PostSpans": handler}),))
        host, port = split_endpoint(self.config.endpoint)
        if ":" in host:  # an IPv6 literal needs its brackets back
            host = f"[{host}]"
        try:
            self.port = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as error:
            raise OSError(f"cannot listen on {self.config.endpoint}: {error}") from None
        await server.start()
        self._server = server
        self.log.info("Jaeger gRPC receiver listening", fields={"endpoint": f"{host}:{self.port}"})

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop taking new calls; calls in flight get ``grace`` seconds to finish."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def _post_spans(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request, failure = await self.intake.read(data, _read_batch, "the PostSpansRequest")
        if failure is not None:
            return await self._refuse(context, failure, 0)
        count, failure = await self.intake.deliver(request)
        if failure is not None:
            return await self._refuse(context, failure, count)
        return _EMPTY_RESPONSE

    async def _refuse(self, context, error: BaseException, count: int) -> bytes:
        code, retry_after = status.to_grpc(error)
        message = self.intake.refused(error, count, code.name)
        if retry_after is not None:
            context.set_trailing_metadata(status.retry_info_metadata(code, message, retry_after))
        await context.abort(code, message)
        return b""  # not reached: abort raises


def _read_batch(data: bytes):
    try:
        return proto.PostSpansRequest.FromString(data).batch
    except DecodeError as error:
        raise InvalidDataError(f"cannot parse PostSpansRequest: {error}") from None
