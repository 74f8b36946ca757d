"""Jaeger's Thrift HTTP collector API: ``POST /api/traces`` with a ``jaeger.thrift`` Batch in
Thrift's binary protocol.

As the collector answers: 202 Accepted (no body) once the pipeline has taken the batch, 400
for a body that does not read as a Batch, and only ``application/x-thrift`` and
``application/vnd.apache.thrift.binary`` are taken. Where the collector answers every other
failure 500, the relay answers by the ``relay.status`` table, so a client can tell "retry"
from "never": 415 for another content type, 413 past ``max_request_body_size`` (on the wire or
once inflated: a gzip or deflate Content-Encoding is undone, as the collector's HTTP server does,
another is 400), 503 with Retry-After for a pipeline that may take it later. Refusals are plain
text, as Go's http.Error.
"""

from __future__ import annotations

from aiohttp import web

from relay import status
from relay.errors import InvalidDataError, TooLargeError
from relay.httpserver import HttpListener
from relay.jaeger import thrift
from relay.net import body
from relay.receivers.jaeger.intake import Intake
from relay.telemetry import component_logger

TRANSPORT = "collector_http"
PATH = "/api/traces"
THRIFT_TYPES = ("application/x-thrift", "application/vnd.apache.thrift.binary")


class ThriftHttpServer:
    protocol = "thrift_http"

    def __init__(self, id_, config, consumer, telemetry):
        self.config = config
        self.log = component_logger(id_)
        self.intake = Intake(id_, consumer, telemetry, TRANSPORT, self.log)
        self.limit = config.body_limit()
        app = web.Application()
        app.router.add_post(PATH, self._post)
        # Bodies are inflated within the size limit by relay.net.body, so aiohttp must not do it first.
        self._listener = HttpListener(app, config.endpoint, auto_decompress=False)

    @property
    def port(self) -> int | None:
        return self._listener.port

    async def start(self) -> None:
        try:
            await self._listener.start()
        except OSError as error:
            await self._listener.shutdown(0)
            raise OSError(f"cannot listen on {self.config.endpoint}: {error}") from None
        self.log.info("Jaeger Thrift HTTP receiver listening",
                      fields={"endpoint": self.config.endpoint, "port": self.port, "path": PATH})

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting at once; requests in flight get ``grace`` seconds, then are cancelled."""
        await self._listener.shutdown(grace)

    async def _post(self, request: web.Request) -> web.Response:
        media = request.content_type
        if media not in THRIFT_TYPES:
            error = InvalidDataError(f'unsupported content type "{media}" (supported: {", ".join(THRIFT_TYPES)})')
            return self._refuse(error, 0, 415)
        try:
            data = await body.read_request(request, self.limit)
        except (InvalidDataError, TooLargeError) as error:
            return self._refuse(error, 0)
        except ConnectionError:
            # The client went away mid-body: no one is left to answer.
            self.log.debug("client went away before sending its whole request", fields={"transport": TRANSPORT})
            return web.Response(status=400)
        otlp, failure = await self.intake.read(data, _read_batch, "the body as a jaeger.thrift Batch")
        if failure is not None:
            return self._refuse(failure, 0)
        count, failure = await self.intake.deliver(otlp)
        if failure is not None:
            return self._refuse(failure, count)
        return web.Response(status=202)

    def _refuse(self, error: BaseException, count: int, code: int | None = None) -> web.Response:
        headers = {}
        if code is None:
            code, headers = status.http_refusal(error)
        message = self.intake.refused(error, count, code)
        return web.Response(status=code, text=message + "\n", headers=headers)


def _read_batch(data: bytes):
    try:
        return thrift.read_batch(data)
    except thrift.ThriftError as error:
        raise InvalidDataError(f"cannot read the body as a jaeger.thrift Batch: {error}") from None
