"""How many connections the OTLP/HTTP receiver holds, and for how long each may take.

The timeouts are the collector's confighttp server settings and mean what Go's
``net/http`` makes of them:

- ``read_header_timeout``: from the start of a connection, or from the first
  byte after an idle spell, until the request's headers are in (0: the value
  of ``read_timeout``);
- ``read_timeout``: from the same moment until the whole request, body
  included, is in (0: none);
- ``write_timeout``: from the end of the headers until the response is
  written (0: none). Go lets a late handler run on and fails its write; here
  the connection is closed at the deadline, which the client sees the same
  way, so that a body that never ends cannot hold a connection past it;
- ``idle_timeout``: on a kept-alive connection, from a response until the
  next request's first byte (0: the value of ``read_timeout``).

A connection past a deadline is closed without an answer, as Go closes it.

``max_connections`` is the relay's own setting (the collector has none): at
most that many connections are open at once, 0 meaning half the process's
open-file limit (its soft RLIMIT_NOFILE) when the receiver starts, so that
the other half is left for gRPC, the health check, the telemetry port and the
exporters; with no such limit, 0 is no cap. A connection beyond the cap takes
the place of the one that has waited longest for a request (idle between
requests, or still sending its headers); when every connection is inside a
request, the new one is reset at once. Resetting rather than pausing the
listener tells the client at once, instead of leaving it in the kernel's
backlog for a turn that slow clients may never give up.

The receiver accepts its connections itself, so that running out of file
descriptors is one warning line at most every 10 s, with the number held
back, and a counter, rather than a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import socket
import struct

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from relay.telemetry import Throttled

# aiohttp's own keep-alive timer must never fire first: the deadlines here decide.
_NEVER = 10 * 365 * 86400.0
# The kernel's own cap, as Go's listeners use: a burst of connects waits in the backlog
# (no descriptor yet) instead of on a SYN retry a second later.
_BACKLOG = socket.SOMAXCONN
# Accepts per wake-up: enough to drain a burst, few enough to let the loop serve the others.
_ACCEPTS_PER_WAKE = 64
# Out of descriptors (or another failure of the listener, not of one client): try again
# this much later; every retry before a descriptor is free only fails again.
_OUT_OF_FILES_RETRY = 0.25
# A client's own connection gone before it was taken: the next one may be fine.
_ONE_CLIENT = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})
LOG_INTERVAL = 10.0

CLOSED_BY = ("max_connections", "evicted", "read_header_timeout", "read_timeout", "write_timeout", "idle_timeout")


def open_file_limit() -> int | None:
    try:
        import resource
    except ImportError:  # not on every platform
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class Limits:
    """The settings as they act: the fallbacks to ``read_timeout`` resolved, the cap derived."""

    def __init__(self, config, file_limit: int | None = None):
        read = float(config.read_timeout)
        self.read = read
        self.header = float(config.read_header_timeout) or read
        self.write = float(config.write_timeout)
        self.idle = float(config.idle_timeout) or read
        self.file_limit = file_limit if file_limit is not None else open_file_limit()
        self.configured_cap = config.max_connections
        if config.max_connections:
            self.max_connections = config.max_connections
        elif self.file_limit:
            self.max_connections = max(1, self.file_limit // 2)
        else:
            self.max_connections = 0  # no limit known to stay under

    def handshake(self) -> float | None:
        """Go bounds a TLS handshake by the shortest of the read and write timeouts."""
        bounds = [t for t in (self.header, self.read, self.write) if t > 0]
        return min(bounds) if bounds else None


class _Slot:
    """One accepted socket's place under the cap; given back once, whichever path closes it."""

    __slots__ = ("guard", "held")

    def __init__(self, guard: ConnectionGuard):
        self.guard = guard
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.guard._released()


_HEADERS, _HANDLING, _IDLE, _CLOSED = "headers", "handling", "idle", "closed"


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol with the deadlines above."""

    __slots__ = ("_guard", "_slot", "_phase", "_deadline", "_whole", "_payload")

    def __init__(self, guard: ConnectionGuard, slot: _Slot, manager: web.Server, **kwargs):
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._slot = slot
        self._phase = _HEADERS
        self._deadline: asyncio.TimerHandle | None = None
        self._whole: asyncio.TimerHandle | None = None
        self._payload = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._reading_headers()

    def data_received(self, data: bytes) -> None:
        if data and self._phase == _IDLE:
            self._reading_headers()
        super().data_received(data)

    def connection_lost(self, exc) -> None:
        self._stop()
        self._slot.release()
        super().connection_lost(exc)

    async def finish_response(self, request, resp, start_time):
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._answered()

    def request_started(self, payload) -> None:
        """The headers are in: the request is handled from here on."""
        if self._phase == _CLOSED:
            return
        self._phase = _HANDLING
        self._guard._unwait(self)
        self._payload = payload
        self._arm(self._guard.limits.write, "write_timeout")

    def _reading_headers(self) -> None:
        limits = self._guard.limits
        self._phase = _HEADERS
        self._guard._wait(self)
        self._payload = None
        self._arm(limits.header, "read_header_timeout")
        if self._whole is not None:
            self._whole.cancel()
            self._whole = None
        if limits.read > 0:
            self._whole = self._loop.call_later(limits.read, self._whole_request_late)

    def _answered(self) -> None:
        if self._phase == _CLOSED:
            return
        self._phase = _IDLE
        self._guard._wait(self)
        self._payload = None
        if self._whole is not None:
            self._whole.cancel()
            self._whole = None
        self._arm(self._guard.limits.idle, "idle_timeout")

    def _arm(self, seconds: float, reason: str) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._loop.call_later(seconds, self.expire, reason) if seconds > 0 else None

    def _whole_request_late(self) -> None:
        self._whole = None
        # Go's read deadline only stops reads: a body already read in full is not late.
        if self._phase == _HANDLING and self._payload is not None and self._payload.is_eof():
            return
        self.expire("read_timeout")

    def expire(self, reason: str) -> None:
        if self._phase == _CLOSED:
            return
        transport = self.transport
        self._stop()
        # Its descriptor goes within this turn of the loop: the place is free now.
        self._slot.release()
        self._guard._closed(reason, transport)
        if transport is not None:
            # abort, not close: a client that reads nothing must not keep the socket
            # open with an unsent answer.
            transport.abort()

    def _stop(self) -> None:
        self._phase = _CLOSED
        self._guard._unwait(self)
        for handle in (self._deadline, self._whole):
            if handle is not None:
                handle.cancel()
        self._deadline = self._whole = None


def _reset(sock: socket.socket) -> None:
    """Close with a reset: the client learns at once, and no TIME_WAIT is left behind."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class ConnectionGuard:
    """Accepts the receiver's connections and holds them to the limits."""

    def __init__(self, receiver_id, config, telemetry, log, file_limit: int | None = None):
        self.limits = Limits(config, file_limit)
        self.log = log
        receiver = str(receiver_id)
        self._open_gauge = telemetry.gauge(
            "otelcol_receiver_http_connections_open", "OTLP/HTTP connections open now", ["receiver"]
        ).labels(receiver)
        closed = telemetry.counter(
            "otelcol_receiver_http_connections_closed",
            "OTLP/HTTP connections the relay closed on its own: over max_connections, "
            "to make room for a new one, or past a timeout", ["receiver", "reason"])
        self._closed_by = {reason: closed.labels(receiver, reason) for reason in CLOSED_BY}
        self._accept_errors = telemetry.counter(
            "otelcol_receiver_http_accept_errors",
            "Failed accepts on the OTLP/HTTP port, by errno name", ["receiver", "error"])
        self._receiver = receiver
        self._full_log = Throttled(log, LOG_INTERVAL)
        self._timeout_log = Throttled(log, LOG_INTERVAL)
        self._accept_log = Throttled(log, LOG_INTERVAL)
        self._open = 0
        # Connections waiting for a request, longest waiting first: who makes room at the cap.
        self._waiting: collections.OrderedDict[GuardedHandler, None] = collections.OrderedDict()
        self._sockets: list[socket.socket] = []
        self._handoffs: set[asyncio.Task] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._server: web.Server | None = None
        self._handler_kwargs: dict = {}
        self._ssl = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def open_connections(self) -> int:
        return self._open

    def server(self, handler, **handler_kwargs) -> web.Server:
        """The aiohttp server for ``handler``; ``handler_kwargs`` go to each connection's protocol."""
        self._server = web.Server(handler, request_factory=self._request)
        self._handler_kwargs = {**handler_kwargs, "keepalive_timeout": _NEVER}
        return self._server

    async def listen(self, host: str, port: int, ssl_context=None) -> int:
        """Bind every address ``host`` stands for and start accepting; returns the port."""
        loop = self._loop = asyncio.get_running_loop()
        self._ssl = ssl_context
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port == 0 and len(self._sockets) > 1:
                    # One port for every address, as a client of the name expects.
                    address = (address[0], self._sockets[0].getsockname()[1], *address[2:])
                sock.bind(address)
                sock.listen(_BACKLOG)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise
        self._resume()
        return self._sockets[0].getsockname()[1]

    def close(self) -> None:
        """Stop accepting; connections already open are the aiohttp server's to end."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._close_sockets()
        for task in list(self._handoffs):
            task.cancel()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []

    def _pause(self) -> None:
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())

    def _resume(self) -> None:
        self._retry = None
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(_ACCEPTS_PER_WAKE):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self._accept_failed(error)
                return
            self._admit(sock)

    def _accept_failed(self, error: OSError) -> None:
        name = errno.errorcode.get(error.errno, str(error.errno))
        self._accept_errors.labels(self._receiver, name).inc()
        if error.errno in _ONE_CLIENT:
            return
        self._accept_log.warning("cannot accept OTLP/HTTP connections", {
            "error": os.strerror(error.errno) if error.errno else str(error), "errno": name,
            "open_connections": self._open, "retry_in_seconds": _OUT_OF_FILES_RETRY})
        if self._retry is None and self._sockets:
            # The pending connection stays in the backlog and the listener stays readable:
            # without a pause this would spin.
            self._pause()
            self._retry = self._loop.call_later(_OUT_OF_FILES_RETRY, self._resume)

    def _admit(self, sock: socket.socket) -> None:
        cap = self.limits.max_connections
        if cap and self._open >= cap:
            if self._waiting:
                oldest = next(iter(self._waiting))
                oldest.expire("evicted")
            else:
                self._closed("max_connections", None)
                _reset(sock)
                return
        self._open += 1
        self._open_gauge.set(self._open)
        slot = _Slot(self)
        task = self._loop.create_task(self._hand_over(sock, slot))
        self._handoffs.add(task)
        task.add_done_callback(self._handoffs.discard)

    async def _hand_over(self, sock: socket.socket, slot: _Slot) -> None:
        kwargs = self._handler_kwargs

        def protocol() -> GuardedHandler:
            return GuardedHandler(self, slot, self._server, loop=self._loop, **kwargs)

        try:
            if self._ssl is not None:
                await self._loop.connect_accepted_socket(protocol, sock, ssl=self._ssl,
                                                         ssl_handshake_timeout=self.limits.handshake())
            else:
                await self._loop.connect_accepted_socket(protocol, sock)
        except asyncio.CancelledError:
            slot.release()
            sock.close()
            raise
        except Exception as error:  # noqa: BLE001 - a failed TLS handshake, a client gone at once
            slot.release()
            sock.close()
            self.log.debug("OTLP/HTTP connection ended before its first request",
                           fields={"error": str(error) or type(error).__name__})

    def _request(self, message, payload, protocol, writer, task) -> web.BaseRequest:
        protocol.request_started(payload)
        return web.BaseRequest(message, payload, protocol, writer, task, self._loop)

    def _wait(self, handler: GuardedHandler) -> None:
        self._waiting[handler] = None
        self._waiting.move_to_end(handler)

    def _unwait(self, handler: GuardedHandler) -> None:
        self._waiting.pop(handler, None)

    def _released(self) -> None:
        self._open -= 1
        self._open_gauge.set(self._open)

    def _closed(self, reason: str, transport) -> None:
        self._closed_by[reason].inc()
        if reason == "idle_timeout":
            return  # the ordinary end of a kept-alive connection
        peer = transport.get_extra_info("peername") if transport is not None else None
        fields = {"reason": reason, "max_connections": self.limits.max_connections,
                  "open_connections": self._open}
        if peer:
            fields["client"] = str(peer[0])
        if reason in ("max_connections", "evicted"):
            self._full_log.warning("OTLP/HTTP connections at max_connections", fields)
        else:
            fields["seconds"] = {"read_header_timeout": self.limits.header, "read_timeout": self.limits.read,
                                 "write_timeout": self.limits.write}[reason]
            self._timeout_log.warning("closed an OTLP/HTTP connection past its deadline", fields)
