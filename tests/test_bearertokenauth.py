"""The bearertokenauth extension, and the receivers and exporters that name it, on 127.0.0.1.

Receivers: a request without the right header is refused (gRPC UNAUTHENTICATED,
HTTP 401) before its payload is parsed, counted and logged without the header's
value. Exporters: the header goes out on every call, read per call so that a
rotated token file is used. The loader checks every ``auth.authenticator``.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import grpc
import pytest
from google.rpc import status_pb2
from prometheus_client import CollectorRegistry

from relay.component import ComponentID, Host, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import ConfigError
from relay.exporters import otlp_grpc, otlp_http
from relay.extensions import bearertokenauth, health_check
from relay.pipeline.registry import Registry
from relay.receivers import otlp
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import HeaderSink, Recorder, traces_request

TOKEN = "s3cr3t-token-value"
RECEIVER = "otlp/auth"
AUTH_ID = "bearertokenauth"
PROTOBUF, JSON = "application/x-protobuf", "application/json"


def make_auth(**settings) -> bearertokenauth.BearerTokenAuth:
    config, problems = decode(bearertokenauth.Config, settings)
    assert problems == [], problems
    return bearertokenauth.create(Settings(ComponentID.parse(AUTH_ID), None), config)


def started(ext):
    asyncio.run(ext.start())
    return ext


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def assert_no_secret(records, *secrets: str) -> None:
    for record in records:
        text = record.getMessage() + json.dumps(getattr(record, "fields", None) or {}, default=str)
        for secret in secrets:
            assert secret not in text, record


# --- the extension ----------------------------------------------------------------------------

@pytest.mark.parametrize("settings, expected", [
    ({}, ["exactly one of token and filename must be set"]),
    ({"token": "a", "filename": "/t"}, ["exactly one of token and filename must be set"]),
    ({"token": "two\nlines"}, ["token: must not contain line breaks, NUL or surrounding spaces"]),
    ({"token": "a", "scheme": "Bear er"}, ["scheme: must be one word, without spaces"]),
    ({"token": "a", "header": "x key"}, ["header: not a valid header name"]),
    ({"token": "a", "header": "x-token-bin"},
     ["header: cannot be a binary (-bin) or reserved (grpc-) gRPC metadata key"]),
    ({"token": "a", "bearer_token": "b"},
     ["bearer_token: unknown key (valid keys: filename, header, scheme, token)"]),
])
def test_settings_problems_never_show_the_token(settings, expected):
    _, problems = decode(bearertokenauth.Config, settings)
    assert [str(p) for p in problems] == expected
    assert all("two" not in str(p) for p in problems)


def test_the_token_is_not_in_the_configs_repr():
    config, _ = decode(bearertokenauth.Config, {"token": TOKEN})
    assert config.token == TOKEN
    assert TOKEN not in repr(config)


@pytest.mark.parametrize("headers, allowed", [
    ({"authorization": f"Bearer {TOKEN}"}, True),
    ({"Authorization": f"Bearer {TOKEN}"}, True),        # header names compare without case
    ({"authorization": f"bearer {TOKEN}"}, False),       # the whole value, exactly
    ({"authorization": f"Bearer {TOKEN}x"}, False),
    ({"authorization": f"Bearer {TOKEN[:-1]}"}, False),
    ({"authorization": TOKEN}, False),
    ({"authorization": ""}, False),
    ({"x-other": f"Bearer {TOKEN}"}, False),
    ({}, False),
    ({"authorization": "Bearer \udcff"}, False),       # undecodable bytes as aiohttp hands them over
])
def test_authenticate_compares_the_whole_header_value(headers, allowed):
    assert make_auth(token=TOKEN).authenticate(headers) is allowed


def test_a_custom_header_without_a_scheme():
    auth = make_auth(token=TOKEN, scheme="", header="X-Api-Key")
    assert auth.client_headers() == {"x-api-key": TOKEN}
    assert auth.authenticate({"x-api-key": TOKEN})
    assert not auth.authenticate({"authorization": f"Bearer {TOKEN}"})


def test_client_headers_carry_scheme_and_token():
    assert make_auth(token=TOKEN).client_headers() == {"authorization": f"Bearer {TOKEN}"}


def test_a_token_file_is_read_at_start_without_its_line_break(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    auth = started(make_auth(filename=str(path)))
    assert auth.client_headers() == {"authorization": f"Bearer {TOKEN}"}
    assert auth.authenticate({"authorization": f"Bearer {TOKEN}"})


@pytest.mark.parametrize("content, message", [
    (None, "cannot read token file {path}: No such file or directory"),
    ("\n", "token file {path} is empty"),
    ("one\ntwo\n", "token file {path} holds more than one line"),
])
def test_an_unusable_token_file_stops_the_start_naming_it(tmp_path, content, message):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        started(make_auth(filename=str(path)))
    assert str(caught.value) == f"extensions::{AUTH_ID}::filename: " + message.format(path=path)


def test_a_rotated_token_file_is_picked_up_and_a_vanished_one_keeps_the_last_token(tmp_path, component_log):
    path = tmp_path / "token"
    path.write_text("first-token\n")
    auth = started(make_auth(filename=str(path)))
    staged = tmp_path / "token.new"
    staged.write_text("second-token\n")
    staged.replace(path)
    assert wait_until(lambda: auth.authenticate({"authorization": "Bearer second-token"}))
    assert not auth.authenticate({"authorization": "Bearer first-token"})
    assert auth.client_headers() == {"authorization": "Bearer second-token"}
    assert any(r.getMessage() == "token file changed; token reloaded" for r in component_log.records)

    path.unlink()

    def still_allowed_and_warned():
        # The file is looked at when the token is used.
        allowed = auth.authenticate({"authorization": "Bearer second-token"})
        return allowed and any(r.getMessage().startswith("cannot use the token file") for r in component_log.records)

    assert wait_until(still_allowed_and_warned)
    assert_no_secret(component_log.records, "first-token", "second-token")


# --- the loader checks every reference --------------------------------------------------------

def registry() -> Registry:
    return (Registry().add("receivers", otlp).add("exporters", otlp_grpc).add("exporters", otlp_http)
            .add("extensions", bearertokenauth).add("extensions", health_check))


CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
        auth:
          authenticator: {receiver_auth}
      http:
        endpoint: 127.0.0.1:0
        auth:
          authenticator: {receiver_auth}
exporters:
  otlp:
    endpoint: 127.0.0.1:4317
    auth:
      authenticator: {exporter_auth}
  otlp_http:
    endpoint: http://127.0.0.1:4318
    auth:
      authenticator: {exporter_auth}
extensions:
  bearertokenauth:
    token: ${{env:RELAY_TOKEN}}
  health_check: {{}}
service:
  extensions: [{enabled}]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp, otlp_http]
"""


def test_a_valid_config_loads_with_every_reference():
    config = load(CONFIG.format(receiver_auth=AUTH_ID, exporter_auth=AUTH_ID, enabled=AUTH_ID), registry(),
                  env={"RELAY_TOKEN": TOKEN})
    receiver = config.components["receivers"][ComponentID.parse("otlp")]
    assert receiver.extension_references() == [
        (("protocols", "grpc", "auth", "authenticator"), AUTH_ID, "bearertokenauth"),
        (("protocols", "http", "auth", "authenticator"), AUTH_ID, "bearertokenauth")]
    exporter = config.components["exporters"][ComponentID.parse("otlp")]
    assert exporter.extension_references() == [(("auth", "authenticator"), AUTH_ID, "bearertokenauth")]


@pytest.mark.parametrize("receiver_auth, exporter_auth, enabled, expected", [
    ("bearertokenauth/missing", AUTH_ID, AUTH_ID, [
        'receivers::otlp::protocols::grpc::auth::authenticator: references extension "bearertokenauth/missing", '
        "which is not configured under extensions",
        'receivers::otlp::protocols::http::auth::authenticator: references extension "bearertokenauth/missing", '
        "which is not configured under extensions"]),
    (AUTH_ID, AUTH_ID, "health_check", [
        'receivers::otlp::protocols::grpc::auth::authenticator: extension "bearertokenauth" must also be listed '
        "in service::extensions",
        'receivers::otlp::protocols::http::auth::authenticator: extension "bearertokenauth" must also be listed '
        "in service::extensions",
        'exporters::otlp::auth::authenticator: extension "bearertokenauth" must also be listed in '
        "service::extensions",
        'exporters::otlp_http::auth::authenticator: extension "bearertokenauth" must also be listed in '
        "service::extensions"]),
    (AUTH_ID, "health_check", f"{AUTH_ID}, health_check", [
        'exporters::otlp::auth::authenticator: extension "health_check" is a health_check, not a bearertokenauth '
        "or basicauth",
        'exporters::otlp_http::auth::authenticator: extension "health_check" is a health_check, '
        "not a bearertokenauth or basicauth"]),
])
def test_a_bad_reference_is_a_problem_at_its_key(receiver_auth, exporter_auth, enabled, expected):
    with pytest.raises(ConfigError) as caught:
        load(CONFIG.format(receiver_auth=receiver_auth, exporter_auth=exporter_auth, enabled=enabled), registry(),
             env={"RELAY_TOKEN": TOKEN})
    assert [str(p) for p in caught.value.problems] == expected
    assert TOKEN not in str(caught.value)


def test_an_empty_auth_section_names_the_missing_key():
    _, problems = decode(otlp.Config, {"protocols": {"grpc": {"auth": None}}})
    assert [str(p) for p in problems] == ["protocols::grpc::auth::authenticator: required key is missing"]


def test_a_receiver_built_without_the_extension_running_is_refused():
    config, _ = decode(otlp.Config, {"protocols": {"grpc": {"auth": {"authenticator": AUTH_ID}}}})
    with pytest.raises(ConfigError) as caught:
        otlp.create(Settings(ComponentID.parse(RECEIVER), SelfMetrics(CollectorRegistry()), host=Host()), config, {})
    assert str(caught.value) == (f'receivers::{RECEIVER}::protocols::grpc::auth::authenticator: extension '
                                 f'"{AUTH_ID}" is not running (list it in service::extensions)')


# --- receivers --------------------------------------------------------------------------------

class Receiver:
    """An otlp receiver with both protocols behind one authenticator, and a recorder per signal."""

    def __init__(self, auth, http_extra: dict | None = None):
        self.registry = CollectorRegistry()
        telemetry = SelfMetrics(self.registry)
        protocols = {"grpc": {"endpoint": "127.0.0.1:0", "auth": {"authenticator": AUTH_ID}},
                     "http": {"endpoint": "127.0.0.1:0", "auth": {"authenticator": AUTH_ID}, **(http_extra or {})}}
        config, problems = decode(otlp.Config, {"protocols": protocols})
        assert problems == []
        self.recorder = Recorder()
        host = Host({ComponentID.parse(AUTH_ID): auth})
        self.receiver = otlp.create(Settings(ComponentID.parse(RECEIVER), telemetry, host=host), config, {Signal.TRACES: self.recorder})

    async def __aenter__(self) -> "Receiver":
        await self.receiver.start()
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()
        await self.receiver.shutdown(grace=0)

    async def grpc(self, metadata=None, payload: bytes | None = None):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.receiver.grpc.port}") as channel:
            try:
                await channel.unary_unary(Signal.TRACES.method)(
                    traces_request(2).SerializeToString() if payload is None else payload,
                    metadata=metadata, timeout=5)
                return grpc.StatusCode.OK, ""
            except grpc.aio.AioRpcError as error:
                return error.code(), error.details()

    async def http(self, headers=None, body: bytes | None = None, content_type=PROTOBUF, path="/v1/traces",
                   method="POST"):
        headers = dict(headers or {})
        if content_type:
            headers["Content-Type"] = content_type
        async with self.session.request(method, f"http://127.0.0.1:{self.receiver.http.port}{path}",
                                        data=traces_request(3).SerializeToString() if body is None else body,
                                        headers=headers) as answer:
            return answer.status, answer.headers, await answer.read()

    def value(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def refused_requests(self, transport: str, signal: str, status: str) -> float:
        return self.value("otelcol_receiver_refused_requests_total", receiver=RECEIVER, transport=transport,
                          signal=signal, status=status)

    def auth_failures(self, transport: str) -> float:
        return self.value("otelcol_receiver_auth_failures_total", receiver=RECEIVER, transport=transport)

    def spans(self) -> int:
        return sum(Signal.TRACES.count(r) for r in self.recorder.requests)


GOOD = {"authorization": f"Bearer {TOKEN}"}
WRONG = {"authorization": "Bearer wrong-guess-1234"}


def test_grpc_refuses_without_the_token_before_parsing_and_takes_it_with(component_log):
    async def run():
        async with Receiver(make_auth(token=TOKEN)) as r:
            missing = await r.grpc()
            wrong = await r.grpc(metadata=tuple(WRONG.items()))
            garbage = await r.grpc(metadata=tuple(WRONG.items()), payload=b"\xff\xff not protobuf")
            refused = r.spans()
            good = await r.grpc(metadata=tuple(GOOD.items()))
            return (missing, wrong, garbage, refused, good, r.spans(),
                    r.refused_requests("grpc", "traces", "UNAUTHENTICATED"), r.auth_failures("grpc"),
                    r.value("otelcol_receiver_accepted_spans_total", receiver=RECEIVER, transport="grpc"))

    missing, wrong, garbage, refused, good, spans, refused_requests, failures, accepted = asyncio.run(run())
    assert missing == wrong == (grpc.StatusCode.UNAUTHENTICATED, "missing or invalid credentials")
    assert garbage[0] == grpc.StatusCode.UNAUTHENTICATED  # not INVALID_ARGUMENT: never parsed
    assert refused == 0
    assert good == (grpc.StatusCode.OK, "") and spans == 2 and accepted == 2
    assert refused_requests == failures == 3
    (line,) = [r for r in component_log.records if r.getMessage() == "refused a request without valid credentials"]
    assert line.fields["reason"] == "no authorization header"
    assert line.fields["transport"] == "grpc" and line.fields["status"] == "UNAUTHENTICATED"
    assert_no_secret(component_log.records, TOKEN, "wrong-guess-1234")


def test_http_refuses_with_401_before_reading_the_body_and_takes_the_token(component_log):
    async def run():
        async with Receiver(make_auth(token=TOKEN)) as r:
            missing = await r.http()
            wrong_json = await r.http(WRONG, body=b"{not json", content_type=JSON)
            wrong_other = await r.http(WRONG, content_type="text/plain")
            unknown_path = await r.http(path="/v1/elsewhere")
            refused = r.spans()
            good = await r.http(GOOD)
            return (missing, wrong_json, wrong_other, unknown_path, refused, good, r.spans(),
                    r.refused_requests("http", "traces", "401"), r.refused_requests("http", "", "401"),
                    r.auth_failures("http"))

    (missing, wrong_json, wrong_other, unknown_path, refused, good, spans, refused_traces, refused_elsewhere,
     failures) = asyncio.run(run())
    status, headers, body = missing
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert headers["Content-Type"] == PROTOBUF
    assert status_pb2.Status.FromString(body) == status_pb2.Status(code=16, message="missing or invalid credentials")
    status, headers, body = wrong_json
    assert status == 401 and headers["Content-Type"] == JSON  # not 400: the body was never parsed
    assert json.loads(body) == {"code": 16, "message": "missing or invalid credentials"}
    assert wrong_other[0] == 401 and wrong_other[1]["WWW-Authenticate"] == "Bearer"  # not 415
    assert unknown_path[0] == 401  # the routes are not shown to a client without credentials
    assert refused == 0
    assert good[0] == 200 and spans == 3
    assert (refused_traces, refused_elsewhere, failures) == (3, 1, 4)
    lines = [r for r in component_log.records if r.getMessage() == "refused a request without valid credentials"]
    assert len(lines) == 1, "refusals are logged at most once per interval"
    assert lines[0].fields["transport"] == "http" and lines[0].fields["status"] == "401"
    assert_no_secret(component_log.records, TOKEN, "wrong-guess-1234")


def test_a_cors_preflight_needs_no_credentials_and_a_refusal_carries_cors_headers():
    cors = {"cors": {"allowed_origins": ["https://app.example.com"], "allowed_headers": ["authorization"]}}
    origin = {"Origin": "https://app.example.com"}

    async def run():
        async with Receiver(make_auth(token=TOKEN), http_extra=cors) as r:
            preflight = await r.http({**origin, "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "authorization, content-type"},
                                     body=b"", content_type=None, method="OPTIONS")
            refused = await r.http(origin)
            allowed = await r.http({**origin, **GOOD})
            return preflight, refused, allowed, r.auth_failures("http")

    preflight, refused, allowed, failures = asyncio.run(run())
    assert preflight[0] == 204
    assert preflight[1]["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert preflight[1]["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert refused[0] == 401 and refused[1]["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert allowed[0] == 200
    assert failures == 1


def test_receivers_follow_a_rotated_token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("old-token\n")
    auth = started(make_auth(filename=str(path)))

    async def run():
        async with Receiver(auth) as r:
            assert await r.grpc(metadata=(("authorization", "Bearer old-token"),)) == (grpc.StatusCode.OK, "")
            staged = tmp_path / "token.new"
            staged.write_text("new-token\n")
            staged.replace(path)
            deadline = time.monotonic() + 10
            while (await r.http({"Authorization": "Bearer new-token"}))[0] != 200:
                assert time.monotonic() < deadline, "the new token was never accepted"
                await asyncio.sleep(0.05)
            return (await r.grpc(metadata=(("authorization", "Bearer old-token"),)))[0]

    assert asyncio.run(run()) == grpc.StatusCode.UNAUTHENTICATED


# --- exporters --------------------------------------------------------------------------------

def grpc_exporter(endpoint: str, auth, **settings):
    config, problems = decode(otlp_grpc.Config, {
        "endpoint": endpoint, "tls": {"insecure": True}, "auth": {"authenticator": AUTH_ID},
        "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}, **settings})
    assert problems == []
    return otlp_grpc.create(Settings(ComponentID.parse("otlp/out"), SelfMetrics(CollectorRegistry()), host=Host({ComponentID.parse(AUTH_ID): auth})), config)


def test_the_grpc_exporter_sends_the_token_in_every_calls_metadata(sink, component_log):
    exporter = grpc_exporter(sink.endpoint, make_auth(token=TOKEN),
                             headers={"authorization": "Basic replaced", "x-tenant": "acme"})

    async def run():
        await exporter.start()
        try:
            for _ in range(2):
                await exporter.consume(traces_request(1))
        finally:
            await exporter.shutdown()

    asyncio.run(run())
    assert len(sink.metadata) == 2
    for metadata in sink.metadata:
        assert metadata["authorization"] == f"Bearer {TOKEN}"
        assert metadata["x-tenant"] == "acme"
    assert_no_secret(component_log.records, TOKEN)


def test_the_grpc_exporter_picks_up_a_rotated_token_file(sink, tmp_path):
    path = tmp_path / "token"
    path.write_text("old-token\n")
    exporter = grpc_exporter(sink.endpoint, started(make_auth(filename=str(path))))

    async def run():
        await exporter.start()
        try:
            await exporter.consume(traces_request(1))
            staged = tmp_path / "token.new"
            staged.write_text("new-token\n")
            staged.replace(path)
            deadline = time.monotonic() + 10
            while sink.metadata[-1]["authorization"] != "Bearer new-token":
                assert time.monotonic() < deadline, "the new token was never sent"
                await asyncio.sleep(0.05)
                await exporter.consume(traces_request(1))
        finally:
            await exporter.shutdown()

    asyncio.run(run())
    assert sink.metadata[0]["authorization"] == "Bearer old-token"


def test_the_http_exporter_sends_the_token_on_every_post_and_follows_rotation(tmp_path, component_log):
    path = tmp_path / "token"
    path.write_text("old-token\n")
    auth = started(make_auth(filename=str(path), header="Authorization"))

    async def run():
        async with HeaderSink() as downstream:
            config, problems = decode(otlp_http.Config, {
                "endpoint": downstream.url, "auth": {"authenticator": AUTH_ID},
                "headers": {"Authorization": "Basic replaced", "X-Tenant": "acme"},
                "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}})
            assert problems == []
            exporter = otlp_http.create(Settings(ComponentID.parse("otlphttp/out"), SelfMetrics(CollectorRegistry()), host=Host({ComponentID.parse(AUTH_ID): auth})), config)
            await exporter.start()
            try:
                await exporter.consume(traces_request(1))
                first = dict(downstream.headers[-1])
                staged = tmp_path / "token.new"
                staged.write_text("new-token\n")
                staged.replace(path)
                deadline = time.monotonic() + 10
                while downstream.headers[-1]["Authorization"] != "Bearer new-token":
                    assert time.monotonic() < deadline, "the new token was never sent"
                    await asyncio.sleep(0.05)
                    await exporter.consume(traces_request(1))
            finally:
                await exporter.shutdown()
            return first, downstream.headers

    first, every = asyncio.run(run())
    assert first["Authorization"] == "Bearer old-token" and first["X-Tenant"] == "acme"
    assert all(len([k for k in h if k.lower() == "authorization"]) == 1 for h in every)
    assert_no_secret(component_log.records, "old-token", "new-token")
