"""A small aiohttp listener, for the receivers that take HTTP posts (Zipkin, Jaeger's Thrift
HTTP) and for the health check, the telemetry endpoint and the other extensions' pages.

Shutdown stops accepting at once and gives requests in flight ``grace`` seconds before
cancelling them: aiohttp's own cleanup would wait up to a minute for them, past any caller's
deadline, and be cancelled part-way by it.
"""

from __future__ import annotations

import asyncio

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
        self._in_flight: set[asyncio.Task] = set()
        app.middlewares.append(self._track)

    @web.middleware
    async def _track(self, request: web.Request, handler):
        task = asyncio.current_task()
        self._in_flight.add(task)
        try:
            return await handler(request)
        finally:
            self._in_flight.discard(task)

    async def start(self) -> None:
        host, port = split_endpoint(self.endpoint)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, **self.handler_options)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting at once; requests in flight get ``grace`` seconds, then are cancelled."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await stop(runner, self._in_flight, grace)


async def stop(runner: web.BaseRunner, in_flight: set[asyncio.Task], grace: float) -> None:
    """``runner.cleanup()``, with the request tasks of ``in_flight`` cancelled after ``grace`` seconds."""
    deadline = asyncio.get_running_loop().call_later(grace, _cancel, in_flight)
    try:
        await runner.cleanup()
    finally:
        deadline.cancel()


def _cancel(tasks: set[asyncio.Task]) -> None:
    for task in list(tasks):
        task.cancel()
