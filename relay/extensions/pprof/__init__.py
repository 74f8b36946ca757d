"""The ``pprof`` extension: the Python counterpart of the collector's profiler endpoint.

- ``GET /debug/pprof/``: what is available, and whether a profile is running.
- ``GET /debug/pprof/profile?seconds=30``: samples every Python thread of the
  relay (the asyncio loop, gRPC's threads, ...) for ``seconds`` (1..300,
  default 30) and answers with the profile as text:

  - default (``format=collapsed``): collapsed stacks, one line per distinct
    stack, ``frame;frame;frame count`` with frames as ``function (file:line)``,
    the input most flame graph tools read;
  - ``format=pstats``: a per-function table (self and cumulative samples, with
    percentages) sorted by cumulative samples, in the spirit of pstats but
    sample-based: counts, not traced times.

  ``hz`` (1..1000, default 200: every 5 ms) sets the sampling rate; ``mode=cpu``
  (default) leaves out the threads that used no CPU since the previous tick,
  ``mode=wall`` counts every thread (see ``sampler``). The response headers
  ``X-Profile-Samples``, ``X-Profile-Ticks``, ``X-Profile-Seconds`` (the
  window actually sampled) and ``X-Profile-Mode`` say what was taken. A bad
  parameter is a 400 naming it.

  One profile at a time: a request while one runs is refused at once with 409
  (waiting could stack up clients for minutes). The sampler runs in a thread of
  its own and the handler awaits it without blocking the loop; it ends at the
  end of the window, when the client goes away (looked at twice a second), or
  at shutdown, which answers the running request with what was sampled so far.
- ``GET /debug/pprof/threads`` (also ``/debug/pprof/goroutine``, the
  collector's name): every thread's current stack, like a goroutine dump.
"""

from __future__ import annotations

import asyncio
import html
import re
import threading
from dataclasses import dataclass

from aiohttp import web

from relay.component import Settings
from relay.errors import Problem
from relay.extensions.pprof import report
from relay.extensions.pprof.sampler import MODES, sample
from relay.httpserver import HttpListener
from relay.net.endpoints import endpoint_problem
from relay.telemetry import component_logger

TYPE = "pprof"
SIGNALS = ()
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"endpoint": "127.0.0.1:1777"}

SECONDS = (1, 300, 30)   # low, high, default
HZ = (1, 1000, 200)
FORMATS = ("collapsed", "pstats")
# How long shutdown waits for the sampler thread to hand back what it has.
_STOP_WAIT = 2.0
# How often a profile's handler checks that its client is still there.
_CLIENT_CHECK = 0.5

_INTEGER = re.compile(r"^[0-9]{1,9}$")


@dataclass
class Config:
    endpoint: str = "localhost:1777"

    def validate(self) -> list[Problem]:
        if message := endpoint_problem(self.endpoint):
            return [Problem(("endpoint",), message)]
        return []


class ProfileRunning(Exception):
    """A profile is already being taken."""


class Profiler:
    """Takes one profile at a time in a sampler thread, awaited from the event loop."""

    def __init__(self):
        self._stop: threading.Event | None = None
        self._done: asyncio.Future | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        return self._done is not None and not self._done.done()

    def start(self, seconds: float, hz: int, mode: str) -> asyncio.Future:
        """Start sampling; the future ends with the ``Samples``. Call from the event loop."""
        if self._closed:
            raise ProfileRunning("the extension is shutting down")
        if self.running:
            raise ProfileRunning("a profile is already running")
        loop = asyncio.get_running_loop()
        stop = self._stop = threading.Event()
        done = self._done = loop.create_future()

        def work() -> None:
            try:
                outcome = (done.set_result, sample(seconds, hz, mode, stop))
            except BaseException as error:  # noqa: BLE001 - handed to the awaiting handler
                outcome = (done.set_exception, error)
            try:
                loop.call_soon_threadsafe(_settle, done, *outcome)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

        threading.Thread(target=work, name="pprof-sampler", daemon=True).start()
        return done

    def stop(self) -> None:
        """End the running profile early; its future gets what was sampled so far."""
        if self._stop is not None:
            self._stop.set()

    async def close(self) -> None:
        """End a running profile now and wait (briefly) for its samples."""
        self._closed = True
        self.stop()
        if self.running:
            await asyncio.wait({self._done}, timeout=_STOP_WAIT)


def _settle(future: asyncio.Future, setter, value) -> None:
    if not future.done():
        setter(value)


class Pprof:
    def __init__(self, id_, config: Config):
        self.id = id_
        self.log = component_logger(id_)
        self.profiler = Profiler()
        app = web.Application()
        app.router.add_get("/debug/pprof", self._index)
        app.router.add_get("/debug/pprof/", self._index)
        app.router.add_get("/debug/pprof/profile", self._profile)
        app.router.add_get("/debug/pprof/threads", self._threads)
        app.router.add_get("/debug/pprof/goroutine", self._threads)
        app.router.add_get("/debug/pprof/{name}", self._unknown)
        self.listener = HttpListener(app, config.endpoint)

    @property
    def port(self) -> int | None:
        return self.listener.port

    @property
    def running(self) -> bool:
        """Whether a profile is being taken now."""
        return self.profiler.running

    async def start(self) -> None:
        await self.listener.start()
        self.log.info("pprof listening", fields={"port": self.listener.port})

    async def shutdown(self) -> None:
        # The sampler first, so that the running request is answered before the listener closes.
        await self.profiler.close()
        await self.listener.shutdown()

    async def _profile(self, request: web.Request) -> web.Response:
        query = request.query
        seconds = _integer(query, "seconds", *SECONDS)
        hz = _integer(query, "hz", *HZ)
        form = _choice(query, "format", FORMATS)
        mode = _choice(query, "mode", MODES)
        params = {"seconds": seconds, "hz": hz, "format": form, "mode": mode}
        try:
            done = self.profiler.start(seconds, hz, mode)
        except ProfileRunning as error:
            raise web.HTTPConflict(text=f"{error}\n") from None
        self.log.info("profile started", fields=params)
        try:
            # The server does not cancel a handler whose client left: look, so that an
            # abandoned 300 s profile does not sample on (and refuse everyone else).
            while not done.done():
                await asyncio.wait({done}, timeout=_CLIENT_CHECK)
                if not done.done() and _client_gone(request):
                    self.log.info("profile abandoned by its client", fields=params)
                    self.profiler.stop()
                    await asyncio.wait({done}, timeout=_STOP_WAIT)
                    return web.Response(status=499)  # "client closed request": nobody reads it
        finally:
            if not done.done():
                self.profiler.stop()  # this handler was cancelled
        samples = done.result()
        self.log.info("profile finished", fields={**params, "mode": samples.mode, "samples": samples.total,
                                                  "ticks": samples.ticks, "elapsed_s": round(samples.elapsed, 3),
                                                  "stopped_early": samples.stopped_early})
        text = report.collapsed(samples) if form == "collapsed" else report.table(samples)
        return web.Response(text=text, content_type="text/plain", charset="utf-8", headers={
            "X-Profile-Samples": str(samples.total), "X-Profile-Ticks": str(samples.ticks),
            "X-Profile-Seconds": f"{samples.elapsed:.3f}", "X-Profile-Mode": samples.mode})

    async def _threads(self, request: web.Request) -> web.Response:
        return web.Response(text=report.thread_dump(), content_type="text/plain", charset="utf-8")

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=_index_page(self.profiler.running), content_type="text/html", charset="utf-8")

    async def _unknown(self, request: web.Request) -> web.Response:
        raise web.HTTPNotFound(text=f'no profile "{request.match_info["name"]}" here: '
                                    "see /debug/pprof/ for profile and threads\n")


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _integer(query, name: str, low: int, high: int, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not _INTEGER.match(raw) or not low <= int(raw) <= high:
        raise web.HTTPBadRequest(text=f'{name} must be a whole number from {low} to {high}, not "{raw}"\n')
    return int(raw)


def _choice(query, name: str, choices: tuple[str, ...]) -> str:
    raw = query.get(name, choices[0])
    if raw not in choices:
        raise web.HTTPBadRequest(text=f'{name} must be one of {", ".join(choices)}, not "{raw}"\n')
    return raw


_ENTRIES = [
    ("/debug/pprof/profile?seconds=30",
     "CPU profile of every Python thread as collapsed stacks (flame graph input); hz=1..1000, mode=cpu|wall"),
    ("/debug/pprof/profile?seconds=30&format=pstats",
     "the same samples as a per-function table, sorted by cumulative samples"),
    ("/debug/pprof/threads", "every thread's current stack"),
]


def _index_page(running: bool) -> str:
    items = "".join(f'<li><a href="{html.escape(href)}">{html.escape(href)}</a>: {html.escape(text)}</li>'
                    for href, text in _ENTRIES)
    state = "A profile is running now." if running else "No profile is running."
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>genops-relay pprof</title></head>\n"
            f"<body><h1>/debug/pprof/</h1>\n<ul>{items}</ul>\n<p>{html.escape(state)} "
            "One profile at a time; seconds=1..300.</p>\n</body></html>\n")


def create(settings: Settings, config: Config) -> Pprof:
    return Pprof(settings.id, config)
