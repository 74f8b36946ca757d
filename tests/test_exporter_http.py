"""The OTLP/HTTP exporter against a real aiohttp sink on 127.0.0.1 (plaintext and TLS).

The sink runs on the test's own event loop, records what arrived (path, headers,
the body as sent and decompressed) and answers what the test chose.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import gzip
import ipaddress
import ssl
import time
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from google.rpc import status_pb2
from prometheus_client import CollectorRegistry

from relay import otlpjson, received, status
from relay.component import ComponentID, Host, Settings
from relay.config.decode import Duration, decode
from relay.config.load import load
from relay.errors import ConfigError, PermanentError, RetryableError
from relay.exporters import otlp_grpc, otlp_http
from relay.pipeline.registry import Registry
from relay.receivers import otlp as otlp_receiver
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import ExporterHarness, free_port, logs_request, metrics_request, profiles_request, traces_request

EXPORTER = "otlphttp/test"
REQUESTS = {Signal.TRACES: traces_request, Signal.METRICS: metrics_request, Signal.LOGS: logs_request,
            Signal.PROFILES: profiles_request}
PROTO, JSON = "application/x-protobuf", "application/json"


# --- the sink ---------------------------------------------------------------------------

@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict = field(default_factory=dict)


@dataclass
class Post:
    path: str
    headers: dict
    wire: bytes   # as it arrived
    body: bytes   # after undoing Content-Encoding
    status: int   # what the sink answered
    at: float     # time.monotonic() on arrival

    def request(self, signal: Signal):
        content_type = self.headers.get("Content-Type", "")
        if content_type == JSON:
            return otlpjson.decode(self.body, signal.request_type)
        assert content_type == PROTO, content_type
        return signal.request_type.FromString(self.body)


class HttpSink:
    """A fake OTLP/HTTP downstream. ``answers`` are used one per POST, then ``default``;
    while ``hold`` is clear, POSTs wait (until the sink stops)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None):
        self.ssl_context = ssl_context
        self.posts: list[Post] = []
        self.answers: list[Answer] = []
        self.default = Answer()
        self.hold = asyncio.Event()
        self.hold.set()
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        wire = await request.read()
        body = gzip.decompress(wire) if request.headers.get("Content-Encoding") == "gzip" else wire
        answer = self.answers.pop(0) if self.answers else self.default
        headers = {k: v for k, v in request.headers.items()}
        self.posts.append(Post(request.path, headers, wire, body, answer.status, time.monotonic()))
        if not self.hold.is_set():
            async with asyncio.timeout(10):
                await self.hold.wait()
        response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        if answer.content_type:
            response.content_type = answer.content_type
        return response

    async def __aenter__(self) -> HttpSink:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Bodies are decompressed by hand, to see what was on the wire.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.hold.set()
        await self._runner.cleanup()

    def url(self, path: str = "") -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}{path}"

    @property
    def accepted(self) -> list[Post]:
        return [post for post in self.posts if 200 <= post.status < 300]


# --- harness ----------------------------------------------------------------------------

def make_config(**settings) -> otlp_http.Config:
    # One consume, one attempt, its outcome raised (see test_exporter_grpc.make_config).
    raw = {"sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}}
    raw.update(settings)
    config, problems = decode(otlp_http.Config, raw)
    assert problems == [], problems
    return config


class Harness(ExporterHarness):
    def __init__(self, config: otlp_http.Config, host: Host | None = None):
        super().__init__(EXPORTER)
        self.exporter = otlp_http.create(Settings(ComponentID.parse(EXPORTER), self.telemetry, host=host), config)


def export_once(request, *answers: Answer, sink_tls: ssl.SSLContext | None = None, **settings):
    """(error, harness, sink) for one consume against a fresh sink answering ``answers``."""
    async def run():
        async with HttpSink(sink_tls) as sink:
            sink.answers = list(answers)
            settings.setdefault("endpoint", sink.url())
            async with Harness(make_config(**settings)) as harness:
                error = await harness.consume(request)
            return error, harness, sink

    return asyncio.run(run())


async def until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


# --- delivery ---------------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["gzip", "none"])
@pytest.mark.parametrize("encoding", ["proto", "json"])
@pytest.mark.parametrize("signal", list(Signal), ids=lambda s: s.value)
def test_delivers_each_signal_in_each_encoding(signal, encoding, compression):
    request = REQUESTS[signal]()
    error, h, sink = export_once(request, encoding=encoding, compression=compression)
    assert error is None, error
    [post] = sink.posts
    assert post.path == ("/v1development/profiles" if signal is Signal.PROFILES else f"/v1/{signal.value}")
    assert post.headers["Content-Type"] == (JSON if encoding == "json" else PROTO)
    if compression == "gzip":
        assert post.headers["Content-Encoding"] == "gzip" and post.wire[:2] == b"\x1f\x8b"
    else:
        assert "Content-Encoding" not in post.headers and post.wire == post.body
    assert post.request(signal) == request
    assert h.sent(signal) == signal.count(request) > 0
    assert h.failed(signal, True) == h.failed(signal, False) == 0


def test_gzip_and_proto_are_the_defaults_and_compression_shrinks_the_body():
    request = traces_request(spans=5, attribute_bytes=32 * 1024)
    error, _, sink = export_once(request)
    assert error is None, error
    [post] = sink.posts
    assert post.headers["Content-Type"] == PROTO and post.headers["Content-Encoding"] == "gzip"
    assert len(post.wire) < len(post.body) / 10
    assert post.request(Signal.TRACES) == request


def test_the_received_wire_form_is_sent_as_it_came():
    # While a request still has the bytes it arrived as, those go out unchanged. These
    # carry an unknown field (number 1000) the request object never saw: serializing
    # the object again would leave it out.
    request = logs_request()
    original = request.SerializeToString() + b"\xc2\x3e\x02hi"

    async def run():
        async with HttpSink() as sink, Harness(make_config(endpoint=sink.url(), compression="none")) as h:
            token = received.bind(request, original)
            try:
                assert await h.consume(request) is None
            finally:
                received.unbind(token)
            assert await h.consume(logs_request()) is None  # unbound: serialized afresh
            return sink

    sink = asyncio.run(run())
    assert [post.wire for post in sink.posts] == [original, logs_request().SerializeToString()]


def test_per_signal_endpoints_are_used_as_given():
    async def run():
        async with HttpSink() as sink:
            config = make_config(endpoint=sink.url("/base"), traces_endpoint=sink.url("/custom/spans"))
            async with Harness(config) as h:
                for signal in Signal:
                    assert await h.consume(REQUESTS[signal]()) is None
            return sink

    sink = asyncio.run(run())
    assert [post.path for post in sink.posts] == ["/custom/spans", "/base/v1/metrics", "/base/v1/logs",
                                                  "/base/v1development/profiles"]
    assert [post.request(s) for post, s in zip(sink.posts, Signal)] == [REQUESTS[s]() for s in Signal]


@pytest.mark.parametrize("settings, expected", [
    ({"endpoint": "http://h:4318"}, ["http://h:4318/v1/traces", "http://h:4318/v1/metrics", "http://h:4318/v1/logs",
                                     "http://h:4318/v1development/profiles"]),
    ({"endpoint": "https://h/otlp/"}, ["https://h/otlp/v1/traces", "https://h/otlp/v1/metrics",
                                       "https://h/otlp/v1/logs", "https://h/otlp/v1development/profiles"]),
    ({"endpoint": "http://h:4318", "logs_endpoint": "http://l:9/ingest"},
     ["http://h:4318/v1/traces", "http://h:4318/v1/metrics", "http://l:9/ingest",
      "http://h:4318/v1development/profiles"]),
    ({"traces_endpoint": "http://t/x"}, ["http://t/x", "", "", ""]),
    ({"profiles_endpoint": "http://p/x"}, ["", "", "", "http://p/x"]),
])
def test_signal_urls(settings, expected):
    config = make_config(**settings)
    assert [config.url(signal) for signal in Signal] == expected


def test_a_signal_without_a_url_is_refused_permanently():
    error, h, _ = export_once(logs_request(), endpoint="", traces_endpoint="http://127.0.0.1:1/x")
    assert isinstance(error, PermanentError) and "logs_endpoint" in str(error)
    assert h.failed(Signal.LOGS, False) == 4


def test_a_pipeline_sending_a_signal_without_a_url_is_a_config_problem():
    # Loaded through the alias, as a user would write it; the logs pipeline has no URL.
    registry = Registry().add("receivers", otlp_receiver).add("exporters", otlp_http)
    with pytest.raises(ConfigError) as caught:
        load("""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
exporters:
  otlphttp:
    traces_endpoint: http://127.0.0.1:1/v1/traces
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlphttp]
    logs:
      receivers: [otlp]
      exporters: [otlphttp]
""", registry)
    assert [str(p) for p in caught.value.problems] == [
        "exporters::otlphttp::logs_endpoint: no URL for logs: set endpoint or logs_endpoint"]


def test_headers_are_sent_and_the_body_headers_cannot_be_overridden():
    headers = {"X-Tenant": "acme", "authorization": "Bearer s3cret", "content-type": "text/plain"}
    error, _, sink = export_once(traces_request(), headers=headers, compression="none")
    assert error is None, error
    [post] = sink.posts
    assert post.headers["X-Tenant"] == "acme"
    assert post.headers["Authorization"] == "Bearer s3cret"
    assert post.headers["Content-Type"] == PROTO
    assert post.headers["User-Agent"].startswith("genops-relay/")
    assert post.request(Signal.TRACES) == traces_request()


def test_a_configured_user_agent_wins():
    error, _, sink = export_once(traces_request(), headers={"User-Agent": "mine/1.0"})
    assert error is None, error
    assert sink.posts[0].headers["User-Agent"] == "mine/1.0"


def test_several_requests_reuse_one_session():
    async def run():
        async with HttpSink() as sink, Harness(make_config(endpoint=sink.url())) as h:
            session = h.exporter.transport._session
            for signal in (Signal.TRACES, Signal.LOGS, Signal.TRACES, Signal.METRICS):
                assert await h.consume(REQUESTS[signal]()) is None
            assert h.exporter.transport._session is session
        assert h.exporter.transport._session is None and session.closed
        return h, sink

    h, sink = asyncio.run(run())
    assert len(sink.posts) == 4
    assert (h.sent(Signal.TRACES), h.sent(Signal.METRICS), h.sent(Signal.LOGS)) == (6, 5, 4)


# --- classification ---------------------------------------------------------------------

def _status_body(message: str, content_type: str = PROTO) -> Answer:
    status_message = status_pb2.Status(code=3, message=message)
    if content_type == JSON:
        return Answer(body=b'{"code": 3, "message": "%s", "details": []}' % message.encode(), content_type=JSON)
    return Answer(body=status_message.SerializeToString(), content_type=PROTO)


def _answer(code: int, message: str = "", content_type: str = PROTO, **headers) -> Answer:
    answer = _status_body(message, content_type) if message else Answer()
    answer.status = code
    answer.headers = {k.replace("_", "-"): v for k, v in headers.items()}
    return answer


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


CLASSIFICATION = [
    # (answer, error class or None, status, retry_after: None, a number, or a (low, high) range)
    pytest.param(Answer(200), None, None, None, id="200"),
    pytest.param(Answer(202, b"", JSON), None, None, None, id="202-empty-json"),
    pytest.param(_answer(400, "bad span id"), PermanentError, "400", None, id="400"),
    pytest.param(_answer(401, "who are you", JSON), PermanentError, "401", None, id="401"),
    pytest.param(_answer(404), PermanentError, "404", None, id="404"),
    pytest.param(_answer(413), PermanentError, "413", None, id="413"),
    pytest.param(_answer(400, Retry_After="5"), PermanentError, "400", None, id="400-ignores-retry-after"),
    pytest.param(_answer(429, Retry_After="7"), RetryableError, None, 7.0, id="429-retry-after-seconds"),
    pytest.param(_answer(429), RetryableError, None, None, id="429-no-retry-after"),
    # An hour ahead: the table is built when tests are collected, which may be minutes before this runs.
    pytest.param(_answer(503, "overloaded", Retry_After=_http_date(3600)), RetryableError, None, (3000.0, 3601.0),
                 id="503-retry-after-date"),
    pytest.param(_answer(503, Retry_After="soon"), RetryableError, None, None, id="503-garbled-retry-after"),
    pytest.param(_answer(502), RetryableError, None, None, id="502"),
    pytest.param(_answer(504), RetryableError, None, None, id="504"),
    pytest.param(_answer(500, "boom"), PermanentError, "500", None, id="500"),
    pytest.param(_answer(501), PermanentError, "501", None, id="501"),
    pytest.param(_answer(301, Location="https://elsewhere.example/v1/traces"), PermanentError, "301", None,
                 id="301"),
    pytest.param(_answer(307), PermanentError, "307", None, id="307"),
]


@pytest.mark.parametrize("answer, kind, status_text, retry_after", CLASSIFICATION)
def test_answers_are_classified(answer, kind, status_text, retry_after):
    error, h, sink = export_once(traces_request(spans=2), answer)
    assert len(sink.posts) == 1  # never a redirect followed, never a second attempt here
    if kind is None:
        assert error is None, error
        assert h.sent(Signal.TRACES) == 2
        return
    assert type(error) is kind, error
    assert f"HTTP {answer.status}" in str(error)
    if kind is PermanentError:
        assert error.status == status_text
        assert h.failed(Signal.TRACES, False) == 2
    else:
        assert h.failed(Signal.TRACES, True) == 2
        if isinstance(retry_after, tuple):
            assert retry_after[0] <= error.retry_after <= retry_after[1], error.retry_after
        else:
            assert error.retry_after == retry_after
    assert h.sent(Signal.TRACES) == 0


def test_400_is_invalid_data_for_our_own_clients():
    error, _, _ = export_once(traces_request(), _answer(400, "bad span id"))
    assert status.to_grpc(error)[0] == status.StatusCode.INVALID_ARGUMENT
    assert status.to_http(error)[0] == 400


@pytest.mark.parametrize("content_type", [PROTO, JSON])
def test_the_status_message_of_an_error_body_is_in_the_error(content_type):
    error, _, _ = export_once(traces_request(), _answer(503, "ingest is overloaded", content_type))
    assert isinstance(error, RetryableError)
    assert "ingest is overloaded" in str(error)


def test_a_plain_text_error_body_gives_its_first_line():
    answer = Answer(413, b"payload too large, limit is 1MB\nmore detail\n", "text/plain")
    error, _, _ = export_once(traces_request(), answer)
    assert isinstance(error, PermanentError)
    assert "payload too large, limit is 1MB" in str(error) and "more detail" not in str(error)


def test_a_redirect_names_where_it_points_and_is_not_followed():
    error, _, sink = export_once(traces_request(), _answer(308, Location="https://new.example/v1/traces"))
    assert isinstance(error, PermanentError)
    assert "redirect" in str(error) and "https://new.example/v1/traces" in str(error)
    assert len(sink.posts) == 1


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_partial_success_is_counted_and_logged_not_retried(encoding, component_log):
    response = Signal.LOGS.response_type()
    response.partial_success.rejected_log_records = 3
    response.partial_success.error_message = "three were too old"
    answer = (Answer(200, response.SerializeToString(), PROTO) if encoding == "proto"
              else Answer(200, otlpjson.encode(response), JSON))
    error, h, sink = export_once(logs_request(), answer)
    assert error is None, error
    assert len(sink.posts) == 1
    assert h.rejected(Signal.LOGS) == 3
    assert h.sent(Signal.LOGS) == 4
    [record] = [r for r in component_log.records if r.getMessage() == "partial success"]
    assert record.fields == {"signal": "logs", "rejected": 3, "message": "three were too old"}


def test_full_success_with_a_response_body_counts_no_rejections(component_log):
    answer = Answer(200, Signal.METRICS.response_type().SerializeToString(), PROTO)
    error, h, _ = export_once(metrics_request(), answer)
    assert error is None
    assert h.rejected(Signal.METRICS) == 0
    assert not [r for r in component_log.records if r.levelname == "WARNING"]


def test_a_garbled_success_body_is_still_a_success(component_log):
    error, h, _ = export_once(metrics_request(), Answer(200, b"\xff\xff\xff", PROTO))
    assert error is None
    assert h.sent(Signal.METRICS) == 5
    assert any(r.getMessage() == "could not parse the downstream's answer" for r in component_log.records)


def test_nothing_listening_is_retryable():
    error, h, _ = export_once(traces_request(spans=1), endpoint=f"http://127.0.0.1:{free_port()}")
    assert isinstance(error, RetryableError), error
    assert "could not post to" in str(error)
    assert h.failed(Signal.TRACES, True) == 1


def test_a_downstream_that_never_answers_times_out_and_the_next_send_works():
    async def run():
        async with HttpSink() as sink, Harness(make_config(endpoint=sink.url(), timeout="0.3s")) as h:
            sink.hold.clear()
            error = await h.consume(traces_request(spans=2))
            sink.hold.set()
            assert await h.consume(logs_request()) is None
            return error, h, sink

    error, h, sink = asyncio.run(run())
    assert isinstance(error, RetryableError) and "timed out" in str(error), error
    assert h.failed(Signal.TRACES, True) == 2
    assert h.sent(Signal.LOGS) == 4
    assert sink.posts[-1].request(Signal.LOGS) == logs_request()


# --- with the queue and retry on --------------------------------------------------------

def test_a_503_then_200_is_delivered_exactly_once_after_a_retry():
    request = traces_request(spans=3)

    async def run():
        async with HttpSink() as sink:
            sink.answers = [_answer(503, "warming up")]
            config, problems = decode(otlp_http.Config, {
                "endpoint": sink.url(), "retry_on_failure": {"initial_interval": "10ms", "max_interval": "20ms"}})
            assert problems == []
            async with Harness(config) as h:
                assert await h.consume(request) is None  # queued
                assert await until(lambda: len(sink.accepted) == 1)
            return h, sink

    h, sink = asyncio.run(run())
    assert [post.status for post in sink.posts] == [503, 200]
    assert sink.accepted[0].request(Signal.TRACES) == request
    assert h.sent(Signal.TRACES) == 3
    assert h.failed(Signal.TRACES, True) == h.failed(Signal.TRACES, False) == 0


def test_retry_after_is_honoured_by_the_retry():
    async def run():
        async with HttpSink() as sink:
            sink.answers = [_answer(429, Retry_After="1")]
            config, problems = decode(otlp_http.Config, {
                "endpoint": sink.url(), "sending_queue": {"enabled": False},
                "retry_on_failure": {"initial_interval": "10ms", "max_interval": "20ms"}})
            assert problems == []
            async with Harness(config) as h:
                assert await h.consume(logs_request()) is None
            return sink

    sink = asyncio.run(run())
    assert [post.status for post in sink.posts] == [429, 200]
    assert sink.posts[1].at - sink.posts[0].at >= 0.95  # the downstream's 1 s, not the 10 ms backoff


# --- TLS --------------------------------------------------------------------------------

def _pki(tmp_path) -> dict:
    """A throwaway CA, a server certificate for 127.0.0.1 / localhost and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def issue(subject, key, issuer, signer, extensions):
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=2)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = issue("otlphttp test CA", ca_key, "otlphttp test CA", ca_key, [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       encipher_only=False, decipher_only=False), True)])
    server = issue("localhost", server_key, "otlphttp test CA", ca_key, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                      x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)])
    client = issue("otlphttp test client", client_key, "otlphttp test CA", ca_key, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)])

    files = {}
    for label, cert, key in (("ca", ca, None), ("server", server, server_key), ("client", client, client_key)):
        files[label] = tmp_path / f"{label}.pem"
        files[label].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            files[f"{label}_key"] = tmp_path / f"{label}-key.pem"
            files[f"{label}_key"].write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return files


@pytest.fixture
def pki(tmp_path):
    pytest.importorskip("cryptography")
    return _pki(tmp_path)


def server_tls(pki, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server"], pki["server_key"])
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki["ca"])
    return context


def test_https_with_the_ca_file_delivers(pki):
    request = traces_request(spans=2)
    error, h, sink = export_once(request, sink_tls=server_tls(pki), tls={"ca_file": str(pki["ca"])})
    assert error is None, error
    assert sink.posts[0].request(Signal.TRACES) == request
    assert h.sent(Signal.TRACES) == 2


def test_https_without_the_ca_fails_retryable_and_delivers_nothing(pki):
    # The system roots do not trust the test CA: the handshake fails, as a connection
    # failure (retryable, as in the collector; the downstream's certificate may be fixed).
    error, h, sink = export_once(traces_request(spans=1), sink_tls=server_tls(pki))
    assert isinstance(error, RetryableError), error
    assert "certificate" in str(error).lower()
    assert sink.posts == []
    assert h.failed(Signal.TRACES, True) == 1


def test_insecure_skip_verify_delivers_without_the_ca(pki):
    error, _, sink = export_once(logs_request(), sink_tls=server_tls(pki), tls={"insecure_skip_verify": True})
    assert error is None, error
    assert len(sink.posts) == 1


def test_mutual_tls(pki):
    tls = {"ca_file": str(pki["ca"]), "cert_file": str(pki["client"]), "key_file": str(pki["client_key"])}
    error, _, sink = export_once(metrics_request(), sink_tls=server_tls(pki, require_client_cert=True), tls=tls)
    assert error is None, error
    assert sink.posts[0].request(Signal.METRICS) == metrics_request()

    error, _, sink = export_once(metrics_request(), sink_tls=server_tls(pki, require_client_cert=True),
                                 tls={"ca_file": str(pki["ca"])})
    assert isinstance(error, RetryableError), error
    assert sink.posts == []


def test_http_to_a_tls_sink_fails(pki):
    async def run():
        async with HttpSink(server_tls(pki)) as sink:
            config = make_config(endpoint=sink.url().replace("https://", "http://"), timeout="5s")
            async with Harness(config) as h:
                return await h.consume(traces_request(spans=1)), sink

    error, sink = asyncio.run(run())
    assert isinstance(error, RetryableError), error
    assert sink.posts == []


def test_a_missing_ca_file_fails_the_start(tmp_path):
    config = make_config(endpoint="https://127.0.0.1:1", tls={"ca_file": str(tmp_path / "absent.pem")})
    exporter = otlp_http.create(Settings(ComponentID.parse(EXPORTER), SelfMetrics(CollectorRegistry())), config)

    async def run():
        try:
            with pytest.raises(OSError):
                await exporter.start()
        finally:
            await exporter.shutdown()

    asyncio.run(run())


def test_tls_files_are_not_read_for_http_urls(tmp_path):
    # The scheme decides TLS: with only http:// URLs, TLS settings are never loaded.
    config = make_config(endpoint="http://127.0.0.1:1", tls={"ca_file": str(tmp_path / "absent.pem")})
    exporter = otlp_http.create(Settings(ComponentID.parse(EXPORTER), SelfMetrics(CollectorRegistry())), config)

    async def run():
        await exporter.start()
        await exporter.shutdown()

    asyncio.run(run())


# --- configuration ----------------------------------------------------------------------

VALIDATION = [
    ({}, [("endpoint: required: a base URL (e.g. http://host:4318), or traces_endpoint, metrics_endpoint "
           "and logs_endpoint")]),
    ({"endpoint": "localhost:4318"}, ['endpoint: "localhost:4318" must be an http:// or https:// URL with a host']),
    ({"endpoint": "ftp://h:21"}, ['endpoint: "ftp://h:21" must be an http:// or https:// URL with a host']),
    ({"endpoint": "http://h:99999"}, ['endpoint: "http://h:99999" is not a valid URL']),
    ({"endpoint": "http://h:0"}, ['endpoint: "http://h:0" has port 0']),
    ({"endpoint": "http://h/#x"}, ['endpoint: "http://h/#x" must not have a #fragment']),
    ({"traces_endpoint": "http:///v1/traces"},
     ['traces_endpoint: "http:///v1/traces" must be an http:// or https:// URL with a host']),
    ({"endpoint": "http://h", "logs_endpoint": "nope"},
     ['logs_endpoint: "nope" must be an http:// or https:// URL with a host']),
    ({"endpoint": "http://user:pw@h:x"}, ['endpoint: "http://***@h:x" is not a valid URL']),
    ({"endpoint": "http://h", "encoding": "xml"}, ['encoding: "xml" is not one of: proto, json']),
    ({"endpoint": "http://h", "compression": "zstd"}, ['compression: "zstd" is not one of: gzip, none, ""']),
    ({"endpoint": "http://h", "headers": {"bad key": "v"}}, ["headers::bad key: not a valid HTTP header name"]),
    ({"endpoint": "http://h", "headers": {"x-token": "s3cret\r\nInjected: 1"}},
     ["headers::x-token: the value holds a character a header cannot carry (U+000D at position 6)"]),
    ({"endpoint": "http://u:s3cret@h", "headers": {"Authorization": "Bearer s3cret"}},
     [("headers::Authorization: cannot be combined with user:password in a URL (that becomes the "
       "Authorization header)")]),
    ({"endpoint": "http://h", "tls": {"cert_file": "c.pem"}},
     ["tls::key_file: cert_file and key_file must be given together"]),
    ({"endpoint": "http://h", "tls": {"server_name_override": "x", "insecure": True}}, []),  # collector keys
    ({"endpoint": "http://h", "timeout": "soon"}, None),
    ({"endpoint": "http://h", "sending_queue": {"num_consumers": 0}},
     ["sending_queue::num_consumers: must be at least 1"]),
    ({"endpoint": "http://h", "retry_on_failure": {"multiplier": 0.5}},
     ["retry_on_failure::multiplier: must be at least 1"]),
    ({"endpoint": "https://h:4318/otlp"}, []),
    ({"traces_endpoint": "http://t/x"}, []),
    ({"traces_endpoint": "http://t/x", "metrics_endpoint": "https://m/y", "logs_endpoint": "http://l:1/z"}, []),
]


@pytest.mark.parametrize("raw, expected", VALIDATION)
def test_config_validation(raw, expected):
    _, problems = decode(otlp_http.Config, raw)
    messages = [str(p) for p in problems]
    if expected is None:  # a decoding problem: check only that it names the key
        key = next(k for k in raw if k != "endpoint")
        assert messages and all(m.startswith(key) for m in messages), messages
        return
    assert messages == expected
    assert all("s3cret" not in m for m in messages)


def test_defaults_and_the_timeout():
    config, problems = decode(otlp_http.Config, {"endpoint": "http://h:4318"})
    assert problems == []
    assert config.timeout == 30.0
    assert (config.encoding, config.compression, config.headers) == ("proto", "gzip", {})
    assert config.sending_queue.enabled and config.retry_on_failure.enabled
    config, _ = decode(otlp_http.Config, {"endpoint": "http://h:4318", "timeout": "2s"})
    assert config.timeout == 2.0
    # The shared default is unchanged for the other exporters.
    grpc_config, _ = decode(otlp_grpc.Config, {"endpoint": "h:4317"})
    assert grpc_config.timeout == 5.0


def test_signal_problems_name_the_key():
    config = make_config(traces_endpoint="http://t/x")
    assert config.signal_problems({Signal.TRACES}) == []
    assert [str(p) for p in config.signal_problems(set(Signal))] == [
        "metrics_endpoint: no URL for metrics: set endpoint or metrics_endpoint",
        "logs_endpoint: no URL for logs: set endpoint or logs_endpoint",
        "profiles_endpoint: no URL for profiles: set endpoint or profiles_endpoint"]


def test_module_shape():
    assert otlp_http.TYPE == "otlp_http" and otlp_http.ALIASES == ("otlphttp",)
    assert set(otlp_http.SIGNALS) == set(Signal)
    registry = Registry().add("exporters", otlp_http)
    assert registry.exporters["otlphttp"] is registry.exporters["otlp_http"]


@pytest.mark.parametrize("value, expected", [
    ("7", 7.0), (" 120 ", 120.0), ("0", 0.0), ("-1", None), ("1.5", None), ("soon", None), ("", None), (None, None),
    ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0), ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
])
def test_retry_after_header(value, expected):
    now = datetime.datetime(2015, 10, 21, 7, 28, tzinfo=datetime.UTC).timestamp()
    assert status.retry_after_from_http(value, now=now) == expected


# --- secrets stay out of the logs -------------------------------------------------------

def test_header_values_and_url_credentials_are_never_logged(component_log):
    async def run():
        async with HttpSink() as sink:
            sink.answers = [_answer(503, "down"), Answer(200, _partial_logs(), PROTO)]
            endpoint = sink.url().replace("http://", "http://user:pw-s3cret@")
            config = make_config(endpoint=endpoint, headers={"x-api-key": "k3y-s3cret"})
            async with Harness(config) as h:
                first = await h.consume(logs_request())
                second = await h.consume(logs_request())
            return first, second, sink

    first, second, sink = asyncio.run(run())
    assert isinstance(first, RetryableError) and second is None
    assert sink.posts[0].headers["x-api-key"] == "k3y-s3cret"  # it was sent, just never logged
    messages = {r.getMessage() for r in component_log.records}
    assert {"OTLP/HTTP exporter ready", "export failed", "partial success"} <= messages
    for record in component_log.records:
        text = record.getMessage() + repr(getattr(record, "fields", None))
        assert "s3cret" not in text, text
    assert "s3cret" not in str(first)


def _partial_logs() -> bytes:
    response = Signal.LOGS.response_type()
    response.partial_success.rejected_log_records = 1
    return response.SerializeToString()


# --- the collector's TLS client keys ---------------------------------------------------------

def test_inline_pem_mutual_tls_delivers(pki):
    tls = {"ca_pem": pki["ca"].read_text(), "cert_pem": pki["client"].read_text(),
           "key_pem": pki["client_key"].read_text()}
    error, _, sink = export_once(metrics_request(), sink_tls=server_tls(pki, require_client_cert=True), tls=tls)
    assert error is None, error
    assert sink.posts[0].request(Signal.METRICS) == metrics_request()


@pytest.mark.parametrize("name, delivered", [("localhost", True), ("elsewhere.example", False)])
def test_server_name_override_is_the_name_checked(pki, name, delivered):
    error, _, sink = export_once(logs_request(), sink_tls=server_tls(pki),
                                 tls={"ca_file": str(pki["ca"]), "server_name_override": name})
    if delivered:
        assert error is None, error
        assert len(sink.posts) == 1
    else:
        assert isinstance(error, RetryableError) and "elsewhere.example" in str(error), error
        assert sink.posts == []


def test_tls_versions_bound_the_handshake(pki):
    only_13 = server_tls(pki)
    only_13.minimum_version = ssl.TLSVersion.TLSv1_3
    error, _, sink = export_once(logs_request(), sink_tls=only_13, tls={"ca_file": str(pki["ca"]), "min_version": "1.3"})
    assert error is None and len(sink.posts) == 1, error
    error, _, sink = export_once(logs_request(), sink_tls=only_13, tls={"ca_file": str(pki["ca"]), "max_version": "1.2"})
    assert isinstance(error, RetryableError) and sink.posts == [], error


def test_the_system_pool_beside_a_ca_still_trusts_the_ca(pki):
    error, _, sink = export_once(logs_request(), sink_tls=server_tls(pki),
                                 tls={"ca_file": str(pki["ca"]), "include_system_ca_certs_pool": True})
    assert error is None and len(sink.posts) == 1, error


def test_reload_interval_uses_changed_files_for_new_connections(tmp_path):
    from relay.net.tls import ClientTLS, TLSClientConfig

    pytest.importorskip("cryptography")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _pki(tmp_path / "a"), _pki(tmp_path / "b")
    ca = tmp_path / "ca.pem"
    ca.write_bytes(first["ca"].read_bytes())
    now = [0.0]
    client = ClientTLS(TLSClientConfig(ca_file=str(ca), reload_interval=Duration(30.0)), clock=lambda: now[0])
    before = client.context()
    ca.write_bytes(second["ca"].read_bytes())
    now[0] = 10.0
    assert client.context() is before  # not yet looked at again
    now[0] = 31.0
    renewed = client.context()
    assert renewed is not before
    ca.write_text("not a certificate")
    now[0] = 62.0
    assert client.context() is renewed  # a set that does not load keeps the last one
    no_reload = ClientTLS(TLSClientConfig(ca_file=str(first["ca"])), clock=lambda: now[0])
    kept = no_reload.context()
    now[0] = 10_000.0
    assert no_reload.context() is kept
