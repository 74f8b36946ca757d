"""The OTLP/gRPC exporter against real gRPC sinks on 127.0.0.1 (plaintext and TLS)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import shutil
import socket
import subprocess
import threading
from concurrent import futures

import grpc
import pytest

from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.errors import PermanentError, RetryableError
from relay.exporters import otlp_grpc
from relay.net import endpoints
from relay.signals import Signal
from tests.support import (
    ExporterHarness,
    Sink,
    free_port,
    logs_request,
    metrics_request,
    profiles_request,
    traces_request,
)

EXPORTER = "otlp/test"


# --- requests ---------------------------------------------------------------------------

REQUESTS = {Signal.TRACES: traces_request, Signal.METRICS: metrics_request, Signal.LOGS: logs_request,
            Signal.PROFILES: profiles_request}


# --- harness ----------------------------------------------------------------------------

def make_config(endpoint: str, **settings):
    # One consume, one attempt, its outcome raised: these tests classify the transport's
    # answers. The queue and retry on top are tested in test_exporter_helper.py.
    raw = {"endpoint": endpoint, "tls": {"insecure": True},
           "sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}}
    raw.update(settings)
    config, problems = decode(otlp_grpc.Config, raw)
    assert problems == [], problems
    return config


class Harness(ExporterHarness):
    """A started OTLP/gRPC exporter and the registry it counts into."""

    def __init__(self, endpoint: str, **settings):
        super().__init__(EXPORTER)
        self.exporter = otlp_grpc.create(Settings(ComponentID.parse(EXPORTER), self.telemetry), make_config(endpoint, **settings))


def export_once(endpoint: str, request, **settings) -> tuple[BaseException | None, Harness]:
    harness = Harness(endpoint, **settings)

    async def run():
        async with harness:
            return await harness.consume(request)

    return asyncio.run(run()), harness



# --- delivery ---------------------------------------------------------------------------

@pytest.mark.parametrize("signal", list(Signal), ids=lambda s: s.value)
def test_delivers_each_signal_unchanged_and_counts_it(sink, signal):
    request = REQUESTS[signal]()
    error, h = export_once(sink.endpoint, request)
    assert error is None
    assert sink.requests[signal] == [request]
    assert h.sent(signal) == signal.count(request) > 0
    assert h.failed(signal, True) == h.failed(signal, False) == 0
    assert all(not sink.requests[other] for other in Signal if other is not signal)


def test_several_requests_over_one_channel(sink):
    harness = Harness(sink.endpoint)

    async def run():
        async with harness:
            for signal in (Signal.TRACES, Signal.LOGS, Signal.TRACES, Signal.METRICS):
                assert await harness.consume(REQUESTS[signal]()) is None

    asyncio.run(run())
    assert sink.count(Signal.TRACES) == 6 and harness.sent(Signal.TRACES) == 6
    assert sink.count(Signal.METRICS) == 5 and harness.sent(Signal.METRICS) == 5
    assert sink.count(Signal.LOGS) == 4 and harness.sent(Signal.LOGS) == 4


def test_headers_arrive_as_grpc_metadata(sink):
    headers = {"x-tenant": "acme", "authorization": "Bearer s3cret"}
    error, _ = export_once(sink.endpoint, traces_request(), headers=headers)
    assert error is None
    assert len(sink.metadata) == 1
    assert sink.metadata[0]["x-tenant"] == "acme"
    assert sink.metadata[0]["authorization"] == "Bearer s3cret"


def test_header_values_are_never_logged(sink, component_log):
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "down")
    error, _ = export_once(sink.endpoint, traces_request(), headers={"authorization": "Bearer s3cret"})
    assert isinstance(error, RetryableError)
    assert component_log.records, "the failure should have been logged"
    for record in component_log.records:
        assert "s3cret" not in record.getMessage()
        assert "s3cret" not in repr(getattr(record, "fields", None))


@pytest.mark.parametrize("compression", ["none", "gzip", ""], ids=["none", "gzip", "empty"])
def test_compression_settings_deliver(sink, compression):
    request = traces_request(spans=5, attribute_bytes=32 * 1024)
    error, h = export_once(sink.endpoint, request, compression=compression)
    assert error is None
    assert sink.requests[Signal.TRACES] == [request]
    assert h.sent(Signal.TRACES) == 5  # what crosses the wire is checked through CountingProxy below


class CountingProxy:
    """A TCP relay to ``upstream`` that counts the bytes clients send through it."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.sent_upstream = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst, counted in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(target=self._pump, args=(src, dst, counted), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        try:
            while data := src.recv(65536):
                if counted:
                    with self._lock:
                        self.sent_upstream += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        # shutdown() wakes threads blocked in accept()/recv(); close() alone does not.
        _wake_and_close(self._listener)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _wake_and_close(sock)
        for thread in self._threads:
            thread.join(5)


def _wake_and_close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()




@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_compression_is_applied_on_the_wire(sink, compression):
    # A highly compressible request: gzip must shrink what crosses the wire, none must not.
    request = traces_request(spans=4, attribute_bytes=64 * 1024)
    size = request.ByteSize()
    proxy = CountingProxy(sink.port)
    try:
        error, _ = export_once(proxy.endpoint, request, compression=compression)
    finally:
        proxy.close()
    assert error is None, error
    assert sink.requests[Signal.TRACES] == [request]
    if compression == "gzip":
        assert proxy.sent_upstream < size // 10, (proxy.sent_upstream, size)
    else:
        assert proxy.sent_upstream > size, (proxy.sent_upstream, size)


def test_gzip_is_the_default():
    assert make_config("127.0.0.1:4317").compression == "gzip"


# --- downstream failures ----------------------------------------------------------------

def test_unavailable_is_retryable_and_counted(sink):
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "sink is down")
    error, h = export_once(sink.endpoint, traces_request(spans=3))
    assert isinstance(error, RetryableError)
    assert error.retry_after is None
    assert "UNAVAILABLE" in str(error) and "sink is down" in str(error)
    assert sink.refused == 1
    assert h.failed(Signal.TRACES, True) == 3
    assert h.failed(Signal.TRACES, False) == 0
    assert h.sent(Signal.TRACES) == 0


def test_unavailable_with_retry_info_carries_the_delay(sink):
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "slow down", retry_after=3)
    error, h = export_once(sink.endpoint, logs_request())
    assert isinstance(error, RetryableError)
    assert error.retry_after == 3
    assert h.failed(Signal.LOGS, True) == 4


def test_invalid_argument_is_permanent(sink):
    sink.fail_with(grpc.StatusCode.INVALID_ARGUMENT, "bad trace id")
    error, h = export_once(sink.endpoint, traces_request(spans=3))
    assert isinstance(error, PermanentError)
    assert error.status == "INVALID_ARGUMENT"
    assert "bad trace id" in str(error)
    assert h.failed(Signal.TRACES, False) == 3
    assert h.failed(Signal.TRACES, True) == 0


def test_resource_exhausted_without_retry_info_is_permanent(sink):
    sink.fail_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota")
    error, h = export_once(sink.endpoint, metrics_request())
    assert isinstance(error, PermanentError)
    assert error.status == "RESOURCE_EXHAUSTED"
    assert h.failed(Signal.METRICS, False) == 5


def test_a_too_large_request_is_sent_in_halves_but_a_profiles_request_is_not(sink):
    """Halves of a profiles request would each carry its whole dictionary: it is refused whole."""
    sink.fail_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large")
    export_once(sink.endpoint, traces_request(spans=4))
    assert sink.refused == 3  # all four, then the first half, then its first span: refused alone, it fails
    request = profiles_request(("checkout", "cart"))
    assert Signal.PROFILES.count(request) > 1
    error, _ = export_once(sink.endpoint, request)
    assert isinstance(error, PermanentError) and error.status == "RESOURCE_EXHAUSTED"
    assert sink.refused == 4  # once, whole


def test_resource_exhausted_with_retry_info_is_retryable(sink):
    sink.fail_with(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", retry_after=1.5)
    error, h = export_once(sink.endpoint, metrics_request())
    assert isinstance(error, RetryableError)
    assert error.retry_after == 1.5
    assert h.failed(Signal.METRICS, True) == 5


def test_recovers_when_the_downstream_does(sink):
    harness = Harness(sink.endpoint)

    async def run():
        async with harness:
            sink.fail_with(grpc.StatusCode.UNAVAILABLE, "down")
            assert isinstance(await harness.consume(traces_request(spans=1)), RetryableError)
            sink.fail_with(None)
            assert await harness.consume(traces_request(spans=2)) is None

    asyncio.run(run())
    assert harness.failed(Signal.TRACES, True) == 1
    assert harness.sent(Signal.TRACES) == 2
    assert sink.count(Signal.TRACES) == 2


def test_partial_success_is_not_an_error_but_is_counted_and_logged(sink, component_log):
    sink.fail_with(None, "2 spans had bad ids", partial=2)
    error, h = export_once(sink.endpoint, traces_request(spans=5))
    assert error is None
    assert sink.count(Signal.TRACES) == 5  # delivered once, not retried
    assert h.rejected(Signal.TRACES) == 2
    assert h.failed(Signal.TRACES, True) == h.failed(Signal.TRACES, False) == 0
    records = [r for r in component_log.records if r.getMessage() == "partial success"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.WARNING
    assert record.component == EXPORTER
    assert record.fields["rejected"] == 2
    assert record.fields["message"] == "2 spans had bad ids"
    assert record.fields["signal"] == "traces"


@pytest.mark.parametrize("signal", [Signal.METRICS, Signal.LOGS], ids=lambda s: s.value)
def test_partial_success_other_signals(sink, signal):
    sink.fail_with(None, "some rejected", partial=1)
    error, h = export_once(sink.endpoint, REQUESTS[signal]())
    assert error is None
    assert h.rejected(signal) == 1


def test_full_success_counts_no_rejections(sink, component_log):
    error, h = export_once(sink.endpoint, traces_request())
    assert error is None
    assert h.rejected(Signal.TRACES) == 0
    assert not [r for r in component_log.records if r.getMessage() == "partial success"]


# --- a downstream that never answers, or is not there -----------------------------------

class BlockingSink(Sink):
    """A sink whose handler holds every call until ``release`` is set."""

    def __init__(self):
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def _handler(self, sig):
        inner = super()._handler(sig)

        def export(request, context):
            self.entered.set()
            self.release.wait(30)  # bounded: released at test end
            return inner(request, context)

        return export


@pytest.fixture
def blocking_sink():
    server = BlockingSink().start()
    yield server
    server.release.set()
    server.stop()


@pytest.fixture
def silent_tcp():
    """A TCP listener that accepts connections and never says a word (no HTTP/2 at all)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # listener shut down
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    _wake_and_close(listener)
    thread.join(5)
    for conn in held:
        conn.close()


def test_a_handler_that_never_answers_times_out(blocking_sink):
    error, h = export_once(blocking_sink.endpoint, traces_request(spans=2), timeout="0.5s")
    assert isinstance(error, RetryableError)
    assert "timed out" in str(error)
    assert blocking_sink.entered.is_set(), "the call should have reached the downstream"
    assert h.failed(Signal.TRACES, True) == 2
    assert h.sent(Signal.TRACES) == 0


def test_the_exporter_recovers_after_a_timeout(blocking_sink):
    harness = Harness(blocking_sink.endpoint, timeout="0.5s")

    async def run():
        async with harness:
            error = await harness.consume(traces_request(spans=2))
            assert isinstance(error, RetryableError) and "timed out" in str(error)
            blocking_sink.release.set()
            assert await harness.consume(logs_request()) is None

    asyncio.run(run())
    assert blocking_sink.requests[Signal.LOGS] == [logs_request()]
    assert harness.failed(Signal.TRACES, True) == 2
    assert harness.sent(Signal.LOGS) == 4
    assert harness.sent(Signal.TRACES) == 0


def test_a_silent_tcp_peer_times_out(silent_tcp):
    error, h = export_once(silent_tcp, logs_request(), timeout="0.5s")
    assert isinstance(error, RetryableError)
    assert "timed out" in str(error)
    assert h.failed(Signal.LOGS, True) == 4


def test_nothing_listening_is_retryable():
    port = free_port()
    error, h = export_once(f"127.0.0.1:{port}", traces_request(spans=1), timeout="10s")
    assert isinstance(error, RetryableError)
    assert "UNAVAILABLE" in str(error)  # the gRPC answer, not our own timeout
    assert h.failed(Signal.TRACES, True) == 1


# --- TLS --------------------------------------------------------------------------------

def _write_with_cryptography(tmp_path) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key, issuer_name, issuer_key, *, ca: bool, client: bool = False):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer_name)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False), critical=True)
        elif client:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        else:
            builder = (builder
                       .add_extension(x509.SubjectAlternativeName(
                           [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay test CA")])
    ca_cert = certificate("relay test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = certificate("localhost", server_key, ca_name, ca_key, ca=False)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = certificate("relay test client", client_key, ca_name, ca_key, ca=False, client=True)
    files = _file_names(tmp_path)
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for cert, key, cert_file, key_file in ((server_cert, server_key, "cert", "key"),
                                           (client_cert, client_key, "client_cert", "client_key")):
        files[cert_file].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[key_file].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return files


def _file_names(tmp_path) -> dict:
    return {"ca": tmp_path / "ca.pem", "cert": tmp_path / "server.pem", "key": tmp_path / "server-key.pem",
            "client_cert": tmp_path / "client.pem", "client_key": tmp_path / "client-key.pem"}


def _write_with_openssl(tmp_path) -> dict:
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True, timeout=60)

    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *curve, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=relay test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-new", *curve, "-keyout", "server-key.pem", "-out", "server.csr", "-subj", "/CN=localhost")
    (tmp_path / "server-ext.cnf").write_text("basicConstraints=CA:FALSE\n"
                                             "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                             "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-out", "server.pem", "-days", "1", "-extfile", "server-ext.cnf")
    openssl("req", "-new", *curve, "-keyout", "client-key.pem", "-out", "client.csr", "-subj", "/CN=relay test client")
    (tmp_path / "client-ext.cnf").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-out", "client.pem", "-days", "1", "-extfile", "client-ext.cnf")
    return _file_names(tmp_path)


def _have_cryptography() -> bool:
    try:
        import cryptography.x509  # noqa: F401
    except ImportError:
        return False
    return True


GENERATORS = {"cryptography": (_have_cryptography(), _write_with_cryptography),
              "openssl": (shutil.which("openssl") is not None, _write_with_openssl)}


@pytest.fixture
def tls_files(tmp_path):
    """A throwaway CA and a server certificate for localhost / 127.0.0.1, written to tmp_path."""
    for available, generate in GENERATORS.values():
        if available:
            return generate(tmp_path)
    pytest.skip("neither the cryptography package nor the openssl CLI is available")


class TlsSink(Sink):
    """The recording sink, served over TLS."""

    def __init__(self, cert: bytes, key: bytes, client_ca: bytes | None = None):
        super().__init__()
        self._credentials = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None)

    def start(self) -> "TlsSink":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        for sig in Signal:
            handler = grpc.unary_unary_rpc_method_handler(
                self._handler(sig), request_deserializer=sig.request_type.FromString,
                response_serializer=lambda r: r.SerializeToString())
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(sig.service, {"Export": handler}),))
        self.port = server.add_secure_port(f"127.0.0.1:{self.port}", self._credentials)
        server.start()
        self._server = server
        return self


@pytest.fixture
def tls_sink(tls_files):
    server = TlsSink(tls_files["cert"].read_bytes(), tls_files["key"].read_bytes()).start()
    yield server
    server.stop()


def test_tls_with_the_ca_file_delivers(tls_sink, tls_files):
    request = traces_request(spans=2)
    error, h = export_once(tls_sink.endpoint, request, tls={"ca_file": str(tls_files["ca"])})
    assert error is None, error
    assert tls_sink.requests[Signal.TRACES] == [request]
    assert h.sent(Signal.TRACES) == 2


@pytest.mark.parametrize("generator", list(GENERATORS))
def test_tls_with_certificates_from_each_generator(generator, tmp_path):
    available, generate = GENERATORS[generator]
    if not available:
        pytest.skip(f"{generator} is not available")
    files = generate(tmp_path)
    server = TlsSink(files["cert"].read_bytes(), files["key"].read_bytes()).start()
    try:
        error, _ = export_once(server.endpoint, traces_request(spans=1), tls={"ca_file": str(files["ca"])})
    finally:
        server.stop()
    assert error is None, error
    assert server.count(Signal.TRACES) == 1


@pytest.mark.parametrize("name, delivered", [("localhost", True), ("not-in-the-cert.example", False)])
def test_tls_server_name_override_is_what_gets_checked(tls_sink, tls_files, name, delivered):
    # Dialling by IP (which the certificate lists too), the certificate is checked
    # against the override instead: a name it lacks must fail the handshake.
    error, _ = export_once(tls_sink.endpoint, logs_request(), timeout="10s",
                           tls={"ca_file": str(tls_files["ca"]), "server_name_override": name})
    if delivered:
        assert error is None, error
        assert tls_sink.count(Signal.LOGS) == 4
    else:
        assert isinstance(error, RetryableError), error
        assert tls_sink.count(Signal.LOGS) == 0


@pytest.fixture
def mtls_sink(tls_files):
    server = TlsSink(tls_files["cert"].read_bytes(), tls_files["key"].read_bytes(),
                     client_ca=tls_files["ca"].read_bytes()).start()
    yield server
    server.stop()


def test_mutual_tls_with_a_client_certificate_delivers(mtls_sink, tls_files):
    tls = {"ca_file": str(tls_files["ca"]), "cert_file": str(tls_files["client_cert"]),
           "key_file": str(tls_files["client_key"])}
    error, h = export_once(mtls_sink.endpoint, traces_request(spans=2), tls=tls)
    assert error is None, error
    assert mtls_sink.count(Signal.TRACES) == 2
    assert h.sent(Signal.TRACES) == 2


def test_mutual_tls_without_a_client_certificate_fails(mtls_sink, tls_files):
    error, _ = export_once(mtls_sink.endpoint, traces_request(spans=1), tls={"ca_file": str(tls_files["ca"])},
                           timeout="10s")
    assert isinstance(error, RetryableError), error
    assert mtls_sink.count(Signal.TRACES) == 0


def test_client_cert_without_key_is_a_config_problem(tls_files):
    _, problems = decode(otlp_grpc.Config, {"endpoint": "127.0.0.1:4317",
                                            "tls": {"cert_file": str(tls_files["client_cert"])}})
    assert [str(p) for p in problems] == ["tls::key_file: cert_file and key_file must be given together"]


def test_tls_without_the_ca_fails_retryable(tls_sink):
    # The server's certificate is not trusted by the system roots, so the handshake fails.
    # gRPC reports a failed handshake as UNAVAILABLE (it cannot tell it from a peer that is
    # not up yet), and UNAVAILABLE is retryable in the OTLP table: a RetryableError, the
    # same as the collector. Nothing reaches the sink.
    error, h = export_once(tls_sink.endpoint, traces_request(spans=1), tls={}, timeout="10s")
    assert isinstance(error, RetryableError), error
    assert "UNAVAILABLE" in str(error)
    assert tls_sink.count(Signal.TRACES) == 0
    assert h.failed(Signal.TRACES, True) == 1


def test_tls_to_a_plaintext_sink_fails(sink, tls_files):
    error, _ = export_once(sink.endpoint, traces_request(spans=1),
                           tls={"ca_file": str(tls_files["ca"])}, timeout="10s")
    assert isinstance(error, RetryableError), error
    assert sink.count(Signal.TRACES) == 0


def test_insecure_to_a_tls_sink_fails(tls_sink):
    error, _ = export_once(tls_sink.endpoint, traces_request(spans=1), timeout="10s")
    assert isinstance(error, RetryableError), error
    assert tls_sink.count(Signal.TRACES) == 0


def test_https_scheme_turns_tls_on(tls_sink, tls_files):
    # tls.insecure says plaintext, but the scheme wins.
    request = metrics_request()
    error, _ = export_once(f"https://{tls_sink.endpoint}", request,
                           tls={"insecure": True, "ca_file": str(tls_files["ca"])})
    assert error is None, error
    assert tls_sink.requests[Signal.METRICS] == [request]


def test_http_scheme_turns_tls_off(sink):
    # tls.insecure is false (TLS by default), but the scheme wins.
    request = metrics_request()
    error, _ = export_once(f"http://{sink.endpoint}", request, tls={"insecure": False})
    assert error is None, error
    assert sink.requests[Signal.METRICS] == [request]


def test_https_scheme_to_a_plaintext_sink_fails(sink):
    error, _ = export_once(f"https://{sink.endpoint}", traces_request(spans=1), timeout="10s")
    assert isinstance(error, RetryableError), error
    assert sink.count(Signal.TRACES) == 0


@pytest.mark.parametrize("endpoint, target, tls", [
    ("https://collector:4317", "collector:4317", True),
    ("http://collector:4317/", "collector:4317", False),
    ("collector:4317", "collector:4317", None),
])
def test_split_target(endpoint, target, tls):
    assert endpoints.split_target(endpoint) == (target, tls)


def test_tls_with_inline_pem_and_the_system_pool_delivers(mtls_sink, tls_files):
    tls = {"ca_pem": tls_files["ca"].read_text(), "include_system_ca_certs_pool": True,
           "cert_pem": tls_files["client_cert"].read_text(), "key_pem": tls_files["client_key"].read_text()}
    error, _ = export_once(mtls_sink.endpoint, traces_request(spans=2), tls=tls)
    assert error is None, error
    assert mtls_sink.count(Signal.TRACES) == 2



@pytest.mark.parametrize("tls", [
    {"insecure_skip_verify": True},                          # no CA given: nothing checks the server
    {"ca_file": "CA", "max_version": "1.2"},
    {"ca_file": "CA", "min_version": "1.3"},
    {"ca_file": "CA", "reload_interval": "1m"},
])
def test_what_grpcs_own_tls_cannot_do_goes_through_pythons(tls_sink, tls_files, tls):
    """Each of these is carried by the TLS bridge (relay/net/tls_bridge.py) and still delivers."""
    settings = {key: str(tls_files["ca"]) if value == "CA" else value for key, value in tls.items()}
    request = traces_request(spans=2)
    error, h = export_once(tls_sink.endpoint, request, tls=settings)
    assert error is None, error
    assert tls_sink.requests[Signal.TRACES] == [request]


def test_mutual_tls_through_the_bridge(mtls_sink, tls_files):
    tls = {"ca_file": str(tls_files["ca"]), "cert_file": str(tls_files["client_cert"]),
           "key_file": str(tls_files["client_key"]), "min_version": "1.3"}
    error, _ = export_once(mtls_sink.endpoint, traces_request(spans=1), tls=tls)
    assert error is None, error
    error, _ = export_once(mtls_sink.endpoint, traces_request(spans=1),
                           tls={"ca_file": str(tls_files["ca"]), "min_version": "1.3"}, timeout="2s")
    assert isinstance(error, RetryableError), error  # without the client certificate the server refuses


def test_the_bridge_checks_the_server_unless_told_not_to(tls_sink):
    error, _ = export_once(tls_sink.endpoint, traces_request(spans=1), tls={"min_version": "1.3"}, timeout="2s")
    assert isinstance(error, RetryableError), error  # the system roots do not know the test CA
    assert tls_sink.requests[Signal.TRACES] == []
