"""The OTLP/gRPC client: one channel, one Export call per request.

Failures are classified here, where they leave the process, by the OTLP retry
table in ``relay.status``. A partial_success answer is not retried (the spec
forbids it); its rejected count is logged and counted.
"""

from __future__ import annotations

import grpc

from relay import received, split, status
from relay.exporters.helper.partial import note_partial_success
from relay.net.endpoints import split_target
from relay.net.grpc_channel import Link, open_channel
from relay.net.headers import clean as clean_headers
from relay.net.headers import warn_stripped
from relay.signals import Signal, signal_of
from relay.telemetry import component_logger


class GrpcTransport:
    def __init__(self, id_, config, telemetry, authenticator=None):
        self.id = id_
        self.config = config
        self.metrics = telemetry
        self.log = component_logger(id_)
        metadata, _, stripped = clean_headers(config.headers, grpc=True)
        warn_stripped(self.log, stripped)
        self.metadata = tuple(metadata.items())
        self.authenticator = authenticator
        self._link: Link | None = None  # the channel, and its TLS bridge where Python's TLS carries it
        self._calls: dict[Signal, object] = {}

    async def start(self) -> None:
        target, scheme_tls = split_target(self.config.endpoint)
        use_tls = scheme_tls if scheme_tls is not None else not self.config.tls.insecure
        self._link = await open_channel(target, self.config.tls, use_tls, self.config.compression,
                                        self.config.retry_on_failure, self.log)
        self._calls = {signal: self._link.channel.unary_unary(signal.method) for signal in Signal}
        self.log.info("OTLP/gRPC exporter ready", fields={
            "endpoint": target, "tls": use_tls,
            **({"auth": self.config.auth.authenticator} if self.authenticator is not None else {})})

    async def shutdown(self) -> None:
        if self._link is not None:
            await self._link.close()
            self._link = None

    async def send(self, request) -> None:
        signal = signal_of(request)
        data = received.raw_bytes(request)  # the wire form, while it still describes the request
        if data is None:
            data = request.SerializeToString()
        if len(data) > self.config.max_request_size and signal.count(request) > 1:
            for part in split.by_size(request, self.config.max_request_size):
                await self._send(signal, part, part.SerializeToString())
            return
        await self._send(signal, request, data)

    async def _send(self, signal: Signal, request, data: bytes) -> None:
        try:
            # The deadline travels with the call so the downstream can give up too;
            # the timeout sender above bounds the attempt either way.
            answer = await self._calls[signal](data, metadata=self._metadata(),
                                               timeout=self.config.timeout or None, wait_for_ready=False)
        except grpc.aio.AioRpcError as error:
            items = signal.count(request)
            # Profiles are never halved: each half would carry the whole dictionary (see split.by_size).
            if (error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and items > 1 and not _retry_info(error)
                    and signal is not Signal.PROFILES):
                # Too large for the downstream (its limit is below ours): halves, not a drop.
                self.log.info("downstream refused a request as too large; sending it in halves",
                              fields={"items": items, "bytes": len(data)})
                for part in split.split(request, (items + 1) // 2):
                    await self._send(signal, part, part.SerializeToString())
                return
            raise status.from_grpc(error.code(), error.details() or "",
                                   status.retry_after_from_metadata(error.trailing_metadata())) from None
        if answer:
            self._check_partial(signal, answer)

    def _metadata(self) -> tuple:
        if self.authenticator is None:
            return self.metadata
        # The authenticator's header replaces a configured one of the same name.
        return tuple({**dict(self.metadata), **self.authenticator.client_headers()}.items())

    def _check_partial(self, signal: Signal, answer: bytes) -> None:
        try:
            response = signal.response_type.FromString(answer)
        except Exception:  # noqa: BLE001 - the data was accepted; a garbled answer changes nothing
            self.log.warning("could not parse the downstream's answer", fields={"signal": signal.value})
            return
        note_partial_success(self.id, signal, response, self.metrics, self.log)


def _retry_info(error: grpc.aio.AioRpcError) -> bool:
    """RESOURCE_EXHAUSTED with RetryInfo is the downstream asking for time (the collector's rule)."""
    return status.retry_after_from_metadata(error.trailing_metadata()) is not None
