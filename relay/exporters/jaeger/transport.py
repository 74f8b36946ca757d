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
from relay.exporters.jaeger import translate
from relay.jaeger import proto
from relay.net.grpc_channel import Link, open_channel
from relay.net.headers import clean as clean_headers
from relay.net.headers import warn_stripped
from relay.telemetry import component_logger


class JaegerTransport:
    def __init__(self, id_, config):
        self.id = id_
        self.config = config
        self.log = component_logger(id_)
        metadata, _, stripped = clean_headers(config.headers, grpc=True)
        warn_stripped(self.log, stripped)
        self.metadata = tuple(metadata.items())
        self._link: Link | None = None  # the channel, and its TLS bridge where Python's TLS carries it
        self._post = None

    async def start(self) -> None:
        tls = self.config.tls
        self._link = await open_channel(self.config.endpoint, tls, not tls.insecure, self.config.compression,
                                        self.config.retry_on_failure, self.log)
        self._post = self._link.channel.unary_unary(proto.POST_SPANS,
                                               request_serializer=proto.PostSpansRequest.SerializeToString,
                                               response_deserializer=proto.PostSpansResponse.FromString)
        self.log.info("Jaeger gRPC exporter ready", fields={"endpoint": self.config.endpoint,
                                                            "tls": not tls.insecure})

    async def shutdown(self) -> None:
        if self._link is not None:
            await self._link.close()
            self._link = None

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
