"""OTLP senders for the relay's own telemetry (its logs and its metrics), one per exporter.

Both ``service.telemetry.logs.processors`` and the periodic metrics readers configure the same
declarative ``exporter: {otlp: ...}``; this is where it becomes a gRPC channel or an OTLP/HTTP
client. A sender takes a serialized request for its signal and either delivers it or raises:
what a failure means (counted, logged, retried next interval) is the caller's business.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from opentelemetry.proto.common.v1 import common_pb2

from relay.config.telemetry import OtlpExporter
from relay.net.grpc_channel import Link, open_channel
from relay.net.http_client import user_agent
from relay.net.tls import TLSClientConfig, ssl_context

log = logging.getLogger("relay.selfotlp")

GRPC_PORT = 4317


@dataclass(frozen=True)
class Route:
    """Where one signal of the relay's own telemetry goes: OTLP/HTTP's default path and the
    gRPC service method."""

    path: str
    method: str


LOGS = Route("/v1/logs", "/opentelemetry.proto.collector.logs.v1.LogsService/Export")
METRICS = Route("/v1/metrics", "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")


@dataclass
class Destination:
    """An exporter, resolved: a URL (or gRPC's host:port), whether it is plain, the headers to
    send, gzip or not, the per-request timeout (seconds) and the TLS files."""

    protocol: str
    url: str
    insecure: bool
    headers: dict[str, str]
    compression: str
    timeout: float
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


def destination(otlp: OtlpExporter) -> Destination:
    url = otlp.url
    if "://" in url:
        insecure = urlsplit(url).scheme == "http"  # the scheme decides where there is one
    else:
        # host:port: TLS unless insecure, as the schema has it; OTLP/HTTP still needs a scheme.
        insecure = bool(otlp.insecure)
        if otlp.protocol != "grpc":
            url = f"{'http' if insecure else 'https'}://{url}"
    return Destination(protocol=otlp.protocol, url=url, insecure=insecure, headers=otlp.header_map(),
                       compression="gzip" if otlp.compression == "gzip" else "", timeout=otlp.timeout / 1000,
                       ca_file=otlp.certificate, cert_file=otlp.client_certificate, key_file=otlp.client_key)


class _NoRetry:
    # The caller retries (the next batch, the next interval): the channel does not.
    enabled = False


class GrpcSender:
    """One ``Export`` call per request, on a channel opened once."""

    def __init__(self, signal: Route, where: Destination, logger: logging.Logger = log):
        self.signal = signal
        self.compression = where.compression
        self.logger = logger
        url = urlsplit(where.url if "://" in where.url else f"//{where.url}")
        host = f"[{url.hostname}]" if ":" in (url.hostname or "") else url.hostname
        self.target = f"{host}:{url.port or GRPC_PORT}"
        self.tls = TLSClientConfig(insecure=where.insecure, ca_file=where.ca_file, cert_file=where.cert_file,
                                   key_file=where.key_file)
        self.metadata = tuple((name.lower(), value) for name, value in where.headers.items())
        self._link: Link | None = None

    async def open(self) -> None:
        """Opens the channel; a certificate that cannot be read raises here."""
        if self._link is None:
            self._link = await open_channel(self.target, self.tls, not self.tls.insecure, self.compression,
                                            _NoRetry(), self.logger)

    async def send(self, body: bytes, timeout: float) -> None:
        await self.open()
        call = self._link.channel.unary_unary(self.signal.method, request_serializer=None,
                                              response_deserializer=None)
        await call(body, timeout=timeout, metadata=self.metadata or None)

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()
            self._link = None


class HttpSender:
    """OTLP/HTTP: a protobuf POST to the signal's path (or the path the endpoint gives)."""

    def __init__(self, signal: Route, where: Destination):
        url = urlsplit(where.url)
        path = url.path if url.path not in ("", "/") else signal.path
        self.url = urlunsplit((url.scheme, url.netloc, path, url.query, ""))
        self.tls = TLSClientConfig(ca_file=where.ca_file, cert_file=where.cert_file,
                                   key_file=where.key_file) if url.scheme == "https" else None
        self.gzip = where.compression == "gzip"
        self.headers = {"Content-Type": "application/x-protobuf", "User-Agent": user_agent(), **where.headers}
        if self.gzip:
            self.headers["Content-Encoding"] = "gzip"
        self._session: aiohttp.ClientSession | None = None
        self._ssl = None

    async def open(self) -> None:
        """Reads the TLS files and opens the session; a certificate that cannot be read raises here."""
        if self._session is None:
            self._ssl = ssl_context(self.tls) if self.tls is not None else None
            self._session = aiohttp.ClientSession()

    async def send(self, body: bytes, timeout: float) -> None:
        await self.open()
        if self.gzip:
            body = gzip.compress(body)
        async with self._session.post(self.url, data=body, headers=self.headers,
                                      ssl=self._ssl if self._ssl is not None else True,
                                      timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if not 200 <= response.status < 300:
                text = (await response.text(errors="replace"))[:200]
                raise OSError(f"HTTP {response.status}: {text}")
            await response.read()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def sender(signal: Route, where: Destination, logger: logging.Logger = log) -> GrpcSender | HttpSender:
    return GrpcSender(signal, where, logger) if where.protocol == "grpc" else HttpSender(signal, where)


def any_value(value) -> common_pb2.AnyValue:
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int) and -(2 ** 63) <= value < 2 ** 63:
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=key_values(value)))
    return common_pb2.AnyValue(string_value=str(value))


def key_values(mapping: dict) -> list[common_pb2.KeyValue]:
    """OTLP attributes from a mapping, each value as its own type."""
    return [common_pb2.KeyValue(key=str(key), value=any_value(value)) for key, value in mapping.items()]
