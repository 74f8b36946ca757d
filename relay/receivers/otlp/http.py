"""OTLP/HTTP server: POST an export request to /v1/traces, /v1/metrics or /v1/logs.

A body is binary protobuf (``application/x-protobuf``) or OTLP/JSON
(``application/json``), optionally gzip or deflate compressed. The answer is
in the request's own content type: an empty Export*ServiceResponse once the
pipeline has taken the data, else a google.rpc.Status whose HTTP code comes
from ``relay.status.to_http`` (a retryable refusal carries Retry-After when
the pipeline named a delay). As in the collector, an unsupported
Content-Encoding is 400, another content type 415 and another method 405.
Bodies are bounded on the wire and once inflated (see ``body``). What happens
between decoding and answering is the shared ``intake``'s, as for gRPC.

With ``auth``, every request but a CORS preflight must carry the
authenticator's header: without it the answer is 401 with
``WWW-Authenticate``, before the path is routed or the body read.
With ``tls``, the port serves HTTPS only (see ``security``). How many
connections are open at once and how long each may take is ``connections``'s
business (the collector's ``read_header_timeout``, ``read_timeout``,
``write_timeout`` and ``idle_timeout``, and the relay's ``max_connections``).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from relay import httpserver, otlpjson, status
from relay.errors import InvalidDataError, TooLargeError
from relay.intake import Intake
from relay.net import body
from relay.net.endpoints import split_endpoint
from relay.receivers.otlp.connections import ConnectionGuard
from relay.receivers.otlp.cors import Cors
from relay.receivers.otlp.security import UNAUTHENTICATED_MESSAGE, AuthGate, HttpServerTls
from relay.signals import Signal
from relay.telemetry import component_logger

TRANSPORT = "http"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_UNSUPPORTED_MEDIA = f"415 unsupported media type, supported: [{JSON}, {PROTOBUF}]"


class HttpReceiver:
    def __init__(self, id_, config, consumers: dict, telemetry, authenticator=None):
        self.id = id_
        self.config = config
        self.metrics = telemetry
        self.log = component_logger(id_)
        self.port: int | None = None
        self.limit = config.body_limit()
        cors = config.cors
        self._cors = (Cors(cors.allowed_origins, cors.allowed_headers, cors.max_age)
                      if cors is not None and cors.allowed_origins else None)
        self._runner: web.ServerRunner | None = None
        self._guard: ConnectionGuard | None = None
        self._in_flight: set[asyncio.Task] = set()
        self._routes = {config.url_path(signal): self._export_handler(signal, consumer)
                        for signal, consumer in consumers.items()}
        self._signals = {config.url_path(signal): signal.value for signal in consumers}
        self._auth = (AuthGate(id_, authenticator, telemetry, TRANSPORT, self.log)
                      if authenticator is not None else None)

    async def start(self) -> None:
        host, port = split_endpoint(self.config.endpoint)
        tls = None
        if self.config.tls is not None:
            # Before anything listens: an unusable certificate stops the start, naming the file.
            tls = HttpServerTls(self.config.tls, ("receivers", str(self.id), "protocols", "http", "tls"), self.log)
        guard = ConnectionGuard(self.id, self.config, self.metrics, self.log)
        # The low-level server: one dict lookup routes a request. Bodies are
        # inflated here, within the size limit, so aiohttp must not do it first.
        server = guard.server(self._dispatch, auto_decompress=False, access_log=None)
        runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        try:
            self.port = await guard.listen(host, port, tls.context if tls is not None else None)
        except OSError as error:
            await runner.cleanup()
            raise OSError(f"cannot listen on {self.config.endpoint}: {error}") from None
        self._runner, self._guard = runner, guard
        limits = guard.limits
        shown = f"[{host}]" if ":" in host else host
        self.log.info("OTLP/HTTP receiver listening", fields={
            "endpoint": f"{shown}:{self.port}", "tls": tls is not None,
            "max_connections": limits.max_connections,
            **({"auth": self.config.auth.authenticator} if self._auth is not None else {})})
        if limits.configured_cap and limits.file_limit and limits.configured_cap >= limits.file_limit:
            self.log.warning("max_connections is not below the open-file limit: the relay runs out of "
                             "descriptors first, for every port", fields={
                                 "max_connections": limits.configured_cap, "open_file_limit": limits.file_limit})

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting at once; requests in flight get ``grace`` seconds to finish, then are cancelled."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._guard.close()
        # Idle connections first, then the wait for the requests in flight.
        await httpserver.stop(runner, self._in_flight, grace)

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        headers = request.headers
        preflight = (request.method == "OPTIONS" and "Origin" in headers
                     and "Access-Control-Request-Method" in headers)
        # A browser sends no credentials with a preflight: it asks whether it may send them.
        if self._auth is not None and not preflight and not await self._auth.allows(
                headers, self._signals.get(request.path, ""), "401", request.remote or ""):
            return self._unauthenticated(request)
        export = self._routes.get(request.path)
        if export is None:
            return web.Response(status=404, text="404 page not found")
        if request.method == "POST":
            return await export(request)
        if preflight and self._cors is not None:
            return web.Response(status=204, headers=self._cors.preflight_headers(
                headers["Origin"], headers["Access-Control-Request-Method"],
                headers.get("Access-Control-Request-Headers", "")))
        return web.Response(status=405, text="405 method not allowed, supported: [POST]",
                            headers={"Allow": "POST"})

    def _export_handler(self, signal: Signal, consumer):
        request_type = signal.request_type
        parse = request_type.FromString
        type_name = request_type.__name__
        success = {PROTOBUF: signal.response_type().SerializeToString(),
                   JSON: otlpjson.encode(signal.response_type())}
        intake = Intake(self.id, signal, consumer, self.metrics, TRANSPORT, self.log, self.config.include_metadata)
        limit = self.limit
        cors = self._cors
        in_flight = self._in_flight

        async def read(request: web.BaseRequest, media: str):
            data = await body.read_request(request, limit)
            if media == PROTOBUF:
                try:
                    message = parse(data)
                except DecodeError as error:
                    raise InvalidDataError(f"cannot parse {type_name}: {error}") from None
            else:
                try:
                    message, data = otlpjson.decode(data, request_type), None
                except ValueError as error:
                    raise InvalidDataError(f"cannot parse {type_name} as OTLP/JSON: {error}") from None
            failure = intake.check(message, data)
            if failure is not None:
                raise failure
            return message, data

        async def export(request: web.BaseRequest) -> web.Response:
            extra = cors.response_headers(request.headers.get("Origin")) if cors is not None else {}
            media = request.content_type
            if media != PROTOBUF and media != JSON:
                return self._unsupported_media(intake, media, extra)
            task = asyncio.current_task()
            in_flight.add(task)
            try:
                try:
                    message, data = await read(request, media)
                except (InvalidDataError, TooLargeError) as error:
                    return _refuse(intake, error, 0, media, extra)
                except ConnectionError:
                    # The client went away mid-body: no one is left to answer.
                    self.log.debug("client went away before sending its whole request",
                                   fields={"signal": signal.value})
                    return web.Response(status=400)
                # Only protobuf is the wire form an exporter may forward as is (data is None for JSON).
                count, failure = await intake.deliver(message, data, request.headers.items(), request.remote or "")
                if failure is not None:
                    return _refuse(intake, failure, count, media, extra)
                return web.Response(body=success[media], headers={"Content-Type": media, **extra})
            finally:
                in_flight.discard(task)

        return export

    def _unauthenticated(self, request: web.BaseRequest) -> web.Response:
        headers = {"WWW-Authenticate": self._auth.challenge}
        if self._cors is not None:
            # So that a browser's script may read the refusal.
            headers.update(self._cors.response_headers(request.headers.get("Origin")))
        media = request.content_type
        if media not in (PROTOBUF, JSON):
            return web.Response(status=401, text="401 " + UNAUTHENTICATED_MESSAGE, headers=headers)
        reply = status_pb2.Status(code=status.StatusCode.UNAUTHENTICATED.value[0], message=UNAUTHENTICATED_MESSAGE)
        return web.Response(status=401, headers={"Content-Type": media, **headers},
                            body=reply.SerializeToString() if media == PROTOBUF else otlpjson.encode(reply))

    def _unsupported_media(self, intake: Intake, media: str, extra: dict) -> web.Response:
        intake.refusal(InvalidDataError(f'unsupported content type "{media}"'), 0, 415)
        return web.Response(status=415, text=_UNSUPPORTED_MEDIA, headers=extra)


def _refuse(intake: Intake, error: BaseException, count: int, media: str, extra: dict) -> web.Response:
    code, refusal_headers = status.http_refusal(error)
    grpc_code, _ = status.to_grpc(error)
    message = intake.refusal(error, count, code)
    reply = status_pb2.Status(code=grpc_code.value[0], message=message)
    headers = {"Content-Type": media, **extra, **refusal_headers}
    return web.Response(status=code, headers=headers,
                        body=reply.SerializeToString() if media == PROTOBUF else otlpjson.encode(reply))
