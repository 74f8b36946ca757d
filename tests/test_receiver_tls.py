"""TLS and mutual TLS on the OTLP receivers, run in-process on 127.0.0.1, and certificate reload.

Certificates come from a throwaway CA made here with the cryptography package.
A reload is shown by the certificate the server presents (its serial number),
and, for gRPC, by a handshake that only a client trusting the new CA completes.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import socket
import ssl
import time
from pathlib import Path

import aiohttp
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry

from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.errors import ConfigError
from relay.receivers import otlp
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import Recorder, traces_request

RECEIVER = "otlp/tls"
PROTOBUF = "application/x-protobuf"
REFUSED_HANDSHAKE = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, ssl.SSLError)


# --- a throwaway PKI --------------------------------------------------------------------------

def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Pki:
    """A CA whose certificate is ``<directory>/<ca>.pem``, issuing server and client certificates."""

    def __init__(self, directory: Path, ca: str = "ca"):
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(f"relay test CA {ca}")
        self.cert = self._issue(self.name, self.key, ca=True)
        self.ca_file = directory / f"{ca}.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _issue(self, subject: x509.Name, key, *, ca: bool = False, client: bool = False) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if client:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        elif not ca:
            builder = (builder
                       .add_extension(x509.SubjectAlternativeName(
                           [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        return builder.sign(self.key, hashes.SHA256())

    def issue(self, stem: str, common_name: str = "localhost", client: bool = False) -> tuple[Path, Path, int]:
        """(cert file, key file, serial) of a new certificate, written as ``<stem>.pem`` / ``<stem>-key.pem``."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._issue(_name(common_name), key, client=client)
        cert_file, key_file = self.directory / f"{stem}.pem", self.directory / f"{stem}-key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_pem_key(key))
        return cert_file, key_file, cert.serial_number


def replace_file(target: Path, source: Path) -> None:
    """Put ``source``'s bytes at ``target`` in one rename, as a secret manager would."""
    staged = target.with_name(target.name + ".new")
    staged.write_bytes(source.read_bytes())
    os.replace(staged, target)


def swap_certificate(cert_file: Path, key_file: Path, new_cert: Path, new_key: Path) -> None:
    replace_file(key_file, new_key)
    replace_file(cert_file, new_cert)


def served_serial(port: int) -> int:
    """The serial of the certificate a TLS server on 127.0.0.1:``port`` presents (not verified)."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=5)
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


async def async_wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return await predicate()


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


@pytest.fixture
def server_files(pki):
    cert, key, serial = pki.issue("server")
    return {"cert_file": str(cert), "key_file": str(key), "serial": serial}


# --- harness ----------------------------------------------------------------------------------

def tls_settings(files: dict, **more) -> dict:
    return {"cert_file": files["cert_file"], "key_file": files["key_file"], **more}


class Harness:
    """A receiver with the given protocol settings (both on 127.0.0.1:0) and a recorder behind it."""

    def __init__(self, grpc_settings: dict | None = None, http_settings: dict | None = None):
        self.telemetry = SelfMetrics(CollectorRegistry())
        protocols = {}
        if grpc_settings is not None:
            protocols["grpc"] = {"endpoint": "127.0.0.1:0", **grpc_settings}
        if http_settings is not None:
            protocols["http"] = {"endpoint": "127.0.0.1:0", **http_settings}
        config, problems = decode(otlp.Config, {"protocols": protocols})
        assert problems == [], problems
        self.recorder = Recorder()
        self.receiver = otlp.create(Settings(ComponentID.parse(RECEIVER), self.telemetry), config, {Signal.TRACES: self.recorder})
        both = hasattr(self.receiver, "grpc")
        self.grpc = self.receiver.grpc if both else (self.receiver if grpc_settings is not None else None)
        self.http = self.receiver.http if both else (self.receiver if http_settings is not None else None)

    async def __aenter__(self) -> "Harness":
        await self.receiver.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.receiver.shutdown(grace=0)

    async def grpc_export(self, credentials: grpc.ChannelCredentials | None, *, spans: int = 1):
        """None on success, else the gRPC status code."""
        target = f"127.0.0.1:{self.grpc.port}"
        channel = (grpc.aio.secure_channel(target, credentials) if credentials is not None
                   else grpc.aio.insecure_channel(target))
        try:
            await channel.unary_unary(Signal.TRACES.method)(traces_request(spans).SerializeToString(), timeout=5)
            return None
        except grpc.aio.AioRpcError as error:
            return error.code()
        finally:
            await channel.close()

    async def http_export(self, context: ssl.SSLContext | None, *, scheme: str = "https", spans: int = 1):
        """The HTTP status, or the client-side exception when no answer came."""
        url = f"{scheme}://127.0.0.1:{self.http.port}/v1/traces"
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=traces_request(spans).SerializeToString(),
                                        headers={"Content-Type": PROTOBUF}, ssl=context if context else False,
                                        timeout=aiohttp.ClientTimeout(total=5)) as answer:
                    await answer.read()
                    return answer.status
        except (aiohttp.ClientError, OSError) as error:
            return error


def client_context(ca_file, cert_file=None, key_file=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file))
    return context


def grpc_credentials(ca_file, cert_file=None, key_file=None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes(),
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None)


def spans_received(recorder: Recorder) -> int:
    return sum(Signal.TRACES.count(r) for r in recorder.requests)


# --- TLS --------------------------------------------------------------------------------------

def test_tls_on_both_protocols_delivers_to_a_client_trusting_the_ca(pki, server_files):
    async def run():
        async with Harness(grpc_settings={"tls": tls_settings(server_files)},
                           http_settings={"tls": tls_settings(server_files)}) as h:
            assert await h.grpc_export(grpc_credentials(pki.ca_file), spans=2) is None
            assert await h.http_export(client_context(pki.ca_file), spans=3) == 200
            return spans_received(h.recorder)

    assert asyncio.run(run()) == 5


def test_plaintext_to_a_tls_port_gets_nothing_through(server_files):
    async def run():
        async with Harness(grpc_settings={"tls": tls_settings(server_files)},
                           http_settings={"tls": tls_settings(server_files)}) as h:
            grpc_code = await h.grpc_export(None)
            http_outcome = await h.http_export(None, scheme="http")
            return grpc_code, http_outcome, spans_received(h.recorder)

    grpc_code, http_outcome, received = asyncio.run(run())
    assert grpc_code == grpc.StatusCode.UNAVAILABLE
    # The server reads a plain request as a broken TLS hello and hangs up.
    assert isinstance(http_outcome, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)), http_outcome
    assert received == 0


def test_a_client_not_trusting_the_ca_gets_nothing_through(tmp_path, server_files):
    stranger = Pki(tmp_path, "stranger")

    async def run():
        async with Harness(grpc_settings={"tls": tls_settings(server_files)},
                           http_settings={"tls": tls_settings(server_files)}) as h:
            return (await h.grpc_export(grpc_credentials(stranger.ca_file)),
                    await h.http_export(client_context(stranger.ca_file)), spans_received(h.recorder))

    grpc_code, http_outcome, received = asyncio.run(run())
    assert grpc_code == grpc.StatusCode.UNAVAILABLE
    assert isinstance(http_outcome, aiohttp.ClientConnectorCertificateError), http_outcome
    assert received == 0


def test_mutual_tls_needs_a_client_certificate_signed_by_the_client_ca(tmp_path, pki, server_files):
    client_cert, client_key, _ = pki.issue("client", "relay test client", client=True)
    stranger = Pki(tmp_path, "stranger")
    stranger_cert, stranger_key, _ = stranger.issue("stranger-client", "someone else", client=True)
    tls = tls_settings(server_files, client_ca_file=str(pki.ca_file))

    async def run():
        async with Harness(grpc_settings={"tls": tls}, http_settings={"tls": tls}) as h:
            outcomes = {
                "grpc without": await h.grpc_export(grpc_credentials(pki.ca_file)),
                "grpc stranger": await h.grpc_export(grpc_credentials(pki.ca_file, stranger_cert, stranger_key)),
                "http without": await h.http_export(client_context(pki.ca_file)),
                "http stranger": await h.http_export(client_context(pki.ca_file, stranger_cert, stranger_key)),
            }
            refused = spans_received(h.recorder)
            outcomes["grpc with"] = await h.grpc_export(grpc_credentials(pki.ca_file, client_cert, client_key),
                                                        spans=2)
            outcomes["http with"] = await h.http_export(client_context(pki.ca_file, client_cert, client_key),
                                                        spans=3)
            return outcomes, refused, spans_received(h.recorder)

    outcomes, refused, received = asyncio.run(run())
    assert outcomes["grpc without"] == outcomes["grpc stranger"] == grpc.StatusCode.UNAVAILABLE
    # The server's alert reaches the client as a failed handshake or a connection cut before the answer.
    assert isinstance(outcomes["http without"], REFUSED_HANDSHAKE), outcomes
    assert isinstance(outcomes["http stranger"], REFUSED_HANDSHAKE), outcomes
    assert refused == 0
    assert outcomes["grpc with"] is None and outcomes["http with"] == 200
    assert received == 5


# --- reload -----------------------------------------------------------------------------------

def test_http_serves_a_swapped_certificate_without_a_restart(pki, server_files, component_log):
    new_cert, new_key, new_serial = pki.issue("next", common_name="localhost-next")

    async def run():
        async with Harness(http_settings={"tls": tls_settings(server_files, reload_interval="50ms")}) as h:
            before = await asyncio.to_thread(served_serial, h.http.port)
            swap_certificate(Path(server_files["cert_file"]), Path(server_files["key_file"]), new_cert, new_key)
            swapped = await async_wait_until(
                lambda: asyncio.to_thread(lambda: served_serial(h.http.port) == new_serial))
            # A verified client completes the handshake with the new certificate and delivers.
            status = await h.http_export(client_context(pki.ca_file))
            return before, swapped, status

    before, swapped, status = asyncio.run(run())
    assert before == server_files["serial"] != new_serial
    assert swapped, "the new certificate was never served"
    assert status == 200
    assert any(r.getMessage() == "TLS certificate reloaded" and r.fields["transport"] == "http"
               for r in component_log.records)


def test_grpc_serves_a_certificate_from_a_new_ca_without_a_restart(tmp_path, pki, server_files, component_log):
    successor = Pki(tmp_path, "successor")
    new_cert, new_key, _ = successor.issue("next")

    async def run():
        async with Harness(grpc_settings={"tls": tls_settings(server_files, reload_interval="50ms")}) as h:
            before_old = await h.grpc_export(grpc_credentials(pki.ca_file))
            before_new = await h.grpc_export(grpc_credentials(successor.ca_file))
            swap_certificate(Path(server_files["cert_file"]), Path(server_files["key_file"]), new_cert, new_key)

            async def new_ca_works():
                return await h.grpc_export(grpc_credentials(successor.ca_file)) is None

            swapped = await async_wait_until(new_ca_works)
            after_old = await h.grpc_export(grpc_credentials(pki.ca_file))
            return before_old, before_new, swapped, after_old, spans_received(h.recorder)

    before_old, before_new, swapped, after_old, received = asyncio.run(run())
    assert before_old is None and before_new == grpc.StatusCode.UNAVAILABLE
    assert swapped, "the new certificate was never served"
    assert after_old == grpc.StatusCode.UNAVAILABLE
    assert received >= 2
    assert any(r.getMessage() == "TLS certificate reloaded" and r.fields["transport"] == "grpc"
               for r in component_log.records)


def test_a_broken_swap_keeps_the_old_certificate_until_a_good_one_arrives(tmp_path, pki, server_files,
                                                                          component_log):
    stranger = Pki(tmp_path, "stranger")
    _, wrong_key, _ = stranger.issue("wrong")
    good_cert, good_key, good_serial = pki.issue("good", common_name="localhost-good")
    cert_file, key_file = Path(server_files["cert_file"]), Path(server_files["key_file"])

    async def run():
        async with Harness(http_settings={"tls": tls_settings(server_files, reload_interval="50ms")}) as h:
            replace_file(key_file, wrong_key)  # no longer the certificate's key

            def warned():
                return any(r.getMessage().startswith("TLS files changed but cannot be used")
                           for r in component_log.records)

            async def handshake_and_check():
                await asyncio.to_thread(served_serial, h.http.port)
                return warned()

            assert await async_wait_until(handshake_and_check), "the broken pair was never looked at"
            still = await asyncio.to_thread(served_serial, h.http.port)
            status = await h.http_export(client_context(pki.ca_file))
            swap_certificate(cert_file, key_file, good_cert, good_key)
            swapped = await async_wait_until(
                lambda: asyncio.to_thread(lambda: served_serial(h.http.port) == good_serial))
            return still, status, swapped

    still, status, swapped = asyncio.run(run())
    assert still == server_files["serial"]
    assert status == 200
    assert swapped
    warning = next(r for r in component_log.records if r.getMessage().startswith("TLS files changed"))
    assert str(key_file) in warning.fields["error"] and "does not match" in warning.fields["error"]


def test_reload_interval_zero_keeps_the_certificate_it_started_with(pki, server_files):
    new_cert, new_key, _ = pki.issue("next")

    async def run():
        async with Harness(http_settings={"tls": tls_settings(server_files, reload_interval=0)}) as h:
            swap_certificate(Path(server_files["cert_file"]), Path(server_files["key_file"]), new_cert, new_key)
            return [await asyncio.to_thread(served_serial, h.http.port) for _ in range(3)]

    assert asyncio.run(run()) == [server_files["serial"]] * 3


# --- start-up errors --------------------------------------------------------------------------

def _start(protocol: str, tls: dict) -> ConfigError:
    async def run():
        harness = Harness(**{f"{protocol}_settings": {"tls": tls}})
        try:
            await harness.receiver.start()
        except ConfigError as error:
            return error
        await harness.receiver.shutdown(grace=0)
        return None

    error = asyncio.run(run())
    assert error is not None, "the receiver started"
    return error


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_missing_certificate_stops_the_start_naming_the_file(protocol, tmp_path, server_files):
    missing = str(tmp_path / "nowhere.pem")
    error = _start(protocol, tls_settings(server_files, cert_file=missing))
    assert str(error) == (f"receivers::{RECEIVER}::protocols::{protocol}::tls::cert_file: "
                          f"cannot read {missing}: No such file or directory")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_key_that_is_not_the_certificates_stops_the_start(protocol, tmp_path, server_files):
    _, other_key, _ = Pki(tmp_path, "other").issue("other")
    error = _start(protocol, tls_settings(server_files, key_file=str(other_key)))
    assert str(error) == (f"receivers::{RECEIVER}::protocols::{protocol}::tls::key_file: "
                          f"{other_key} does not match the certificate in {server_files['cert_file']}")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("key, content, message", [
    ("cert_file", b"not a certificate\n", "holds no PEM certificate"),
    ("key_file", b"not a key\n", "holds no PEM private key"),
    ("client_ca_file", b"not a CA\n", "holds no PEM certificate"),
])
def test_files_that_are_not_pem_stop_the_start(protocol, key, content, message, tmp_path, server_files):
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    error = _start(protocol, tls_settings(server_files, **{key: str(bad)}))
    assert str(error) == f"receivers::{RECEIVER}::protocols::{protocol}::tls::{key}: {bad} {message}"


def test_an_encrypted_key_stops_the_start_without_prompting(tmp_path, server_files):
    key = serialization.load_pem_private_key(Path(server_files["key_file"]).read_bytes(), None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"passphrase")))
    error = _start("http", tls_settings(server_files, key_file=str(encrypted)))
    assert f"{encrypted} is encrypted" in str(error)


def encrypted_copy(key_file: str, target: Path) -> Path:
    key = serialization.load_pem_private_key(Path(key_file).read_bytes(), None)
    target.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"passphrase")))
    return target


@pytest.mark.parametrize("key, make, message", [
    ("key_file", lambda tmp_path, files: encrypted_copy(files["key_file"], tmp_path / "encrypted-key.pem"),
     "is encrypted; the key must be unencrypted PEM"),
    ("cert_file", lambda tmp_path, files: (tmp_path / "bad.pem", (tmp_path / "bad.pem").write_bytes(b"no\n"))[0],
     "holds no PEM certificate"),
])
def test_the_zipkin_receiver_checks_its_tls_files_as_the_otlp_one_does(key, make, message, tmp_path, server_files):
    # The same loader as the OTLP receiver's: an encrypted key is refused by name, never prompted for.
    from relay.receivers import zipkin
    from relay.receivers.zipkin.server import ZipkinReceiver

    bad = make(tmp_path, server_files)
    config, problems = decode(zipkin.Config, {"endpoint": "127.0.0.1:0",
                                              "tls": tls_settings(server_files, **{key: str(bad)})})
    assert problems == []
    receiver = ZipkinReceiver(ComponentID("zipkin"), config, Recorder(), SelfMetrics(CollectorRegistry()))

    async def run():
        try:
            await receiver.start()
        except ConfigError as error:
            return error
        await receiver.shutdown(0)
        return None

    error = asyncio.run(run())
    assert str(error) == f"receivers::zipkin::tls::{key}: {bad} {message}"


def test_nothing_listens_after_a_failed_tls_start(tmp_path, server_files):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    missing = str(tmp_path / "nowhere.pem")
    config, problems = decode(otlp.Config, {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"},
                                                          "http": {"endpoint": "127.0.0.1:0",
                                                                   "tls": tls_settings(server_files, key_file=missing)}}})
    assert problems == []
    receiver = otlp.create(Settings(ComponentID.parse(RECEIVER), SelfMetrics(CollectorRegistry())), config, {Signal.TRACES: Recorder()})

    async def run():
        with pytest.raises(ConfigError):
            await receiver.start()

    asyncio.run(run())
    # The gRPC half, started first, was stopped again: its port is free.
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


# --- settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("tls, expected", [
    ({}, ["protocols::grpc::tls::cert_file: required: a TLS server needs cert_file and key_file"]),
    ({"cert_file": "c.pem"}, ["protocols::grpc::tls::key_file: cert_file and key_file must be given together"]),
    ({"key_file": "k.pem"}, ["protocols::grpc::tls::cert_file: cert_file and key_file must be given together"]),
    ({"client_ca_file": "ca.pem"},
     ["protocols::grpc::tls::cert_file: required: a TLS server needs cert_file and key_file"]),
    ({"cert_file": "c.pem", "key_file": "k.pem", "reload_interval": "-1s"},
     ['protocols::grpc::tls::reload_interval: invalid duration "-1s" (use e.g. "5s", "200ms", "1m")']),
    ({"cert_file": "c.pem", "key_file": "k.pem", "reload_interval": -1},
     ["protocols::grpc::tls::reload_interval: must not be negative (0 never reloads)"]),
    ({"cert_file": "c.pem", "key_file": "k.pem", "ca_file": "x"},
     ["protocols::grpc::tls::ca_file: unknown key (valid keys: cert_file, client_ca_file, key_file, "
      "reload_interval)"]),
])
def test_tls_settings_problems_name_their_key(tls, expected):
    _, problems = decode(otlp.Config, {"protocols": {"grpc": {"tls": tls}}})
    assert [str(p) for p in problems] == expected


def test_tls_defaults():
    config, problems = decode(otlp.Config, {"protocols": {"http": {"tls": {"cert_file": "c", "key_file": "k"}}}})
    assert problems == []
    tls = config.protocols.http.tls
    assert (tls.client_ca_file, tls.reload_interval) == ("", 30.0)
    assert config.protocols.http.auth is None
