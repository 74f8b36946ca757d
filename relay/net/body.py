"""Reading an HTTP request body within a size limit, inflating it if compressed: shared by the
receivers that take HTTP posts (OTLP/HTTP, Zipkin, Jaeger's Thrift HTTP).

The limit bounds both the bytes on the wire and the bytes they inflate to.
Inflation is streamed, each step producing at most what is left of the limit
plus one byte, so a small body that inflates to gigabytes is refused as soon
as it passes the limit and is never held whole (the memory it takes peaks at
about twice the limit, while the step that crosses it is assembled). The wire
is read chunk by chunk and counted, since Content-Length is only the client's word.
"""

from __future__ import annotations

import asyncio
import zlib

from aiohttp.http_exceptions import BadHttpMessage

from relay.errors import InvalidDataError, Problem, TooLargeError

# confighttp's default max_request_body_size, for every receiver that takes HTTP posts.
DEFAULT_MAX_REQUEST_BODY_SIZE = 20 * 1024 * 1024

# What a Content-Encoding header may name; "identity" is the same as no header.
SUPPORTED = ("gzip", "deflate")

_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_RAW = -zlib.MAX_WBITS


# Past this many bytes, decoding a body takes long enough to stall every other request on the
# event loop (tens of milliseconds and up): it runs in a thread instead.
OFF_LOOP_SIZE = 256 * 1024


async def decode(data: bytes, decoder, *args):
    """``decoder(data, *args)``, in a thread for a body past OFF_LOOP_SIZE."""
    if len(data) > OFF_LOOP_SIZE:
        return await asyncio.to_thread(decoder, data, *args)
    return decoder(data, *args)


def body_limit(max_request_body_size: int) -> int:
    """The limit a ``max_request_body_size`` setting means: 0 is the default, as in the collector."""
    return max_request_body_size or DEFAULT_MAX_REQUEST_BODY_SIZE


def size_problem(max_request_body_size: int) -> Problem | None:
    """The setting's problem, if it has one, for a receiver's ``validate()``."""
    if max_request_body_size < 0:
        return Problem(("max_request_body_size",), "must not be negative (0 means the default)")
    return None


async def read_request(request, limit: int) -> bytes:
    """The body of an aiohttp ``request``, inflated per its Content-Encoding, within ``limit``
    bytes (on the wire and inflated). InvalidDataError for a Content-Encoding other than
    gzip or deflate, a body that does not inflate or a broken chunked encoding;
    TooLargeError past the limit, before a byte is read when Content-Length says so already;
    ConnectionError when the client goes away before the end."""
    header = request.headers.get("Content-Encoding", "")
    encoding = coding(header)
    if encoding is None:
        raise InvalidDataError(f'unsupported Content-Encoding "{header}" (supported: {", ".join(SUPPORTED)})')
    if request.content_length is not None and request.content_length > limit:
        raise TooLargeError(f"request body is larger than the limit of {limit} bytes")
    return await read(request.content, encoding, limit)


def coding(header: str) -> str | None:
    """The one content coding to undo ("" for none), or None when it is not one we can undo."""
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return ""
    if len(codings) == 1 and codings[0] in SUPPORTED:
        return codings[0]
    return None


async def read(stream, encoding: str, limit: int) -> bytes:
    """The body of ``stream`` (an aiohttp StreamReader), inflated per ``encoding`` ("" for none).

    TooLargeError past ``limit`` bytes on the wire or inflated; InvalidDataError
    for a compressed stream that does not inflate or a broken chunked encoding.
    ConnectionError when the client goes away before the end.
    """
    inflater = _Inflater(encoding, limit) if encoding else None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in stream.iter_any():
            size += len(chunk)
            if size > limit:
                raise TooLargeError(f"request body is larger than the limit of {limit} bytes")
            if inflater is None:
                chunks.append(chunk)
            else:
                inflater.feed(chunk)
    except BadHttpMessage as error:
        raise InvalidDataError(f"malformed request body: {error.message}") from None
    if inflater is None:
        return b"".join(chunks)
    return inflater.finish()


class _Inflater:
    def __init__(self, encoding: str, limit: int):
        self.encoding = encoding
        self.limit = limit
        self.size = 0
        self.parts: list[bytes] = []
        self._z = None
        self._head = b""  # the first bytes of a deflate body, until its framing is known

    def feed(self, data: bytes) -> None:
        if self._z is None:
            data = self._begin(data)
        try:
            while data:
                if self._z.eof:
                    data = self._next_member(data)
                piece = self._z.decompress(data, self.limit - self.size + 1)
                self.size += len(piece)
                if self.size > self.limit:
                    raise TooLargeError(f"request body inflates to more than the limit of {self.limit} bytes")
                if piece:
                    self.parts.append(piece)
                data = self._z.unused_data if self._z.eof else self._z.unconsumed_tail
        except zlib.error as error:
            raise InvalidDataError(f"cannot inflate the {self.encoding} request body: {error}") from None

    def finish(self) -> bytes:
        if self._z is None and not self._head:
            return b""  # an empty body: nothing was compressed
        if self._z is None or not self._z.eof:
            raise InvalidDataError(f"the {self.encoding} request body is truncated")
        return b"".join(self.parts)

    def _begin(self, data: bytes) -> bytes:
        if self.encoding == "gzip":
            self._z = zlib.decompressobj(_GZIP)
            return data
        # "deflate" is the zlib format (RFC 9110), but some clients send raw deflate:
        # a zlib stream opens with a method nibble of 8 and a header checksum.
        self._head += data
        if len(self._head) < 2:
            return b""
        first, second = self._head[0], self._head[1]
        zlib_framed = first & 0x0F == 8 and (first << 8 | second) % 31 == 0
        self._z = zlib.decompressobj(_ZLIB if zlib_framed else _RAW)
        data, self._head = self._head, b""
        return data

    def _next_member(self, data: bytes) -> bytes:
        # A gzip body may hold several members, read one after another;
        # anything after a zlib or raw deflate stream is malformed.
        if self.encoding != "gzip":
            raise InvalidDataError(f"data after the end of the {self.encoding} request body")
        self._z = zlib.decompressobj(_GZIP)
        return data
