"""The Jaeger gRPC client: one channel, one ``PostSpans`` call per resource of a request.

Failures are classified here, where they leave the process, by the same gRPC
table as OTLP (``relay.status``). The batches of one request go one after
another; the first failure ends the attempt, and a retry sends the whole
request again, so a batch accepted before the failure is sent again (as the
collector's Jaeger exporter does): the request has no identity to remember
progress by.
"""

from __future__ import annotations

import grpc

from relay import status
from relay.exporters.jaeger import proto, translate
from relay.telemetry import component_logger


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


class JaegerTransport:
    def __init__(self, id_, config):
        self.id = id_
        self.config = config
        self.log = component_logger(id_)
        self.metadata = tuple(config.headers.items())
        self.compression = grpc.Compression.Gzip if config.compression == "gzip" else grpc.Compression.NoCompression
        self._channel: grpc.aio.Channel | None = None
        self._post = None

    async def start(self) -> None:
        tls = self.config.tls
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        # As in the OTLP exporter: gRPC's reconnect backoff would otherwise grow to 120 s and
        # keep the channel idle long after the collector is back; follow the retry's pace.
        retry = self.config.retry_on_failure
        if retry.enabled:
            options.append(("grpc.max_reconnect_backoff_ms", max(100, int(retry.max_interval * 1000))))
            options.append(("grpc.initial_reconnect_backoff_ms", max(100, int(retry.initial_interval * 1000))))
        if tls.insecure:
            self._channel = grpc.aio.insecure_channel(self.config.endpoint, options=options,
                                                      compression=self.compression)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls.ca_file) if tls.ca_file else None,
                private_key=_read(tls.key_file) if tls.key_file else None,
                certificate_chain=_read(tls.cert_file) if tls.cert_file else None,
            )
            if tls.server_name_override:
                options.append(("grpc.ssl_target_name_override", tls.server_name_override))
            self._channel = grpc.aio.secure_channel(self.config.endpoint, credentials, options=options,
                                                    compression=self.compression)
        self._post = self._channel.unary_unary(proto.POST_SPANS,
                                               request_serializer=proto.PostSpansRequest.SerializeToString,
                                               response_deserializer=proto.PostSpansResponse.FromString)
        self.log.info("Jaeger gRPC exporter ready", fields={"endpoint": self.config.endpoint,
                                                            "tls": not tls.insecure})

    async def shutdown(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def send(self, request) -> None:
        for batch in translate.batches(request):
            try:
                # The deadline travels with each call so the collector can give up too;
                # the timeout sender above bounds the whole request either way.
                await self._post(proto.PostSpansRequest(batch=batch), metadata=self.metadata,
                                 timeout=self.config.timeout or None, wait_for_ready=False)
            except grpc.aio.AioRpcError as error:
                raise status.from_grpc(error.code(), error.details() or "",
                                       status.retry_after_from_metadata(error.trailing_metadata())) from None
