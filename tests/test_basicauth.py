"""The basicauth extension, and the receivers and exporters that name it, on 127.0.0.1.

Server side: OTLP receivers (gRPC and HTTP) demanding Basic credentials from an htpasswd
table, driven by the OpenTelemetry SDK's own OTLP exporters. Client side: the relay's
otlphttp and otlp exporters sending ``client_auth`` to downstreams that record headers.
The expected password encodings are the formats Apache's htpasswd writes (the vectors for
$apr1$ and {SHA} are go-htpasswd's, the library the collector's basicauth uses).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading

import aiohttp
import bcrypt
import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from relay.component import ComponentID, Host, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import ConfigError
from relay.exporters import otlp_grpc, otlp_http
from relay.extensions import basicauth
from relay.extensions.basicauth.htpasswd import HtpasswdError, apr1, parse
from relay.pipeline.registry import default_registry
from relay.receivers import otlp
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import HeaderSink, Recorder, traces_request

AUTH_ID = "basicauth/otlp"
RECEIVER = "otlp/basic"
CLIENT_ID = "basicauth/client"
USER, PASSWORD = "relay-client", "s3cr3t:pa55"   # a colon is fine in a password, never in a username


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def make(settings: dict, id_: str = AUTH_ID) -> basicauth.BasicAuth:
    config, problems = decode(basicauth.Config, settings)
    assert problems == [], problems
    ext = basicauth.create(Settings(ComponentID.parse(id_), None), config)
    asyncio.run(ext.start())
    return ext


def assert_no_secret(caplog, *secrets: str) -> None:
    for record in caplog.records:
        text = record.getMessage() + json.dumps(getattr(record, "fields", None) or {}, default=str)
        for secret in secrets:
            assert secret not in text, record


# --- settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("settings, expected", [
    ({}, ["no credential source provided: set htpasswd (to check the clients of a receiver) or client_auth "
          "(for an exporter to send)"]),
    ({"htpasswd": {"inline": "a:b"}, "client_auth": {"username": "a", "password": "b"}},
     ["only one of htpasswd or client_auth can be specified"]),
    ({"htpasswd": {}}, ["htpasswd: no credential source provided: set file or inline"]),
    ({"htpasswd": {"inline": "no-colon-here"}},
     ["htpasswd::inline: inline line 1: no colon (expected user:password)"]),
    ({"client_auth": {"username": "a:b", "password": "p"}}, ['client_auth::username: must not contain ":"']),
    ({"client_auth": {"username": "a", "password": "two\nlines"}},
     ["client_auth::password: must not contain line breaks or NUL"]),
    ({"client_auth": {"username": "a", "passwd": "p"}},
     ["client_auth::passwd: unknown key (valid keys: password, password_file, username, username_file)"]),
])
def test_settings_problems_name_the_key_and_never_a_password(settings, expected):
    _, problems = decode(basicauth.Config, settings)
    assert [str(p) for p in problems] == expected
    assert all("lines" not in str(p) for p in problems)


def test_passwords_are_not_in_the_configs_repr():
    server, _ = decode(basicauth.Config, {"htpasswd": {"inline": f"{USER}:{PASSWORD}"}})
    client, _ = decode(basicauth.Config, {"client_auth": {"username": USER, "password": PASSWORD}})
    assert PASSWORD not in repr(server) and PASSWORD not in repr(client)


# --- htpasswd formats -------------------------------------------------------------------------

def ssha(password: bytes, salt: bytes) -> str:
    # {SSHA}: base64 of SHA-1(password + salt) followed by the salt.
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password + salt).digest() + salt).decode()


FORMATS = [
    ("plain", "mickey5", "mickey5"),
    ("plain, as nginx writes it", "{PLAIN}mickey5", "mickey5"),
    ("SHA-1 (htpasswd -s)", "{SHA}D9rQ8iK6feNAniulHNKdr5V38ok=", "mickey5"),
    ("SHA-1", "{SHA}7CPWhF7FKaS6fBC+zAuncRjVDOo=", "SRI"),
    ("Apache MD5 (htpasswd -m)", "$apr1$gxNb79DX$6wi9QaGNM5TA0kBKiC4710", "mickey5"),
    ("Apache MD5", "$apr1$StJ5t4wb$tIVEx.MPZR1SqDm5y9VCs1", "SRI"),
    ("Apache MD5, a salt with . and /", "$apr1$Bugn2T/z$gTZ/TZ24SMiL1AVQIPgam1", "D34dw00d"),
    ("bcrypt as htpasswd -B writes it", bcrypt.hashpw(b"mickey5", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$"),
     "mickey5"),
    ("bcrypt $2b$", bcrypt.hashpw(b"mickey5", bcrypt.gensalt(4)).decode(), "mickey5"),
    ("salted SHA-1", ssha(b"mickey5", b"\x01\x02salt"), "mickey5"),
]


@pytest.mark.parametrize("encoded, password", [f[1:] for f in FORMATS], ids=[f[0] for f in FORMATS])
def test_each_htpasswd_format_takes_its_password_and_nothing_else(encoded, password):
    check = parse(f"user:{encoded}\n", "inline")["user"]
    assert check(password.encode())
    assert check(password.encode())  # twice: a remembered bcrypt match is still a match
    assert not check(password.encode() + b"x")
    assert not check(password[:-1].encode())
    assert not check(b"")


def test_apr1_digests_are_apaches():
    assert apr1(b"mickey5", b"gxNb79DX") == b"6wi9QaGNM5TA0kBKiC4710"
    assert apr1(b"www.debure.net", b"bZzoRW4K") == b"DfI3Col55.57HP3FW4L1h."


@pytest.mark.parametrize("line, message", [
    ("secret-without-colon", "x line 2: no colon (expected user:password)"),
    ("bob:$apr1$nosalt", "x line 2 (user 'bob'): malformed $apr1$ password (expected $apr1$salt$hash)"),
    ("bob:{SHA}Ys23Ag/5IOWqZCw9dHwH00=", "x line 2 (user 'bob'): malformed {SHA} password (not base64)"),
    ("bob:{SHA}cGxhaW4=", "x line 2 (user 'bob'): malformed {SHA} password (not a base64 SHA-1 digest)"),
    ("bob:$2y$10$short", "x line 2 (user 'bob'): malformed bcrypt password"),
    ("bob:$6$rounds=5000$salt$hash", "x line 2 (user 'bob'): SHA-crypt ($5$, $6$) passwords are not supported "
                                     "here; use bcrypt (htpasswd -B), $apr1$ or {SHA}"),
])
def test_a_line_that_is_not_understood_is_an_error_naming_the_line_not_the_password(line, message):
    with pytest.raises(HtpasswdError) as caught:
        parse(f"# users\n{line}\n", "x")
    assert str(caught.value) == message


def test_comments_and_blank_lines_are_skipped_and_the_last_line_for_a_user_wins():
    table = parse("# comment\n\n  alice:old  \nbob:b\nalice:new\n", "x")
    assert set(table) == {"alice", "bob"}
    assert table["alice"](b"new") and not table["alice"](b"old")


def test_inline_lines_override_the_files(tmp_path, component_log):
    path = tmp_path / "otel.htpasswd"
    path.write_text("alice:{SHA}D9rQ8iK6feNAniulHNKdr5V38ok=\ncarol:$apr1$StJ5t4wb$tIVEx.MPZR1SqDm5y9VCs1\n")
    ext = make({"htpasswd": {"file": str(path), "inline": "alice:inline-pass"}})
    assert ext.authenticate({"authorization": basic("alice", "inline-pass")})
    assert not ext.authenticate({"authorization": basic("alice", "mickey5")})
    assert ext.authenticate({"authorization": basic("carol", "SRI")})
    (ready,) = [r for r in component_log.records if r.getMessage() == "basic authenticator ready"]
    assert ready.fields == {"side": "server", "users": 2, "file": str(path)}
    assert_no_secret(component_log, "inline-pass", "D9rQ8iK6", "tIVEx")


@pytest.mark.parametrize("content, message", [
    (None, "extensions::basicauth/otlp::htpasswd::file: cannot read {path}: No such file or directory"),
    ("alice\n", "extensions::basicauth/otlp::htpasswd: {path} line 1: no colon (expected user:password)"),
])
def test_an_unusable_htpasswd_file_stops_the_start_naming_it(tmp_path, content, message):
    path = tmp_path / "otel.htpasswd"
    if content is not None:
        path.write_text(content)
    config, _ = decode(basicauth.Config, {"htpasswd": {"file": str(path)}})
    ext = basicauth.create(Settings(ComponentID.parse(AUTH_ID), None), config)
    with pytest.raises(ConfigError) as caught:
        asyncio.run(ext.start())
    assert str(caught.value) == message.format(path=path)


# --- the Authorization header -----------------------------------------------------------------

ENCODED = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.mark.parametrize("headers, allowed", [
    ({"authorization": f"Basic {ENCODED}"}, True),
    ({"Authorization": f"Basic {ENCODED}"}, True),          # header names compare without case
    ({"authorization": f"basic {ENCODED}"}, True),          # so does the scheme, as in Go's net/http
    ({"authorization": f"BASIC {ENCODED}"}, True),
    ({"authorization": f"Bearer {ENCODED}"}, False),
    ({"authorization": ENCODED}, False),
    ({"authorization": f"Basic {ENCODED[:-2]}"}, False),    # not base64 any more
    ({"authorization": "Basic " + base64.b64encode(USER.encode()).decode()}, False),  # no colon
    ({"authorization": basic(USER, PASSWORD + "x")}, False),
    ({"authorization": basic("someone-else", PASSWORD)}, False),
    ({"authorization": "Basic "}, False),
    ({"authorization": "Basic \udcff"}, False),              # undecodable bytes as aiohttp hands them over
    ({"x-other": f"Basic {ENCODED}"}, False),
    ({}, False),
])
def test_authenticate_reads_basic_credentials(headers, allowed):
    ext = make({"htpasswd": {"inline": f"{USER}:{PASSWORD}"}})
    assert ext.authenticate(headers) is allowed


def test_client_auth_sends_the_basic_header():
    ext = make({"client_auth": {"username": USER, "password": PASSWORD}})
    assert ext.client_headers() == {"authorization": f"Basic {ENCODED}"}
    assert ext.roles == ("client",)


def test_client_auth_files_are_read_at_start_and_take_precedence(tmp_path):
    (tmp_path / "user").write_text("file-user\n")
    (tmp_path / "pass").write_text("file-pass\n")
    ext = make({"client_auth": {"username": "inline-user", "password": "inline-pass",
                                "username_file": str(tmp_path / "user"), "password_file": str(tmp_path / "pass")}})
    assert ext.client_headers() == {"authorization": basic("file-user", "file-pass")}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rotated_client_auth_files_are_sent_and_a_vanished_one_keeps_the_last(tmp_path, component_log):
    user, password = tmp_path / "user", tmp_path / "pass"
    user.write_text("first-user\n")
    password.write_text("first-pass\n")
    config, _ = decode(basicauth.Config, {"client_auth": {"username_file": str(user), "password_file": str(password)}})
    clock = Clock()
    ext = basicauth.BasicAuth(ComponentID.parse(CLIENT_ID), config, clock=clock)
    asyncio.run(ext.start())
    staged = tmp_path / "pass.new"
    staged.write_text("second-pass\n")
    staged.replace(password)
    # Looked at no more than once a second: the old header until then.
    assert ext.client_headers() == {"authorization": basic("first-user", "first-pass")}
    clock.now += basicauth.FILE_CHECK_INTERVAL
    assert ext.client_headers() == {"authorization": basic("first-user", "second-pass")}
    assert any(r.getMessage() == "credentials files changed; credentials reloaded" for r in component_log.records)

    password.unlink()
    clock.now += basicauth.FILE_CHECK_INTERVAL
    assert ext.client_headers() == {"authorization": basic("first-user", "second-pass")}
    assert any(r.getMessage().startswith("cannot use the credentials files") for r in component_log.records)
    assert_no_secret(component_log, "first-pass", "second-pass")


# --- receivers, driven by the OpenTelemetry SDK -----------------------------------------------

class Receiver:
    """An otlp receiver with both protocols behind one basicauth extension."""

    def __init__(self, auth):
        self.registry = CollectorRegistry()
        protocols = {"grpc": {"endpoint": "127.0.0.1:0", "auth": {"authenticator": AUTH_ID}},
                     "http": {"endpoint": "127.0.0.1:0", "auth": {"authenticator": AUTH_ID}}}
        config, problems = decode(otlp.Config, {"protocols": protocols})
        assert problems == []
        self.recorder = Recorder()
        host = Host({ComponentID.parse(AUTH_ID): auth})
        self.receiver = otlp.create(Settings(ComponentID.parse(RECEIVER), SelfMetrics(self.registry), host=host),
                                    config, {Signal.TRACES: self.recorder})

    async def __aenter__(self) -> "Receiver":
        await self.receiver.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.receiver.shutdown(grace=0)

    def spans(self) -> int:
        return sum(Signal.TRACES.count(r) for r in self.recorder.requests)

    def auth_failures(self, transport: str) -> float:
        return self.registry.get_sample_value("otelcol_receiver_auth_failures_total",
                                              {"receiver": RECEIVER, "transport": transport}) or 0.0


def sdk_spans(count: int):
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("basicauth-test")
    for index in range(count):
        with tracer.start_as_current_span(f"span-{index}"):
            pass
    provider.shutdown()
    return memory.get_finished_spans()


def sdk_export(exporter, spans) -> SpanExportResult:
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def test_the_sdks_grpc_exporter_is_refused_without_credentials_and_let_in_with_them(component_log):
    ext = make({"htpasswd": {"inline": f"# the only user\n{USER}:{PASSWORD}"}})
    spans = sdk_spans(3)

    async def run():
        async with Receiver(ext) as r:
            target = f"127.0.0.1:{r.receiver.grpc.port}"

            def attempt(headers):
                return sdk_export(GrpcSpanExporter(endpoint=target, insecure=True, headers=headers, timeout=5), spans)

            missing = await asyncio.to_thread(attempt, None)
            wrong = await asyncio.to_thread(attempt, {"authorization": basic(USER, "guess-1234")})
            refused_spans = r.spans()
            good = await asyncio.to_thread(attempt, {"authorization": basic(USER, PASSWORD)})
            return missing, wrong, refused_spans, good, r.spans(), r.auth_failures("grpc")

    missing, wrong, refused_spans, good, accepted, failures = asyncio.run(run())
    assert missing == wrong == SpanExportResult.FAILURE
    assert refused_spans == 0
    assert good == SpanExportResult.SUCCESS and accepted == 3
    assert failures == 2
    assert_no_secret(component_log, PASSWORD, "guess-1234", ENCODED)


def test_the_sdks_http_exporter_gets_401_without_credentials_and_is_let_in_with_them(component_log):
    ext = make({"htpasswd": {"inline": f"{USER}:$apr1$gxNb79DX$6wi9QaGNM5TA0kBKiC4710"}})
    spans = sdk_spans(2)

    async def run():
        async with Receiver(ext) as r:
            url = f"http://127.0.0.1:{r.receiver.http.port}/v1/traces"

            def attempt(headers):
                return sdk_export(HttpSpanExporter(endpoint=url, headers=headers, timeout=5), spans)

            wrong = await asyncio.to_thread(attempt, {"Authorization": basic(USER, "mickey6")})
            good = await asyncio.to_thread(attempt, {"Authorization": basic(USER, "mickey5")})
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=traces_request(1).SerializeToString(),
                                        headers={"Content-Type": "application/x-protobuf"}) as answer:
                    refusal = answer.status, answer.headers.get("WWW-Authenticate")
            return wrong, good, refusal, r.spans(), r.auth_failures("http")

    wrong, good, refusal, accepted, failures = asyncio.run(run())
    assert wrong == SpanExportResult.FAILURE
    assert good == SpanExportResult.SUCCESS and accepted == 2
    assert refusal == (401, "Basic")
    assert failures == 2
    assert_no_secret(component_log, "mickey5", "mickey6")


def test_a_grpc_refusal_is_unauthenticated():
    ext = make({"htpasswd": {"inline": f"{USER}:{PASSWORD}"}})

    async def run():
        async with Receiver(ext) as r:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{r.receiver.grpc.port}") as channel:
                call = channel.unary_unary(Signal.TRACES.method)
                try:
                    await call(traces_request(1).SerializeToString(),
                               metadata=(("authorization", basic(USER, "nope")),), timeout=5)
                except grpc.aio.AioRpcError as error:
                    return error.code(), error.details()
        return None

    assert asyncio.run(run()) == (grpc.StatusCode.UNAUTHENTICATED, "missing or invalid credentials")


def test_a_client_only_extension_cannot_guard_a_receiver():
    ext = make({"client_auth": {"username": USER, "password": PASSWORD}})
    with pytest.raises(ConfigError) as caught:
        Receiver(ext)
    assert str(caught.value) == (
        f'receivers::{RECEIVER}::protocols::grpc::auth::authenticator: extension "{AUTH_ID}" cannot check the '
        "credentials of a receiver's clients (a basicauth extension does that with htpasswd)")


# --- exporters --------------------------------------------------------------------------------


QUIET = {"sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}}


def test_the_otlphttp_exporter_sends_client_auth_on_every_post(component_log):
    ext = make({"client_auth": {"username": USER, "password": PASSWORD}}, CLIENT_ID)

    async def run():
        async with HeaderSink() as downstream:
            config, problems = decode(otlp_http.Config, {
                "endpoint": downstream.url, "auth": {"authenticator": CLIENT_ID},
                "headers": {"Authorization": "Bearer replaced", "X-Tenant": "acme"}, **QUIET})
            assert problems == []
            exporter = otlp_http.create(Settings(ComponentID.parse("otlphttp/out"), SelfMetrics(CollectorRegistry()),
                                                 host=Host({ComponentID.parse(CLIENT_ID): ext})), config)
            await exporter.start()
            try:
                for _ in range(2):
                    await exporter.consume(traces_request(1))
            finally:
                await exporter.shutdown()
            return downstream.headers

    headers = asyncio.run(run())
    assert len(headers) == 2
    for seen in headers:
        # The authenticator's header replaces a configured one of the same name.
        assert seen["Authorization"] == f"Basic {ENCODED}"
        assert seen["X-Tenant"] == "acme"
    assert_no_secret(component_log, PASSWORD, ENCODED)


def test_the_otlp_grpc_exporter_sends_client_auth_in_every_calls_metadata(sink):
    ext = make({"client_auth": {"username": USER, "password": PASSWORD}}, CLIENT_ID)
    config, problems = decode(otlp_grpc.Config, {"endpoint": sink.endpoint, "tls": {"insecure": True},
                                                 "auth": {"authenticator": CLIENT_ID}, **QUIET})
    assert problems == []
    exporter = otlp_grpc.create(Settings(ComponentID.parse("otlp/out"), SelfMetrics(CollectorRegistry()),
                                         host=Host({ComponentID.parse(CLIENT_ID): ext})), config)

    async def run():
        await exporter.start()
        try:
            await exporter.consume(traces_request(1))
        finally:
            await exporter.shutdown()

    asyncio.run(run())
    assert [m["authorization"] for m in sink.metadata] == [f"Basic {ENCODED}"]


def test_a_server_only_extension_cannot_be_an_exporters_authenticator():
    ext = make({"htpasswd": {"inline": f"{USER}:{PASSWORD}"}}, CLIENT_ID)
    config, _ = decode(otlp_http.Config, {"endpoint": "http://127.0.0.1:9", "auth": {"authenticator": CLIENT_ID}})
    with pytest.raises(ConfigError) as caught:
        otlp_http.create(Settings(ComponentID.parse("otlphttp/out"), SelfMetrics(CollectorRegistry()),
                                  host=Host({ComponentID.parse(CLIENT_ID): ext})), config)
    assert str(caught.value) == (
        f'exporters::otlphttp/out::auth::authenticator: extension "{CLIENT_ID}" has no credentials for an exporter '
        "to send (a basicauth extension sends client_auth)")


def test_relay_to_relay_through_basic_auth():
    """The relay's own otlphttp exporter with client_auth into a receiver that checks a bcrypt htpasswd."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    server = make({"htpasswd": {"inline": f"{USER}:{hashed}"}})
    client = make({"client_auth": {"username": USER, "password": PASSWORD}}, CLIENT_ID)

    async def run():
        async with Receiver(server) as r:
            config, _ = decode(otlp_http.Config, {"endpoint": f"http://127.0.0.1:{r.receiver.http.port}",
                                                  "auth": {"authenticator": CLIENT_ID}, **QUIET})
            exporter = otlp_http.create(Settings(ComponentID.parse("otlphttp/out"), SelfMetrics(CollectorRegistry()),
                                                 host=Host({ComponentID.parse(CLIENT_ID): client})), config)
            await exporter.start()
            try:
                await exporter.consume(traces_request(4))
            finally:
                await exporter.shutdown()
            return r.spans(), r.auth_failures("http")

    assert asyncio.run(run()) == (4, 0)


# --- the loader -------------------------------------------------------------------------------

CONFIG = """
extensions:
  basicauth/otlp:
    htpasswd:
      file: /etc/otelcol-contrib/otel.htpasswd
  basicauth/client:
    client_auth:
      username: {user}
      password: ${{env:PASSWORD}}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
        auth:
          authenticator: {receiver_auth}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:4318
    auth:
      authenticator: basicauth/client
service:
  extensions: [basicauth/otlp, basicauth/client]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlphttp]
"""


def test_a_collector_config_naming_basicauth_loads_without_reading_the_file():
    config = load(CONFIG.format(user=USER, receiver_auth=AUTH_ID), default_registry(), env={"PASSWORD": PASSWORD})
    receiver = config.components["receivers"][ComponentID.parse("otlp")]
    assert receiver.extension_references() == [
        (("protocols", "http", "auth", "authenticator"), AUTH_ID, "basicauth")]
    exporter = config.components["exporters"][ComponentID.parse("otlphttp")]
    assert exporter.extension_references() == [(("auth", "authenticator"), CLIENT_ID, "basicauth")]


def test_a_reference_to_something_that_is_no_authenticator_names_both_types():
    with pytest.raises(ConfigError) as caught:
        load(CONFIG.format(user=USER, receiver_auth="basicauth/missing"), default_registry(),
             env={"PASSWORD": PASSWORD})
    assert [str(p) for p in caught.value.problems] == [
        'receivers::otlp::protocols::http::auth::authenticator: references extension "basicauth/missing", which is '
        "not configured under extensions"]
    text = (CONFIG.format(user=USER, receiver_auth="health_check")
            .replace("extensions:\n  basicauth/otlp:", "extensions:\n  health_check: {}\n  basicauth/otlp:")
            .replace("  extensions: [", "  extensions: [health_check, "))
    with pytest.raises(ConfigError) as caught:
        load(text, default_registry(), env={"PASSWORD": PASSWORD})
    assert [str(p) for p in caught.value.problems] == [
        'receivers::otlp::protocols::http::auth::authenticator: extension "health_check" is a health_check, '
        "not a bearertokenauth or basicauth"]
    assert PASSWORD not in str(caught.value)


# --- bcrypt off the event loop, and unknown users ---------------------------------------------

class CheckSpy:
    """bcrypt.checkpw as it is, except that each call notes its thread and hash, and can be held
    (until ``release``) to show what the event loop does meanwhile."""

    def __init__(self, real, hold: bool = False):
        self.real = real
        self.calls: list[tuple[str, bytes]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls.append((threading.current_thread().name, hashed))
        self.entered.set()
        assert self.release.wait(10), "never released"
        return self.real(password, hashed)


def test_a_wrong_bcrypt_password_does_not_hold_up_other_requests(monkeypatch):
    hashed = bcrypt.hashpw(b"alice-pass", bcrypt.gensalt(4)).decode()
    ext = make({"htpasswd": {"inline": f"alice:{hashed}\nbob:bob-pass"}})
    spy = CheckSpy(bcrypt.checkpw, hold=True)
    monkeypatch.setattr(bcrypt, "checkpw", spy)

    async def post(session, url, user, password) -> int:
        async with session.post(url, data=traces_request(1).SerializeToString(),
                                headers={"Content-Type": "application/x-protobuf",
                                         "Authorization": basic(user, password)}) as answer:
            return answer.status

    async def run():
        loop_thread = threading.current_thread().name
        async with Receiver(ext) as r:
            url = f"http://127.0.0.1:{r.receiver.http.port}/v1/traces"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(10)) as session:
                wrong = asyncio.create_task(post(session, url, "alice", "guess"))
                assert await asyncio.to_thread(spy.entered.wait, 10)
                # alice's bcrypt check is held on its thread; bob is let in meanwhile.
                other = await post(session, url, "bob", "bob-pass")
                held = not wrong.done()
                spy.release.set()
                first = await wrong
                calls = len(spy.calls)
                again = await post(session, url, "alice", "guess")
                return loop_thread, other, held, first, calls, again, r.spans()
        return None

    loop_thread, other, held, first, calls, again, spans = asyncio.run(run())
    assert (other, held, first) == (200, True, 401)
    assert spans == 1
    assert calls == 1 and {name for name, _ in spy.calls} != {loop_thread}
    assert all(name.startswith(basicauth.CHECK_THREAD_NAME) for name, _ in spy.calls)
    # The same wrong password again is answered from the remembered failures: no second bcrypt run.
    assert again == 401 and len(spy.calls) == 1
    asyncio.run(ext.shutdown())


def test_an_unknown_user_costs_a_check_of_the_same_kind(monkeypatch):
    from relay.extensions.basicauth import htpasswd

    hashed = bcrypt.hashpw(b"alice-pass", bcrypt.gensalt(5)).decode()
    ext = make({"htpasswd": {"inline": f"alice:{hashed}\nbob:bob-pass"}})
    spy = CheckSpy(bcrypt.checkpw)
    monkeypatch.setattr(bcrypt, "checkpw", spy)

    async def attempts():
        return [await ext.authenticate_async({"authorization": basic(user, password)})
                for user, password in (("mallory", "alice-pass"), ("alice", "guess"), ("alice", "alice-pass"))]

    assert asyncio.run(attempts()) == [False, False, True]
    # An unknown user ran bcrypt too, at the cost of the table's bcrypt user, as a known one does.
    prefixes = [checked[:7] for _, checked in spy.calls]
    assert prefixes == [hashed[:7].encode()] * 3  # "$2b$05$" each time
    # The unknown user's password met the dummy hash, never alice's.
    assert [checked == hashed.encode() for _, checked in spy.calls] == [False, True, True]
    asyncio.run(ext.shutdown())

    # Without bcrypt, an unknown user is checked as the costliest kind there is ($apr1$ here).
    ext = make({"htpasswd": {"inline": "carol:$apr1$StJ5t4wb$tIVEx.MPZR1SqDm5y9VCs1\nbob:bob-pass"}})
    digests = []
    real = htpasswd.apr1
    monkeypatch.setattr(htpasswd, "apr1", lambda password, salt: digests.append(salt) or real(password, salt))
    assert not ext.authenticate({"authorization": basic("mallory", "SRI")})
    assert not ext.authenticate({"authorization": basic("carol", "guess")})
    assert len(digests) == 2
    asyncio.run(ext.shutdown())


@pytest.mark.parametrize("lines, kind, cost", [
    (["a:plain"], "plain", None),
    (["a:plain", "b:{SHA}D9rQ8iK6feNAniulHNKdr5V38ok="], "sha", None),
    (["a:{SHA}D9rQ8iK6feNAniulHNKdr5V38ok=", "b:$apr1$gxNb79DX$6wi9QaGNM5TA0kBKiC4710"], "apr1", None),
    (["a:$apr1$gxNb79DX$6wi9QaGNM5TA0kBKiC4710", f"b:{bcrypt.hashpw(b'x', bcrypt.gensalt(4)).decode()}",
      f"c:{bcrypt.hashpw(b'x', bcrypt.gensalt(5)).decode()}"], "bcrypt", 5),
])
def test_the_dummy_is_the_costliest_kind_in_the_table(lines, kind, cost):
    from relay.extensions.basicauth.htpasswd import dummy

    check = dummy(parse("\n".join(lines), "x").values())
    assert check.kind == kind
    assert getattr(check, "cost", None) == cost
