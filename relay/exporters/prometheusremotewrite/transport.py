"""The remote write client: convert, split, snappy-compress and POST each WriteRequest.

Answers are classified here, where they leave the process, as the remote write spec
says: 2xx is success, every 5xx and 429 may be retried (after Retry-After when
given), any other answer is permanent. A request split in several WriteRequests is
retried whole: parts already taken are sent again with the same samples, which
Prometheus accepts as duplicates of what it holds.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
import cramjam

from relay import status
from relay.errors import RetryableError
from relay.exporters.prometheusremotewrite import PROTOCOL_HEADERS
from relay.exporters.prometheusremotewrite.convert import Converter, write_requests
from relay.net.headers import clean as clean_headers
from relay.net.headers import warn_stripped
from relay.net.http_client import user_agent
from relay.net.tls import ClientTLS, request_options
from relay.telemetry import component_logger

DROPPED_POINTS = "otelcol_exporter_prometheusremotewrite_dropped_points"
SENT_SERIES = "otelcol_exporter_prometheusremotewrite_sent_series"
# Enough of an error answer to say why; receivers put the reason in the first line.
MAX_ERROR_TEXT = 1024


def with_auth(headers: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """``headers`` with the authenticator's, read per POST: they replace a configured header of the same
    name, whatever its case, but never one of the protocol's (a bearertokenauth ``header`` could name one)."""
    names = {name.lower() for name in extra}
    kept = {k: v for k, v in headers.items() if k.lower() not in names or k.lower() in PROTOCOL_HEADERS}
    return {**kept, **{k: v for k, v in extra.items() if k.lower() not in PROTOCOL_HEADERS}}


class RemoteWriteTransport:
    def __init__(self, id_, config, telemetry, authenticator=None):
        self.id = id_
        self.config = config
        self.authenticator = authenticator
        self._tls: ClientTLS | None = None
        self.log = component_logger(id_)
        self.converter = Converter(
            namespace=config.namespace, external_labels=config.external_labels,
            add_metric_suffixes=config.add_metric_suffixes,
            resource_to_telemetry=config.resource_to_telemetry_conversion.enabled,
            target_info=config.target_info.enabled, send_metadata=config.send_metadata)
        # Configured headers first: the protocol's own cannot be replaced (the config refuses it).
        configured, _, stripped = clean_headers(config.headers, grpc=False)
        warn_stripped(self.log, stripped)
        self.headers = {**configured, "Content-Encoding": "snappy",
                        "Content-Type": "application/x-protobuf",
                        "X-Prometheus-Remote-Write-Version": "0.1.0"}
        self.headers.setdefault("User-Agent", user_agent())
        self._session: aiohttp.ClientSession | None = None
        self._warned: set[str] = set()
        self._dropped = telemetry.counter(
            DROPPED_POINTS, "Metric data points the prometheusremotewrite exporter could not write, by reason",
            ["exporter", "reason"])
        self._sent = telemetry.counter(
            SENT_SERIES, "Time series the prometheusremotewrite exporter delivered (one per series per request)",
            ["exporter"]).labels(str(id_))

    async def start(self) -> None:
        parts = urlsplit(self.config.endpoint)
        https = parts.scheme == "https"
        self._tls = ClientTLS(self.config.tls, log=self.log) if https else None  # a bad file fails the start
        connector = aiohttp.TCPConnector()
        # The timeout sender bounds each attempt; this also ends connects and reads that hang.
        timeout = aiohttp.ClientTimeout(total=self.config.timeout or None)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        # Never the whole URL: it may carry credentials.
        self.log.info("prometheus remote write exporter ready", fields={
            "host": parts.hostname, "port": parts.port, "path": parts.path, "tls": https})

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request) -> None:
        # Conversion and compression are CPU work in proportion to the request; off the
        # event loop, receivers keep answering meanwhile.
        bodies, series, drops = await asyncio.to_thread(self._encode, request)
        for reason, count in drops.counts.items():
            self._dropped.labels(str(self.id), reason).inc(count)
            if reason not in self._warned:
                # Once per reason: the counter carries the rate, the log line says why.
                self._warned.add(reason)
                self.log.warning("data points dropped", fields={
                    "reason": reason, "points": count, "metric": drops.examples[reason]})
        for body, count in zip(bodies, series):
            await self._post(body)
            self._sent.inc(count)

    def _encode(self, request):
        converted = self.converter.convert(request)
        requests = write_requests(converted.series, converted.metadata, self.config.max_batch_size_bytes)
        bodies = [bytes(cramjam.snappy.compress_raw(r.SerializeToString())) for r in requests]
        return bodies, [len(r.timeseries) for r in requests], converted.drops

    async def _post(self, body: bytes) -> None:
        if self._session is None:
            raise RetryableError("the exporter is not started")
        try:
            headers = (with_auth(self.headers, self.authenticator.client_headers()) if self.authenticator is not None
                       else self.headers)
            async with self._session.post(self.config.endpoint, data=body, headers=headers,
                                          allow_redirects=False,
                                          **request_options(self._tls, self.config.endpoint)) as response:
                if 200 <= response.status < 300:
                    return
                text = (await response.content.read(MAX_ERROR_TEXT)).decode("utf-8", "replace").strip()
                retry_after = status.retry_after_from_http(response.headers.get("Retry-After"))
                raise status.from_http(response.status, text, retry_after, status.RETRYABLE_REMOTE_WRITE)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise RetryableError(f"remote write failed: {type(error).__name__}: {error}") from None
