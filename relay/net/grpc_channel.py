"""The client channel of the gRPC exporters (OTLP and Jaeger), built one way."""

from __future__ import annotations

import grpc

from relay.net.tls import ClientTLS, material
from relay.net.tls_bridge import TlsBridge


class Link:
    """An open channel, and the TLS bridge it goes through where there is one."""

    def __init__(self, channel: grpc.aio.Channel, bridge: TlsBridge | None = None):
        self.channel = channel
        self.bridge = bridge

    async def close(self) -> None:
        await self.channel.close()
        if self.bridge is not None:
            await self.bridge.close()


async def open_channel(target: str, tls, use_tls: bool, compression: str, retry, log) -> Link:
    """A channel to ``target`` with ``tls`` (``relay.net.tls.TLSClientConfig``) where ``use_tls``."""
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    # gRPC's own reconnect backoff grows to 120 s; after a long outage the channel would
    # idle that long past the downstream's return while the retry sender keeps failing
    # fast. Cap it at the retry's max_interval so recovery is as quick as retrying.
    if retry.enabled:
        options.append(("grpc.max_reconnect_backoff_ms", max(100, int(retry.max_interval * 1000))))
        options.append(("grpc.initial_reconnect_backoff_ms", max(100, int(retry.initial_interval * 1000))))
    zipped = grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression
    if not use_tls:
        return Link(grpc.aio.insecure_channel(target, options=options, compression=zipped))
    if tls.needs_python_tls():
        host, _, port = target.rpartition(":")
        bridge = TlsBridge(host.strip("[]"), int(port), ClientTLS(tls, log=log, alpn=("h2",)), log)
        await bridge.start()
        # The server still sees the name it serves: the bridge is only the way there.
        options.append(("grpc.default_authority", tls.server_name_override or target))
        return Link(grpc.aio.insecure_channel(bridge.target, options=options, compression=zipped), bridge)
    ca, cert, key = material(tls)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    if tls.server_name_override:
        options.append(("grpc.ssl_target_name_override", tls.server_name_override))
    return Link(grpc.aio.secure_channel(target, credentials, options=options, compression=zipped))
