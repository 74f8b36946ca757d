"""Jaeger's Thrift HTTP collector API: ``POST /api/traces`` with a ``jaeger.thrift`` Batch in
Thrift's binary protocol.

As the collector answers: 202 Accepted (no body) once the pipeline has taken the batch, 400
for a body that does not read as a Batch, and only ``application/x-thrift`` and
``application/vnd.apache.thrift.binary`` are taken. Where the collector answers every other
failure 500, the relay answers by the ``relay.status`` table, so a client can tell "retry"
from "never": 415 for another content type, 413 past ``max_request_body_size``, 503 with
Retry-After for a pipeline that may take it later. Refusals are plain text, as Go's http.Error.
"""

from __future__ import annotations

import math

from aiohttp import web

from relay import status
from relay.errors import InvalidDataError, TooLargeError
from relay.httpserver import HttpListener
from relay.jaeger import thrift
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
        app = web.Application(client_max_size=self.limit)
        app.router.add_post(PATH, self._post)
        self._listener = HttpListener(app, config.endpoint)

    @property
    def port(self) -> int | None:
        return self._listener.port

    async def start(self) -> None:
        try:
            await self._listener.start()
        except OSError as error:
            await self._listener.shutdown()
            raise OSError(f"cannot listen on {self.config.endpoint}: {error}") from None
        self.log.info("Jaeger Thrift HTTP receiver listening",
                      fields={"endpoint": self.config.endpoint, "port": self.port, "path": PATH})

    async def shutdown(self, grace: float = 5.0) -> None:
        await self._listener.shutdown()

    async def _post(self, request: web.Request) -> web.Response:
        media = request.content_type
        if media not in THRIFT_TYPES:
            error = InvalidDataError(f'unsupported content type "{media}" (supported: {", ".join(THRIFT_TYPES)})')
            return self._refuse(error, 0, 415)
        if request.content_length is not None and request.content_length > self.limit:
            return self._refuse(TooLargeError(f"request body is larger than the limit of {self.limit} bytes"), 0)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(TooLargeError(f"request body is larger than the limit of {self.limit} bytes"), 0)
        try:
            batch = thrift.read_batch(body)
        except thrift.ThriftError as error:
            return self._refuse(InvalidDataError(f"cannot read the body as a jaeger.thrift Batch: {error}"), 0)
        count, failure = await self.intake.deliver(batch)
        if failure is not None:
            return self._refuse(failure, count)
        return web.Response(status=202)

    def _refuse(self, error: BaseException, count: int, code: int | None = None) -> web.Response:
        retry_after = None
        if code is None:
            code, retry_after = status.to_http(error)
        message = self.intake.refused(error, count, code)
        headers = {}
        if retry_after is not None and code in status.RETRYABLE_HTTP:
            headers["Retry-After"] = str(max(0, math.ceil(retry_after)))
        return web.Response(status=code, text=message + "\n", headers=headers)
