"""The ``health_check`` extension: the collector's JSON health endpoint.

200 ``{"status": "Server available", "upSince": ..., "uptime": ...}`` once every
pipeline is running; 503 ``{"status": "Server not available", ...}`` before
that and from the moment shutdown begins.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

from aiohttp import web

from relay.component import Settings
from relay.errors import Problem
from relay.httpserver import HttpListener
from relay.net.endpoints import endpoint_problem
from relay.telemetry import component_logger

TYPE = "health_check"
SIGNALS = ()
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"endpoint": "127.0.0.1:13133"}

_NEVER = "0001-01-01T00:00:00Z"


@dataclass
class Config:
    endpoint: str = "0.0.0.0:13133"
    path: str = "/"

    def validate(self) -> list[Problem]:
        problems = []
        if message := endpoint_problem(self.endpoint):
            problems.append(Problem(("endpoint",), message))
        if not self.path.startswith("/"):
            problems.append(Problem(("path",), 'must start with "/"'))
        return problems


class HealthCheck:
    def __init__(self, id_, config: Config):
        self.id = id_
        self.log = component_logger(id_)
        self._ready_since: tuple[datetime.datetime, float] | None = None
        app = web.Application()
        app.router.add_get(config.path, self._handle)
        self.listener = HttpListener(app, config.endpoint)

    @property
    def port(self) -> int | None:
        return self.listener.port

    async def start(self) -> None:
        await self.listener.start()
        self.log.info("health check listening", fields={"port": self.listener.port})

    async def shutdown(self) -> None:
        await self.listener.shutdown()

    def set_ready(self, ready: bool) -> None:
        self._ready_since = (datetime.datetime.now(datetime.timezone.utc), time.monotonic()) if ready else None

    async def _handle(self, request: web.Request) -> web.Response:
        if self._ready_since is None:
            return web.json_response({"status": "Server not available", "upSince": _NEVER, "uptime": ""},
                                     status=503)
        since, started = self._ready_since
        return web.json_response({
            "status": "Server available",
            "upSince": since.isoformat().replace("+00:00", "Z"),
            "uptime": f"{time.monotonic() - started:.3f}s",
        })


def create(settings: Settings, config: Config) -> HealthCheck:
    return HealthCheck(settings.id, config)
