"""Jaeger's agent ports: one ``Agent.emitBatch`` call per UDP datagram, in Thrift's compact
protocol (``thrift_compact``, 6831) or binary protocol (``thrift_binary``, 6832).

A datagram is queued as it arrives and handled by ``workers`` tasks, as the collector's
buffered UDP server does; a client is never answered, so whatever cannot be taken (the
queue is full, the datagram is larger than ``max_packet_size`` or does not read as an
emitBatch call, the pipeline refused it) is counted in ``otelcol_receiver_refused_requests``
with the status a gRPC client would have got, its spans in ``otelcol_receiver_refused_spans``
where known, and logged (throttled: a flood is one line a second).
"""

from __future__ import annotations

import asyncio
import socket
import time

from relay import status
from relay.errors import InvalidDataError, QueueFullError, ShutdownError, TooLargeError
from relay.jaeger import thrift
from relay.net.endpoints import split_endpoint
from relay.receivers.jaeger.intake import Intake
from relay.signals import Signal
from relay.telemetry import Throttled, component_logger


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: "UdpServer"):
        self.server = server

    def datagram_received(self, data: bytes, addr) -> None:
        self.server.received(data)

    def error_received(self, exc: Exception) -> None:
        self.server.log.debug("UDP receive error", fields={"error": str(exc)})


class _ThrottledLog:
    """The component's log with its warnings and errors throttled: a flood of datagrams that
    fail the same way is a line a second of each, carrying how many were held back."""

    def __init__(self, log, interval: float = 1.0, clock=time.monotonic):
        self.log = log
        self.interval = interval
        self.clock = clock
        self._warnings = Throttled(log, interval, clock)
        self._next_error = 0.0
        self._held_errors = 0

    def warning(self, message: str, fields: dict) -> None:
        self._warnings.warning(message, fields)

    def error(self, message: str, exc_info=None, fields: dict | None = None) -> None:
        now = self.clock()
        if now < self._next_error:
            self._held_errors += 1
            return
        self._next_error = now + self.interval
        fields = dict(fields or {})
        if self._held_errors:
            fields["suppressed"], self._held_errors = self._held_errors, 0
        self.log.error(message, exc_info=exc_info, fields=fields)

    def __getattr__(self, name):
        return getattr(self.log, name)


class UdpServer:
    def __init__(self, id_, config, consumer, telemetry, compact: bool):
        self.config = config
        self.compact = compact
        self.protocol = "thrift_compact" if compact else "thrift_binary"
        # The collector's transport names, for the metrics' labels.
        transport = "udp_thrift_compact" if compact else "udp_thrift_binary"
        self.log = component_logger(id_)
        # A flood of bad datagrams is one line a second, a traceback included.
        self.throttled_log = _ThrottledLog(self.log)
        self.intake = Intake(id_, consumer, telemetry, transport, self.throttled_log)
        # Spans the pipeline had when shutdown cancelled it: refused, by the reason shutdown gives.
        self._cancelled_spans = telemetry.receiver_refused[Signal.TRACES].labels(str(id_), transport, "ShutdownError")
        self.port: int | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(config.queue_size)
        self._transport: asyncio.DatagramTransport | None = None
        self._workers: list[asyncio.Task] = []

    async def start(self) -> None:
        host, port = split_endpoint(self.config.endpoint)
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.config.socket_buffer_size:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.socket_buffer_size)
            sock.bind((host, port))
        except OSError as error:
            sock.close()
            raise OSError(f"cannot listen on {self.config.endpoint}: {error}") from None
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), sock=sock)
        self.port = sock.getsockname()[1]
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.config.workers)]
        self.log.info(f"Jaeger UDP receiver listening ({self.protocol})",
                      fields={"endpoint": f"{host}:{self.port}", "workers": self.config.workers})

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop reading at once; what is queued gets ``grace`` seconds to reach the pipeline,
        and what is left then is counted and logged as refused."""
        if self._transport is None:
            return
        self._transport.close()
        self._transport = None
        try:
            await asyncio.wait_for(self._queue.join(), grace)
        except TimeoutError:
            pass
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        while not self._queue.empty():
            self._queue.get_nowait()
            self._drop(ShutdownError("the receiver stopped before the datagram reached the pipeline"), 0)

    def received(self, data: bytes) -> None:
        if len(data) > self.config.max_packet_size:
            self._drop(TooLargeError(f"datagram of {len(data)} bytes is larger than max_packet_size "
                                     f"({self.config.max_packet_size})"), 0)
            return
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self._drop(QueueFullError(f"queue_size ({self.config.queue_size}) datagrams are waiting already"), 0)

    async def _work(self) -> None:
        while True:
            data = await self._queue.get()
            spans = 0
            try:
                request, failure = await self.intake.read(data, self._read_batch, "the datagram as an emitBatch call")
                if failure is not None:
                    self._drop(failure, 0)
                    continue
                spans = Signal.TRACES.count(request, None)
                count, failure = await self.intake.deliver(request)
                if failure is not None:
                    self._drop(failure, count)
            except asyncio.CancelledError:
                # Shutdown's grace ran out with this datagram in the pipeline: whether it got
                # through is unknown, so it is counted as refused rather than lost unseen.
                self._cancelled_spans.inc(spans)
                self._drop(ShutdownError("the receiver stopped while the datagram was in the pipeline"), spans)
                raise
            except Exception as error:  # noqa: BLE001 - one bad datagram must not stop the worker
                self.throttled_log.error("handling a datagram failed", exc_info=error, fields={})
            finally:
                self._queue.task_done()

    def _read_batch(self, data: bytes):
        try:
            return thrift.read_emit_batch(data, self.compact)
        except thrift.ThriftError as error:
            raise InvalidDataError(f"cannot read the datagram as an Agent.emitBatch call: {error}") from None

    def _drop(self, error: BaseException, count: int) -> None:
        self.intake.refused(error, count, status.to_grpc(error)[0].name)
