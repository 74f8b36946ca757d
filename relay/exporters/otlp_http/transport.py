"""The OTLP/HTTP client: one aiohttp session, one POST per request.

Answers are classified here, where they enter the process, by the OTLP/HTTP
rules in ``relay.status``: 2xx is success (a partial_success in the body is
logged and counted, never retried), 429/502/503/504 are retryable with their
``Retry-After``, every other status is permanent. Redirects are not followed:
re-sending telemetry to wherever a downstream points is not something to do
silently. A request that never got an answer (refused, reset, timed out) is
retryable.
"""

from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
from google.rpc import status_pb2
from multidict import CIMultiDict

from relay import otlpjson, received, status
from relay.errors import ConfigError, PermanentError, RetryableError, ShutdownError
from relay.exporters.helper.partial import note_partial_success
from relay.net.endpoints import display_url
from relay.net.headers import clean as clean_headers
from relay.net.headers import warn_stripped
from relay.net.http_client import user_agent
from relay.net.tls import ClientTLS
from relay.net.tls import request_options as _tls_options
from relay.signals import Signal, signal_of
from relay.telemetry import component_logger

CONTENT_TYPES = {"proto": "application/x-protobuf", "json": "application/json"}

# Answers are small (an empty body, a partial_success, a Status); more is not read.
MAX_ANSWER_BYTES = 1 << 20
# Below this, compressing inline costs less than a hop to a thread.
INLINE_GZIP_BYTES = 64 * 1024


class HttpTransport:
    def __init__(self, id_, config, telemetry, used: frozenset[Signal] = frozenset(), authenticator=None):
        self.id = id_
        self.authenticator = authenticator
        self.config = config
        self.metrics = telemetry
        self.used = used
        self.log = component_logger(id_)
        self.urls = {signal: config.url(signal) for signal in Signal}
        self.compress = config.compression == "gzip"
        headers = CIMultiDict({"User-Agent": user_agent()})
        configured, _, stripped = clean_headers(config.headers, grpc=False)
        warn_stripped(self.log, stripped)
        for key, value in configured.items():
            headers[key] = value  # replaces, case-insensitively: a configured User-Agent wins
        # What the body is cannot be overridden by configured headers.
        headers["Content-Type"] = CONTENT_TYPES[config.encoding]
        if self.compress:
            headers["Content-Encoding"] = "gzip"
        else:
            headers.popall("Content-Encoding", None)
        self.headers = headers
        self._session: aiohttp.ClientSession | None = None
        self._tls: ClientTLS | None = None

    async def start(self) -> None:
        problems = self.config.signal_problems(self.used)
        if problems:
            raise ConfigError([p.under("exporters", str(self.id)) for p in problems])
        if any(url.startswith("https://") for url in self.urls.values()):
            self._tls = ClientTLS(self.config.tls, log=self.log)  # a missing or bad file fails the start
        queue = self.config.sending_queue
        # One connection per queue consumer, so sends never wait on each other for a socket.
        limit = max(16, queue.num_consumers if queue.enabled else 0)
        connector = aiohttp.TCPConnector(limit=limit)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self.headers, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout or None))
        self.log.info("OTLP/HTTP exporter ready", fields={
            "urls": {signal.value: display_url(url) for signal, url in self.urls.items() if url},
            "encoding": self.config.encoding, "compression": "gzip" if self.compress else "none",
            **({"auth": self.config.auth.authenticator} if self.authenticator is not None else {})})

    async def shutdown(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def send(self, request) -> None:
        session = self._session
        if session is None:
            raise ShutdownError("the OTLP/HTTP exporter is not running")
        signal = signal_of(request)
        url = self.urls[signal]
        if not url:
            raise PermanentError(f"no URL for {signal.value}: set endpoint or {signal.value}_endpoint")
        body = await self._body(request)
        shown = display_url(url)
        try:
            # The authenticator's header, read per POST, replaces a configured one of the same name.
            extra = self.authenticator.client_headers() if self.authenticator is not None else None
            async with session.post(url, data=body, headers=extra, allow_redirects=False,
                                    **_tls_options(self._tls, url)) as answer:
                code = answer.status
                content_type = answer.content_type
                retry_after = status.retry_after_from_http(answer.headers.get("Retry-After"))
                location = answer.headers.get("Location", "")
                reason = answer.reason or ""
                payload = await _read_capped(answer)
        except (aiohttp.ClientError, OSError) as error:  # OSError covers TimeoutError
            if isinstance(error, TimeoutError):
                raise RetryableError(f"timed out posting to {shown}") from None
            raise RetryableError(f"could not post to {shown}: {error}") from None
        if 200 <= code < 300:
            self._check_partial(signal, content_type, payload)
            return
        if 300 <= code < 400:
            where = f" to {display_url(location)}" if location else ""
            raise PermanentError(f"downstream answered HTTP {code} (a redirect{where}) for {shown}; "
                                 "redirects are not followed: configure the final URL", status=str(code))
        message = _status_message(content_type, payload) or f"{reason} ({shown})".strip()
        raise status.from_http(code, message, retry_after)

    async def _body(self, request) -> bytes:
        if self.config.encoding == "json":
            data = otlpjson.encode(request)
        else:
            data = received.raw_bytes(request)  # the wire form, while it still describes the request
            if data is None:
                data = request.SerializeToString()
        if not self.compress:
            return data
        if len(data) < INLINE_GZIP_BYTES:
            return gzip.compress(data, compresslevel=6, mtime=0)
        return await asyncio.to_thread(gzip.compress, data, 6, mtime=0)

    def _check_partial(self, signal: Signal, content_type: str, payload: bytes) -> None:
        if not payload or content_type not in CONTENT_TYPES.values():
            return  # an empty or non-OTLP body on a 2xx is a plain success
        try:
            if content_type == CONTENT_TYPES["json"]:
                response = otlpjson.decode(payload, signal.response_type)
            else:
                response = signal.response_type.FromString(payload)
        except Exception:  # noqa: BLE001 - the data was accepted; a garbled answer changes nothing
            self.log.warning("could not parse the downstream's answer", fields={"signal": signal.value})
            return
        note_partial_success(self.id, signal, response, self.metrics, self.log)


async def _read_capped(answer: aiohttp.ClientResponse) -> bytes:
    chunks, size = [], 0
    async for chunk in answer.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_ANSWER_BYTES:
            break
    return b"".join(chunks)[:MAX_ANSWER_BYTES]


def _status_message(content_type: str, payload: bytes) -> str:
    """The google.rpc.Status message of an error body; for plain text, its first line."""
    if not payload:
        return ""
    try:
        if content_type == CONTENT_TYPES["proto"]:
            return status_pb2.Status.FromString(payload).message
        if content_type == CONTENT_TYPES["json"]:
            tree = json.loads(payload)
            message = tree.get("message") if isinstance(tree, dict) else None
            return message if isinstance(message, str) else ""
    except Exception:  # noqa: BLE001 - an unreadable body leaves the status code to speak
        return ""
    if content_type.startswith("text/plain"):
        line = payload[:512].decode("utf-8", "replace").strip().splitlines()
        return line[0][:200] if line else ""
    return ""
