"""The OTLP/gRPC client: one channel, one Export call per request.

Failures are classified here, where they leave the process, by the OTLP retry
table in ``relay.status``. A partial_success answer is not retried (the spec
forbids it); its rejected count is logged and counted.
"""

from __future__ import annotations

import grpc

from relay import received, status
from relay.exporters.otlp_grpc import split_target
from relay.signals import Signal, rejected_count, signal_of
from relay.telemetry import component_logger


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


class GrpcTransport:
    def __init__(self, id_, config, telemetry):
        self.id = id_
        self.config = config
        self.metrics = telemetry
        self.log = component_logger(id_)
        self.metadata = tuple(config.headers.items())
        self.compression = grpc.Compression.Gzip if config.compression == "gzip" else grpc.Compression.NoCompression
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[Signal, object] = {}

    async def start(self) -> None:
        target, scheme_tls = split_target(self.config.endpoint)
        tls = self.config.tls
        use_tls = scheme_tls if scheme_tls is not None else not tls.insecure
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        # gRPC's own reconnect backoff grows to 120 s; after a long outage the channel would
        # idle that long past the downstream's return while the retry sender keeps failing
        # fast. Cap it at the retry's max_interval so recovery is as quick as retrying.
        retry = self.config.retry_on_failure
        if retry.enabled:
            options.append(("grpc.max_reconnect_backoff_ms", max(100, int(retry.max_interval * 1000))))
            options.append(("grpc.initial_reconnect_backoff_ms", max(100, int(retry.initial_interval * 1000))))
        if use_tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls.ca_file) if tls.ca_file else None,
                private_key=_read(tls.key_file) if tls.key_file else None,
                certificate_chain=_read(tls.cert_file) if tls.cert_file else None,
            )
            if tls.server_name_override:
                options.append(("grpc.ssl_target_name_override", tls.server_name_override))
            self._channel = grpc.aio.secure_channel(target, credentials, options=options,
                                                    compression=self.compression)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options, compression=self.compression)
        self._calls = {signal: self._channel.unary_unary(signal.method) for signal in Signal}
        self.log.info("OTLP/gRPC exporter ready", fields={"endpoint": target, "tls": use_tls})

    async def shutdown(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def send(self, request) -> None:
        signal = signal_of(request)
        data = received.raw_bytes(request)  # the wire form, while it still describes the request
        if data is None:
            data = request.SerializeToString()
        try:
            # The deadline travels with the call so the downstream can give up too;
            # the timeout sender above bounds the attempt either way.
            answer = await self._calls[signal](data, metadata=self.metadata,
                                               timeout=self.config.timeout or None, wait_for_ready=False)
        except grpc.aio.AioRpcError as error:
            raise status.from_grpc(error.code(), error.details() or "",
                                   status.retry_after_from_metadata(error.trailing_metadata())) from None
        if answer:
            self._check_partial(signal, answer)

    def _check_partial(self, signal: Signal, answer: bytes) -> None:
        try:
            response = signal.response_type.FromString(answer)
        except Exception:  # noqa: BLE001 - the data was accepted; a garbled answer changes nothing
            self.log.warning("could not parse the downstream's answer", fields={"signal": signal.value})
            return
        rejected, message = rejected_count(signal, response)
        if rejected or message:
            self.metrics.exporter_rejected[signal].labels(str(self.id)).inc(rejected)
            self.log.warning("partial success", fields={"signal": signal.value, "rejected": rejected,
                                                          "message": message})
