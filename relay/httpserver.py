"""A small aiohttp listener used by the health check and the telemetry endpoint."""

from __future__ import annotations

from aiohttp import web

from relay.net.endpoints import split_endpoint


class HttpListener:
    """Serves ``app`` on ``endpoint`` (``host:port``; port 0 picks a free one), over TLS with
    ``ssl_context``; ``handler_options`` go to aiohttp's connection handler (``auto_decompress``)."""

    def __init__(self, app: web.Application, endpoint: str, ssl_context=None, **handler_options):
        self.app = app
        self.endpoint = endpoint
        self.ssl_context = ssl_context
        self.handler_options = handler_options
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        host, port = split_endpoint(self.endpoint)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, **self.handler_options)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
