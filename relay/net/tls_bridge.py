"""TLS for a gRPC channel by Python's ``ssl`` where gRPC's own cannot do what is configured.

gRPC's Python library verifies every server certificate, negotiates TLS 1.2 or 1.3 whatever
is asked, and reads its files once. For ``insecure_skip_verify``, ``min_version`` /
``max_version`` and ``reload_interval`` the channel instead speaks plain HTTP/2 to a bridge on
a Unix socket in a private directory (only this user can reach it: a client certificate is
not lent to other local users), and the bridge carries each connection to the server over a
TLS connection made with the client TLS config (``relay.net.tls.ClientTLS``, ALPN h2). A
connection the server refuses is closed at once, which the channel reports as UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile

from relay.telemetry import Throttled

CONNECT_TIMEOUT = 10.0
_CHUNK = 256 * 1024


class TlsBridge:
    def __init__(self, host: str, port: int, tls, log):
        """``tls``: a ``ClientTLS`` made with ``alpn=("h2",)``."""
        self.host, self.port = host, port
        self.tls = tls
        self._trouble = Throttled(log, 10.0)
        self._directory: tempfile.TemporaryDirectory | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self.path = ""

    @property
    def target(self) -> str:
        return f"unix:{self.path}"

    async def start(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="genops-relay-tls-")
        os.chmod(self._directory.name, 0o700)
        self.path = os.path.join(self._directory.name, "bridge.sock")
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(
                    self.host, self.port, ssl=self.tls.context(),
                    server_hostname=self.tls.server_hostname or self.host), CONNECT_TIMEOUT)
            except (OSError, ssl.SSLError, TimeoutError) as error:
                self._trouble.warning("cannot connect over TLS", {
                    "endpoint": f"{self.host}:{self.port}", "error": f"{type(error).__name__}: {error}"})
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass  # the other side went away: its own end reports it
    finally:
        try:
            writer.write_eof() if writer.can_write_eof() else writer.close()
        except (OSError, RuntimeError):
            pass
