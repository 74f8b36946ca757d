"""What the OTLP receivers check before they read a request: TLS, and the client's credentials.

TLS: the certificate, key and client CA files are loaded and checked at
start, so a missing file, a file that is not PEM or a key that does not
belong to the certificate stops the relay with the file named. While
running, a new connection looks at the files again (at most every
``reload_interval``) and a changed set is served from then on: gRPC through
its certificate-config fetcher, HTTP by switching the connection to a new
SSLContext as the client's hello arrives. A set that does not load (a file
half written) is skipped with a warning and the last good one stays.

Credentials: ``AuthGate`` asks the authenticator about each request's
headers; a refusal is counted and logged, without the header's value.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from dataclasses import dataclass

import grpc

from relay.errors import ConfigError, Problem
from relay.net.auth import header_value
from relay.telemetry import Throttled

UNAUTHENTICATED_MESSAGE = "missing or invalid credentials"


class AuthGate:
    """A receiver's yes/no on each request's credentials; every no is counted and logged."""

    def __init__(self, id_, authenticator, telemetry, transport: str, log):
        self.id = str(id_)
        self.transport = transport
        self.authenticator = authenticator
        self.header = getattr(authenticator, "header", None)
        # What a 401 names in WWW-Authenticate.
        self.challenge = getattr(authenticator, "scheme", "") or "Bearer"
        self._failures = telemetry.counter(
            "otelcol_receiver_auth_failures", "Number of requests a receiver refused for missing or wrong credentials",
            ["receiver", "transport"]).labels(self.id, transport)
        self._refused_requests = telemetry.receiver_refused_requests
        self._log = Throttled(log, 10.0)

    def allows(self, headers, signal: str, status: str, peer: str) -> bool:
        if self.authenticator.authenticate(headers):
            return True
        self._failures.inc()
        self._refused_requests.labels(self.id, self.transport, signal, status).inc()
        missing = self.header is not None and header_value(headers, self.header) is None
        # The header's name is no secret; its value, right or wrong, may be (a mistyped token).
        self._log.warning("refused a request without valid credentials", {
            "transport": self.transport, "signal": signal, "status": status, "peer": peer,
            "reason": f"no {self.header} header" if missing else f"wrong {self.header or 'credentials'}"})
        return False


# --- TLS ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Material:
    """One loaded, checked set of server TLS files."""

    context: ssl.SSLContext
    cert: bytes
    key: bytes
    client_ca: bytes | None


class _Encrypted(Exception):
    pass


def _no_passphrase():
    # Without this, OpenSSL would prompt for a passphrase on the terminal.
    raise _Encrypted


class CertificateFiles:
    """The cert_file, key_file and client_ca_file of one TLS server, loaded together, and
    whether any changed on disk since the last load (looked at most every reload_interval).

    Thread-safe: gRPC asks from its own threads.
    """

    def __init__(self, tls, where: tuple[str, ...]):
        self.tls = tls
        self.where = where
        self.paths = {"cert_file": tls.cert_file, "key_file": tls.key_file}
        if tls.client_ca_file:
            self.paths["client_ca_file"] = tls.client_ca_file
        self._lock = threading.Lock()
        self._next_check = 0.0
        self._signature: tuple | None = None

    def _problem(self, key: str, message: str) -> ConfigError:
        return ConfigError([Problem(self.where + (key,), message)])

    def _stat(self) -> tuple:
        out = []
        for path in self.paths.values():
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def load(self) -> Material:
        """Read and check every file; ConfigError naming the key and file when one is unusable."""
        signature = self._stat()  # before reading: a change made while reading is seen next time
        raw = {}
        for key, path in self.paths.items():
            try:
                with open(path, "rb") as handle:
                    raw[key] = handle.read()
            except OSError as error:
                raise self._problem(key, f"cannot read {path}: {error.strerror}") from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        cert_path, key_path = self.paths["cert_file"], self.paths["key_file"]
        try:
            # A throwaway store: does the file hold a PEM certificate at all?
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cadata=raw["cert_file"].decode("latin-1"))
        except ssl.SSLError:
            raise self._problem("cert_file", f"{cert_path} holds no PEM certificate") from None
        try:
            context.load_cert_chain(cert_path, key_path, password=_no_passphrase)
        except _Encrypted:
            raise self._problem("key_file", f"{key_path} is encrypted; the key must be unencrypted PEM") from None
        except ssl.SSLError as error:
            if error.reason == "KEY_VALUES_MISMATCH":
                raise self._problem("key_file", f"{key_path} does not match the certificate in {cert_path}") from None
            raise self._problem("key_file", f"{key_path} holds no PEM private key") from None
        except OSError as error:
            raise self._problem("cert_file", f"cannot load {cert_path} / {key_path}: {error.strerror}") from None
        client_ca = raw.get("client_ca_file")
        if client_ca is not None:
            ca_path = self.paths["client_ca_file"]
            try:
                context.load_verify_locations(cadata=client_ca.decode("latin-1"))
            except ssl.SSLError:
                raise self._problem("client_ca_file", f"{ca_path} holds no PEM certificate") from None
            context.verify_mode = ssl.CERT_REQUIRED
        with self._lock:
            self._signature = signature
        return Material(context, raw["cert_file"], raw["key_file"], client_ca)

    def changed(self) -> bool:
        """True once per change on disk, looked at no more often than ``reload_interval``."""
        interval = self.tls.reload_interval
        if not interval:
            return False
        with self._lock:
            now = time.monotonic()
            if now < self._next_check:
                return False
            self._next_check = now + interval
            signature = self._stat()
            if signature == self._signature:
                return False
            # Taken as seen even if loading it fails: a half-written set is tried again
            # when it changes again, not on every connection.
            self._signature = signature
            return True


class _Reloader:
    """Shared by both transports: load a changed set, or keep the old one with a warning."""

    def __init__(self, files: CertificateFiles, log, transport: str):
        self.files = files
        self.log = log
        self.transport = transport
        self._trouble = Throttled(log, 60.0)

    def reload(self) -> Material | None:
        if not self.files.changed():
            return None
        try:
            material = self.files.load()
        except ConfigError as error:
            self._trouble.warning("TLS files changed but cannot be used; serving the previous certificate",
                                  {"transport": self.transport, "error": str(error)})
            return None
        self.log.info("TLS certificate reloaded", fields={"transport": self.transport,
                                                          "cert_file": self.files.paths["cert_file"]})
        return material


class HttpServerTls:
    """The SSLContext an HTTP listener is given; its hello callback moves each new connection
    onto the newest loaded context."""

    def __init__(self, tls, where: tuple[str, ...], log):
        self._reloader = _Reloader(CertificateFiles(tls, where), log, "http")
        self.log = log
        self.context = self._reloader.files.load().context  # raises at start
        self.context.sni_callback = self._on_hello
        self._current = self.context

    def _on_hello(self, connection, server_name, context) -> None:
        try:
            material = self._reloader.reload()
            if material is not None:
                self._current = material.context
            if self._current is not self.context:
                connection.context = self._current
        except Exception:  # a failed reload must not fail the handshake
            self.log.exception("TLS reload check failed; serving the previous certificate")


def grpc_server_credentials(tls, where: tuple[str, ...], log) -> grpc.ServerCredentials:
    """Credentials whose fetcher, called by gRPC on each new handshake, serves a changed set."""
    reloader = _Reloader(CertificateFiles(tls, where), log, "grpc")
    first = reloader.files.load()  # raises at start

    def configuration(material: Material):
        return grpc.ssl_server_certificate_configuration([(material.key, material.cert)],
                                                         root_certificates=material.client_ca)

    def fetch():
        try:
            material = reloader.reload()
        except Exception:  # an exception here would fail the handshake
            log.exception("TLS reload check failed; serving the previous certificate")
            return None
        return configuration(material) if material is not None else None

    return grpc.dynamic_ssl_server_credentials(configuration(first), fetch,
                                               require_client_authentication=first.client_ca is not None)
