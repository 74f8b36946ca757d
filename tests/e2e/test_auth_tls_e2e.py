"""A real relay process locked down: bearer tokens and TLS on both OTLP receivers.

The OpenTelemetry SDK's own OTLP exporters (gRPC and HTTP) are the clients;
a raw gRPC client and raw TLS sockets look at what they cannot see (the status
code of a refusal, the certificate a port serves). Everything accepted goes on
over OTLP/gRPC to a recording sink.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import pytest
import requests
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from relay.signals import Signal
from tests.support import RelayProcess, Sink, free_port, traces_request
from tests.test_receiver_tls import Pki, served_serial, swap_certificate, wait_until

RESOURCE = Resource.create({"service.name": "chat-api"})
FILE_TOKEN = "file-token-0b9d2c71"
ROTATED_TOKEN = "file-token-rotated-5e3a"
ENV_TOKEN = "env-token-77c1f0aa"
# What the OpenTelemetry SDK exports: it has no profiles exporter.
SDK_SIGNALS = (Signal.TRACES, Signal.METRICS, Signal.LOGS)

def pipelines(receivers: str) -> str:
    return "".join(f"    {s.value}:\n      receivers: [{receivers}]\n      exporters: [otlp]\n" for s in Signal)


def telemetry(metrics_port: int | None = None) -> str:
    metrics = f"address: 127.0.0.1:{metrics_port}" if metrics_port else "level: none"
    return f"  telemetry:\n    logs:\n      level: info\n    metrics:\n      {metrics}\n"


# --- what the SDK sends -----------------------------------------------------------------------

def finished_spans(count: int = 2):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("genops.openrouter")
    for i in range(count):
        with tracer.start_as_current_span(f"chat {i}"):
            pass
    provider.shutdown()
    return memory.get_finished_spans()


def metrics_data():
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    provider.get_meter("genops.openrouter").create_counter("genops.requests").add(3, {"genops.team": "search"})
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def log_records():
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    provider.get_logger("genops.openrouter").emit(body="budget 80% used", severity_number=SeverityNumber.WARN)
    provider.shutdown()
    return memory.get_finished_logs()


def sdk_export(transport: str, signal: Signal, timeout: float = 5, **settings) -> bool:
    """Whether the SDK's exporter of ``signal`` over ``transport`` reports success for one export."""
    exporter_class = {("grpc", Signal.TRACES): GrpcSpanExporter, ("grpc", Signal.METRICS): GrpcMetricExporter,
                      ("grpc", Signal.LOGS): GrpcLogExporter, ("http", Signal.TRACES): HttpSpanExporter,
                      ("http", Signal.METRICS): HttpMetricExporter, ("http", Signal.LOGS): HttpLogExporter}
    data = {Signal.TRACES: finished_spans, Signal.METRICS: metrics_data, Signal.LOGS: log_records}[signal]()
    if transport == "http":
        # Else requests lets REQUESTS_CA_BUNDLE from the environment replace the CA file given.
        session = requests.Session()
        session.trust_env = False
        settings["session"] = session
    exporter = exporter_class[(transport, signal)](timeout=timeout, **settings)
    try:
        # Each signal's exporter has its own result enum; every one names success SUCCESS.
        return exporter.export(data).name == "SUCCESS"
    finally:
        exporter.shutdown()


def raw_grpc(port: int, credentials: grpc.ChannelCredentials | None = None, metadata=None):
    """The status of one Export call made without any SDK."""
    target = f"127.0.0.1:{port}"
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    try:
        channel.unary_unary(Signal.TRACES.method)(traces_request(1).SerializeToString(), metadata=metadata,
                                                  timeout=5)
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()
    finally:
        channel.close()


def scrape(port: int) -> dict[tuple, float]:
    """Every sample the relay's /metrics serves, keyed by (name, sorted label items)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def auth_failures(samples: dict, transport: str) -> float:
    return samples.get(("otelcol_receiver_auth_failures_total",
                        (("receiver", "otlp"), ("transport", transport))), 0.0)


def refused_requests(samples: dict, transport: str, signal: str, status: str) -> float:
    return samples.get(("otelcol_receiver_refused_requests_total", (
        ("receiver", "otlp"), ("signal", signal), ("status", status), ("transport", transport))), 0.0)


# --- bearer tokens ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auth_relay(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("auth")
    token_file = workdir / "token"
    token_file.write_text(FILE_TOKEN + "\n")
    ports = {name: free_port() for name in ("grpc", "http", "health", "metrics")}
    sink = Sink().start()
    config = (f"receivers:\n  otlp:\n    protocols:\n"
              f"      grpc:\n        endpoint: 127.0.0.1:{ports['grpc']}\n"
              f"        auth:\n          authenticator: bearertokenauth/file\n"
              f"      http:\n        endpoint: 127.0.0.1:{ports['http']}\n"
              f"        auth:\n          authenticator: bearertokenauth/env\n"
              f"exporters:\n  otlp:\n    endpoint: {sink.endpoint}\n    tls:\n      insecure: true\n"
              f"    auth:\n      authenticator: bearertokenauth/env\n"
              f"extensions:\n  bearertokenauth/file:\n    filename: {token_file}\n"
              f"  bearertokenauth/env:\n    token: ${{env:RELAY_TOKEN}}\n"
              f"  health_check:\n    endpoint: 127.0.0.1:{ports['health']}\n"
              f"service:\n  extensions: [health_check, bearertokenauth/file, bearertokenauth/env]\n"
              f"  pipelines:\n{pipelines('otlp')}{telemetry(ports['metrics'])}")
    process = RelayProcess(config, workdir, ports["health"], env={"RELAY_TOKEN": ENV_TOKEN})
    try:
        process.start()
        yield process, ports, sink, token_file
        assert process.stop() == 0, process.log_text()
        log = process.log_text()
        for token in (FILE_TOKEN, ROTATED_TOKEN, ENV_TOKEN):
            assert token not in log, "a token was written to the relay's log"
    finally:
        process.stop()
        sink.stop()


def test_without_a_token_nothing_gets_in(auth_relay):
    process, ports, sink, _ = auth_relay
    grpc_url, http_url = f"127.0.0.1:{ports['grpc']}", f"http://127.0.0.1:{ports['http']}"
    before = scrape(ports["metrics"])
    delivered = {signal: sink.count(signal) for signal in Signal}
    for signal in SDK_SIGNALS:
        assert not sdk_export("grpc", signal, endpoint=grpc_url, insecure=True)
        assert not sdk_export("grpc", signal, endpoint=grpc_url, insecure=True,
                              headers=(("authorization", f"Bearer {ENV_TOKEN}"),))  # the other one's token
        assert not sdk_export("http", signal, endpoint=f"{http_url}/v1/{signal.value}")
    assert raw_grpc(ports["grpc"]) == grpc.StatusCode.UNAUTHENTICATED
    assert raw_grpc(ports["grpc"], metadata=(("authorization", f"bearer {FILE_TOKEN}"),)) == \
        grpc.StatusCode.UNAUTHENTICATED
    answer = requests.post(f"{http_url}/v1/traces", data=traces_request(1).SerializeToString(),
                           headers={"Content-Type": "application/x-protobuf"}, timeout=5)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
    assert {signal: sink.count(signal) for signal in Signal} == delivered
    after = scrape(ports["metrics"])
    # gRPC: two SDK exports per signal and two raw calls; HTTP: one SDK export per signal and one POST.
    assert auth_failures(after, "grpc") - auth_failures(before, "grpc") == 8
    assert auth_failures(after, "http") - auth_failures(before, "http") == 4
    assert (refused_requests(after, "grpc", "traces", "UNAUTHENTICATED")
            - refused_requests(before, "grpc", "traces", "UNAUTHENTICATED")) == 4
    assert refused_requests(after, "http", "logs", "401") - refused_requests(before, "http", "logs", "401") == 1
    assert wait_until(lambda: "refused a request without valid credentials" in process.log_text())
    for token in (FILE_TOKEN, ENV_TOKEN):
        assert token not in process.log_text()


def test_with_the_token_every_signal_arrives_over_both_protocols(auth_relay):
    _, ports, sink, _ = auth_relay
    before = {signal: sink.count(signal) for signal in Signal}
    for signal in SDK_SIGNALS:
        assert sdk_export("grpc", signal, endpoint=f"127.0.0.1:{ports['grpc']}", insecure=True,
                          headers=(("authorization", f"Bearer {FILE_TOKEN}"),))
        assert sdk_export("http", signal, endpoint=f"http://127.0.0.1:{ports['http']}/v1/{signal.value}",
                          headers={"Authorization": f"Bearer {ENV_TOKEN}"})
    # Two spans, one data point, one log record per export; two exports each.
    for signal, items in ((Signal.TRACES, 4), (Signal.METRICS, 2), (Signal.LOGS, 2)):
        assert sink.wait_for(signal, before[signal] + items), signal
    # The relay's own exporter authenticates downstream with its authenticator's header.
    assert sink.metadata and all(m["authorization"] == f"Bearer {ENV_TOKEN}" for m in sink.metadata)


def test_a_rotated_token_file_is_used_without_a_restart(auth_relay):
    process, ports, _, token_file = auth_relay
    staged = token_file.with_name("token.new")
    staged.write_text(ROTATED_TOKEN + "\n")
    staged.replace(token_file)
    rotated = (("authorization", f"Bearer {ROTATED_TOKEN}"),)
    assert wait_until(lambda: raw_grpc(ports["grpc"], metadata=rotated) == grpc.StatusCode.OK), \
        "the rotated token was never accepted"
    assert raw_grpc(ports["grpc"], metadata=(("authorization", f"Bearer {FILE_TOKEN}"),)) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert sdk_export("grpc", Signal.LOGS, endpoint=f"127.0.0.1:{ports['grpc']}", insecure=True, headers=rotated)
    assert process.process.poll() is None
    assert "token file changed; token reloaded" in process.log_text()


# --- TLS --------------------------------------------------------------------------------------

def tls_block(files: dict, indent: str = "        ") -> str:
    lines = [f"{key}: {value}" for key, value in files.items()]
    return f"{indent}tls:\n" + "".join(f"{indent}  {line}\n" for line in lines)


def tls_relay_config(ports: dict, sink: Sink, server: dict, client_ca: Path) -> str:
    """Receiver ``otlp`` serves TLS, ``otlp/mtls`` wants client certificates too."""
    mtls = {**server, "client_ca_file": client_ca}
    return (f"receivers:\n"
            f"  otlp:\n    protocols:\n"
            f"      grpc:\n        endpoint: 127.0.0.1:{ports['grpc']}\n{tls_block(server)}"
            f"      http:\n        endpoint: 127.0.0.1:{ports['http']}\n{tls_block(server)}"
            f"  otlp/mtls:\n    protocols:\n"
            f"      grpc:\n        endpoint: 127.0.0.1:{ports['mtls_grpc']}\n{tls_block(mtls)}"
            f"      http:\n        endpoint: 127.0.0.1:{ports['mtls_http']}\n{tls_block(mtls)}"
            f"exporters:\n  otlp:\n    endpoint: {sink.endpoint}\n    tls:\n      insecure: true\n"
            f"extensions:\n  health_check:\n    endpoint: 127.0.0.1:{ports['health']}\n"
            f"service:\n  extensions: [health_check]\n  pipelines:\n{pipelines('otlp, otlp/mtls')}{telemetry()}")


@pytest.fixture
def tls_relay(tmp_path):
    pki = Pki(tmp_path)
    cert, key, serial = pki.issue("server")
    client_cert, client_key, _ = pki.issue("client", "relay test client", client=True)
    ports = {name: free_port() for name in ("grpc", "http", "mtls_grpc", "mtls_http", "health")}
    sink = Sink().start()
    server = {"cert_file": cert, "key_file": key, "reload_interval": "100ms"}
    process = RelayProcess(tls_relay_config(ports, sink, server, pki.ca_file), tmp_path, ports["health"])
    try:
        process.start()
        yield {"process": process, "ports": ports, "sink": sink, "pki": pki, "cert": cert, "key": key,
               "serial": serial, "client_cert": client_cert, "client_key": client_key}
        assert process.stop() == 0, process.log_text()
    finally:
        process.stop()
        sink.stop()


def channel_credentials(ca: Path, cert: Path | None = None, key: Path | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(ca.read_bytes(), key.read_bytes() if key else None,
                                        cert.read_bytes() if cert else None)


def test_tls_and_mutual_tls_with_the_sdk(tls_relay):
    ports, sink, pki = tls_relay["ports"], tls_relay["sink"], tls_relay["pki"]
    client = {"cert": tls_relay["client_cert"], "key": tls_relay["client_key"]}
    # TLS: a client trusting the CA delivers; plaintext gets nothing through.
    assert sdk_export("grpc", Signal.TRACES, endpoint=f"127.0.0.1:{ports['grpc']}",
                      credentials=channel_credentials(pki.ca_file))
    assert sdk_export("http", Signal.TRACES, endpoint=f"https://127.0.0.1:{ports['http']}/v1/traces",
                      certificate_file=str(pki.ca_file))
    assert raw_grpc(ports["grpc"]) == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(requests.ConnectionError):
        requests.post(f"http://127.0.0.1:{ports['http']}/v1/traces", data=b"", timeout=5,
                      headers={"Content-Type": "application/x-protobuf"})
    # Mutual TLS: no client certificate, no delivery; one signed by the CA delivers.
    assert raw_grpc(ports["mtls_grpc"], channel_credentials(pki.ca_file)) == grpc.StatusCode.UNAVAILABLE
    # TLS 1.3: the client finishes its side of the handshake, then the server's alert cuts the connection.
    with pytest.raises(requests.ConnectionError):
        requests.post(f"https://127.0.0.1:{ports['mtls_http']}/v1/traces", data=b"", verify=str(pki.ca_file),
                      headers={"Content-Type": "application/x-protobuf"}, timeout=5)
    assert sdk_export("grpc", Signal.METRICS, endpoint=f"127.0.0.1:{ports['mtls_grpc']}",
                      credentials=channel_credentials(pki.ca_file, client["cert"], client["key"]))
    assert sdk_export("http", Signal.LOGS, endpoint=f"https://127.0.0.1:{ports['mtls_http']}/v1/logs",
                      certificate_file=str(pki.ca_file), client_certificate_file=str(client["cert"]),
                      client_key_file=str(client["key"]))
    assert sink.wait_for(Signal.TRACES, 4) and sink.wait_for(Signal.METRICS, 1) and sink.wait_for(Signal.LOGS, 1)


def test_a_certificate_swapped_on_disk_is_served_without_a_restart(tls_relay, tmp_path):
    ports, process = tls_relay["ports"], tls_relay["process"]
    assert served_serial(ports["http"]) == tls_relay["serial"]
    successor = Pki(tmp_path, "successor")
    new_cert, new_key, new_serial = successor.issue("next", common_name="localhost-next")
    swap_certificate(tls_relay["cert"], tls_relay["key"], new_cert, new_key)

    assert wait_until(lambda: served_serial(ports["http"]) == new_serial), "HTTP never served the new certificate"
    assert wait_until(lambda: raw_grpc(ports["grpc"], channel_credentials(successor.ca_file)) == grpc.StatusCode.OK), \
        "gRPC never served the new certificate"
    assert raw_grpc(ports["grpc"], channel_credentials(tls_relay["pki"].ca_file)) == grpc.StatusCode.UNAVAILABLE
    assert sdk_export("http", Signal.TRACES, endpoint=f"https://127.0.0.1:{ports['http']}/v1/traces",
                      certificate_file=str(successor.ca_file))
    assert process.process.poll() is None
    reloads = [line for line in process.log_lines() if line.get("msg") == "TLS certificate reloaded"]
    assert {line["transport"] for line in reloads} >= {"grpc", "http"}


def test_unusable_tls_files_stop_the_relay_naming_the_file(tmp_path):
    pki = Pki(tmp_path)
    cert, key, _ = pki.issue("server")
    _, other_key, _ = Pki(tmp_path, "other").issue("other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    cases = {"missing-cert": ({"cert_file": tmp_path / "missing.pem", "key_file": key},
                              f"cannot read {tmp_path / 'missing.pem'}"),
             "garbage-key": ({"cert_file": cert, "key_file": garbage}, f"{garbage} holds no PEM private key"),
             "mismatch": ({"cert_file": cert, "key_file": other_key},
                          f"{other_key} does not match the certificate in {cert}")}
    processes = {}
    for name, (files, _) in cases.items():
        workdir = tmp_path / name
        workdir.mkdir()
        config = (f"receivers:\n  otlp:\n    protocols:\n"
                  f"      grpc:\n        endpoint: 127.0.0.1:{free_port()}\n{tls_block(files)}"
                  f"exporters:\n  debug: {{}}\n"
                  f"service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
                  f"{telemetry()}")
        processes[name] = RelayProcess(config, workdir).start()  # all at once: each one's start-up overlaps
    for name, process in processes.items():
        try:
            code = process.process.wait(30)
        finally:
            process.stop()
        assert code != 0, f"{name}: the relay ran"
        failure = [line for line in process.log_lines() if line.get("msg") == "relay failed to start"]
        assert failure, process.log_text()
        assert cases[name][1] in failure[0]["error"], failure[0]
        assert "receivers::otlp::protocols::grpc::tls::" in failure[0]["error"]
