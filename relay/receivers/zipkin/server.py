"""The Zipkin HTTP server: ``POST /api/v2/spans`` (Zipkin v2 JSON, ``application/json``, or a
``zipkin.proto3.ListOfSpans``, ``application/x-protobuf``) and ``POST /api/v1/spans`` (Zipkin
v1 JSON). A request without a Content-Type is read as JSON, as the collector reads it.

Answers, in Zipkin's terms (plain text, as the collector's ``http.Error``):

- 202 Accepted, empty, once the pipeline has taken the spans (Zipkin's API says 202);
- 400 for a body that does not decode or a span that is wrong (the message names the span and
  field), or a Content-Encoding other than gzip or deflate; 413 past ``max_request_body_size``
  (on the wire or inflated); 415 for another content type, v1 Thrift included;
- a pipeline's refusal as ``relay.status`` maps it, as the OTLP/HTTP receiver answers it
  (503 or 429 with Retry-After where the pipeline named a delay, 400 for data a downstream
  called malformed, 500 for the rest).

What happens between decoding and answering (counting, refusals, logs) is ``relay.intake``'s.
"""

from __future__ import annotations

import functools
import ssl

from aiohttp import web

from relay import status
from relay.errors import InvalidDataError, TooLargeError
from relay.httpserver import HttpListener
from relay.intake import Intake
from relay.net import body
from relay.net.tls import CertificateFiles
from relay.receivers.zipkin import translate, v1, v2
from relay.signals import Signal
from relay.telemetry import component_logger

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
THRIFT = "application/x-thrift"
V2_PATH = "/api/v2/spans"
V1_PATH = "/api/v1/spans"

# The collector's transport names, the receiver's self-metrics label.
TRANSPORTS = {(V2_PATH, JSON): "http_v2_json", (V2_PATH, PROTOBUF): "http_v2_proto", (V1_PATH, JSON): "http_v1_json"}
_DECODERS = {"http_v2_json": v2.from_json, "http_v2_proto": v2.from_protobuf, "http_v1_json": v1.from_json}
_THRIFT_REFUSED = ("415 Zipkin v1 Thrift is not supported: send Zipkin v1 JSON here, "
                   f"or Zipkin v2 JSON or protobuf to {V2_PATH}")


class ZipkinReceiver:
    def __init__(self, id_, config, consumer, telemetry):
        self.id = id_
        self.config = config
        self.log = component_logger(id_)
        self.port: int | None = None
        self._intakes = {transport: Intake(id_, Signal.TRACES, consumer, telemetry, transport, self.log, False)
                         for transport in _DECODERS}
        self._listener: HttpListener | None = None

    async def start(self) -> None:
        context = server_ssl_context(self.config.tls, ("receivers", str(self.id), "tls")) \
            if self.config.tls is not None else None
        app = web.Application()
        app.router.add_post(V2_PATH, functools.partial(self._export, V2_PATH))
        app.router.add_post(V1_PATH, functools.partial(self._export, V1_PATH))
        # Bodies are inflated within the size limit by relay.net.body, so aiohttp must not do it first.
        listener = HttpListener(app, self.config.endpoint, ssl_context=context, auto_decompress=False)
        try:
            await listener.start()
        except OSError as error:
            await listener.shutdown(0)
            raise OSError(f"cannot listen on {self.config.endpoint}: {error}") from None
        self._listener, self.port = listener, listener.port
        self.log.info("Zipkin receiver listening", fields={"endpoint": self.config.endpoint, "port": self.port,
                                                           "tls": context is not None})

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting at once; requests in flight get ``grace`` seconds, then are cancelled."""
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.shutdown(grace)

    async def _export(self, path: str, request: web.Request) -> web.Response:
        media = request.content_type if "Content-Type" in request.headers else JSON
        transport = TRANSPORTS.get((path, media))
        if transport is None:
            intake = self._intakes["http_v1_json" if path == V1_PATH else "http_v2_json"]
            supported = f"{JSON}" if path == V1_PATH else f"{JSON}, {PROTOBUF}"
            text = _THRIFT_REFUSED if media == THRIFT and path == V1_PATH else \
                f"415 unsupported media type, supported: [{supported}]"
            intake.refusal(InvalidDataError(f'unsupported content type "{media}"'), 0, 415)
            return web.Response(status=415, text=text)
        intake = self._intakes[transport]
        try:
            data = await body.read_request(request, self.config.body_limit())
            otlp = await body.decode(data, _decode, transport, self.config.parse_string_tags)
        except (InvalidDataError, TooLargeError) as error:
            return _refuse(intake, error, 0)
        except ConnectionError:
            # The client went away mid-body: no one is left to answer.
            self.log.debug("client went away before sending its whole request", fields={"transport": transport})
            return web.Response(status=400)
        except Exception as error:  # noqa: BLE001 - a decoder's gap is still a counted refusal, never a bare 500
            return _refuse(intake, intake.unreadable(error, f"the {transport} body"), 0)
        count, failure = await intake.deliver(otlp, None, request.headers.items(), request.remote or "")
        if failure is not None:
            return _refuse(intake, failure, count)
        return web.Response(status=202)


def _decode(data: bytes, transport: str, parse_string_tags: bool):
    return translate.to_otlp(_DECODERS[transport](data), parse_string_tags)


def _refuse(intake: Intake, error: BaseException, count: int) -> web.Response:
    code, headers = status.http_refusal(error)
    return web.Response(status=code, text=intake.refusal(error, count, code), headers=headers)


def server_ssl_context(tls, where: tuple[str, ...]) -> ssl.SSLContext:
    """The listener's TLS, from files read once at start; an unusable file (an encrypted key
    included: never a passphrase prompt) stops the start, named."""
    return CertificateFiles(tls, where).load().context
