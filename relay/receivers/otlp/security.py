"""What the OTLP receivers check before they read a request: TLS, and the client's credentials.

TLS: the certificate, key and client CA files are loaded and checked at
start (``relay.net.tls.CertificateFiles``), so a missing file, a file that is not PEM,
an encrypted key or a key that does not belong to the certificate stops the relay with
the file named. While
running, a new connection looks at the files again (at most every
``reload_interval``) and a changed set is served from then on: gRPC through
its certificate-config fetcher, HTTP by switching the connection to a new
SSLContext as the client's hello arrives. A set that does not load (a file
half written) is skipped with a warning and the last good one stays.

Credentials: ``AuthGate`` asks the authenticator about each request's
headers; a refusal is counted and logged, without the header's value.
"""

from __future__ import annotations

import grpc

from relay.errors import ConfigError
from relay.net.auth import header_value
from relay.net.tls import CertificateFiles, ServerMaterial
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
        # A slow check (bcrypt) is awaited off the event loop; a fast one (a token) is called.
        self._check_async = getattr(authenticator, "authenticate_async", None)

    async def allows(self, headers, signal: str, status: str, peer: str) -> bool:
        if self._check_async is not None:
            allowed = await self._check_async(headers)
        else:
            allowed = self.authenticator.authenticate(headers)
        if allowed:
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

class _Reloader:
    """Shared by both transports: load a changed set, or keep the old one with a warning."""

    def __init__(self, files: CertificateFiles, log, transport: str):
        self.files = files
        self.log = log
        self.transport = transport
        self._trouble = Throttled(log, 60.0)

    def reload(self) -> ServerMaterial | None:
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

    def configuration(material: ServerMaterial):
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
