"""One client TLS config, the collector's ``configtls`` keys, for every client the relay has: the
otlp, otlphttp, jaeger and remote-write exporters, the budget webhook and the prometheus
receiver's scrapes; and one server TLS config, for the receivers' listeners, loaded and checked
by ``CertificateFiles`` (an encrypted key is an error, never a passphrase prompt).

- ``insecure``: gRPC without a scheme in the endpoint sends in plain text; an http:// or
  https:// URL's scheme decides for HTTP clients, as in the collector.
- ``ca_file`` / ``ca_pem``: the CAs trusted instead of the system's, or beside them with
  ``include_system_ca_certs_pool``. ``cert_file`` / ``cert_pem`` and ``key_file`` / ``key_pem``:
  the client certificate (mutual TLS). A file or its PEM, not both.
- ``insecure_skip_verify``: TLS without checking the server's certificate.
- ``server_name_override``: the name sent (SNI) and checked against the certificate.
- ``min_version`` / ``max_version``: "1.0" to "1.3"; the minimum defaults to 1.2, as in the
  collector.
- ``reload_interval``: how often a client looks at its files again and, when they changed,
  uses them for new connections; 0 reads them once, at start.

gRPC's own TLS cannot skip verification, hold TLS to 1.3 only or below 1.3, or reload its
files; with those settings a gRPC client's channel goes through ``tls_bridge`` (Python's TLS,
more CPU per byte), and otherwise uses gRPC's TLS.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field

from relay.config.decode import Duration
from relay.errors import ConfigError, Problem

VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2,
            "1.3": ssl.TLSVersion.TLSv1_3}
DEFAULT_MIN_VERSION = "1.2"


@dataclass
class TLSClientConfig:
    insecure: bool = False
    insecure_skip_verify: bool = False
    server_name_override: str = ""
    ca_file: str = ""
    ca_pem: str = ""
    cert_file: str = ""
    cert_pem: str = ""
    key_file: str = ""
    # repr=False: a config dump must not carry a private key.
    key_pem: str = field(default="", repr=False)
    include_system_ca_certs_pool: bool = False
    min_version: str = ""
    max_version: str = ""
    reload_interval: Duration = Duration(0.0)

    def validate(self) -> list[Problem]:
        problems = []
        for kind in ("ca", "cert", "key"):
            if getattr(self, f"{kind}_file") and getattr(self, f"{kind}_pem"):
                problems.append(Problem((f"{kind}_pem",), f"give {kind}_file or {kind}_pem, not both"))
        has_cert, has_key = bool(self.cert_file or self.cert_pem), bool(self.key_file or self.key_pem)
        if has_cert != has_key:
            inline = self.cert_pem or self.key_pem
            problems.append(Problem(("key_file" if has_cert else "cert_file",),
                                    "a client certificate needs its key, and a key its certificate" if inline
                                    else "cert_file and key_file must be given together"))
        for name in ("min_version", "max_version"):
            value = getattr(self, name)
            if value and value not in VERSIONS:
                problems.append(Problem((name,), f'"{value}" is not a TLS version (valid: {", ".join(VERSIONS)})'))
        low, high = self.min_version or DEFAULT_MIN_VERSION, self.max_version
        if low in VERSIONS and high in VERSIONS and VERSIONS[low] > VERSIONS[high]:
            problems.append(Problem(("max_version",), f"must not be below min_version ({low})"))
        if self.reload_interval < 0:
            problems.append(Problem(("reload_interval",), "must not be negative"))
        return problems

    def needs_python_tls(self) -> bool:
        """Whether a gRPC channel must go through ``tls_bridge``: what gRPC's own TLS cannot do
        (it verifies always, negotiates 1.2 or 1.3, and reads its files once)."""
        return (self.insecure_skip_verify or self.min_version == "1.3" or self.max_version in ("1.0", "1.1", "1.2")
                or self.reload_interval > 0)

    def files(self) -> tuple[str, ...]:
        return tuple(path for path in (self.ca_file, self.cert_file, self.key_file) if path)


@dataclass
class TLSServerConfig:
    """The one server TLS config: the OTLP receiver's gRPC and HTTP listeners (``relay.receivers.otlp.security``)
    and the Zipkin receiver's; ``CertificateFiles`` loads it."""

    cert_file: str = ""
    key_file: str = ""
    # Set: every client must present a certificate signed by one of these CAs (mutual TLS).
    client_ca_file: str = ""
    # How often, at most, the files are looked at for a change (on a new connection);
    # a changed certificate is served without a restart. 0 never reloads.
    reload_interval: Duration = Duration(30.0)

    def validate(self) -> list[Problem]:
        problems = []
        if not self.cert_file and not self.key_file:
            problems.append(Problem(("cert_file",), "required: a TLS server needs cert_file and key_file"))
        elif bool(self.cert_file) != bool(self.key_file):
            problems.append(Problem(("cert_file" if not self.cert_file else "key_file",),
                                    "cert_file and key_file must be given together"))
        if self.reload_interval < 0:
            problems.append(Problem(("reload_interval",), "must not be negative (0 never reloads)"))
        return problems


@dataclass(frozen=True)
class ServerMaterial:
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
    """The cert_file, key_file and client_ca_file of one TLS server (a ``TLSServerConfig``),
    loaded together, and whether any changed on disk since the last load (looked at most every
    reload_interval). ``where`` is the key path of the tls section, for errors.

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

    def load(self) -> ServerMaterial:
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
        return ServerMaterial(context, raw["cert_file"], raw["key_file"], client_ca)

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


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def system_bundle() -> str | None:
    """The system's CA bundle file, where it has one (OpenSSL's default, else SSL_CERT_FILE)."""
    for path in (ssl.get_default_verify_paths().cafile, os.environ.get("SSL_CERT_FILE"),
                 "/etc/ssl/certs/ca-certificates.crt"):
        if path and os.path.isfile(path):
            return path
    return None


def material(tls: TLSClientConfig, with_system: bool = True) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(trusted CAs, client certificate, client key) as PEM, None where not given. With
    ``include_system_ca_certs_pool`` (and ``with_system``), the system's bundle follows the
    configured CAs; a system without a bundle file is an error rather than a silent miss."""
    ca = _read(tls.ca_file) if tls.ca_file else tls.ca_pem.encode() if tls.ca_pem else None
    if ca is not None and tls.include_system_ca_certs_pool and with_system:
        bundle = system_bundle()
        if bundle is None:
            raise OSError("include_system_ca_certs_pool: this system has no CA bundle file to add")
        ca += b"\n" + _read(bundle)
    cert = _read(tls.cert_file) if tls.cert_file else tls.cert_pem.encode() if tls.cert_pem else None
    key = _read(tls.key_file) if tls.key_file else tls.key_pem.encode() if tls.key_pem else None
    return ca, cert, key


def ssl_context(tls: TLSClientConfig, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A client context; a missing or bad file raises (OSError or ssl.SSLError) naming it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    ca, cert, key = material(tls, with_system=False)
    if ca is None or tls.include_system_ca_certs_pool:
        context.load_default_certs()
    if ca is not None:
        context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
    if cert is not None:
        # load_cert_chain reads only files: PEM given inline goes through a private temporary one.
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "client.pem")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
                handle.write(cert + b"\n" + key)
            context.load_cert_chain(path)
    context.minimum_version = VERSIONS[tls.min_version or DEFAULT_MIN_VERSION]
    if tls.max_version:
        context.maximum_version = VERSIONS[tls.max_version]
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ClientTLS:
    """A client's TLS for each new connection: the context, made again when
    ``reload_interval`` has passed and the files changed (a set that does not load keeps the last)."""

    def __init__(self, tls: TLSClientConfig, clock=time.monotonic, log=None, alpn: tuple[str, ...] = ()):
        self.tls = tls
        self.clock = clock
        self.log = log
        self.alpn = alpn
        self._context = ssl_context(tls, alpn)  # at start: a bad file stops the start, naming it
        self._signature = _signature(tls.files())
        self._next = clock() + float(tls.reload_interval)

    @property
    def server_hostname(self) -> str | None:
        return self.tls.server_name_override or None

    def context(self) -> ssl.SSLContext:
        interval = float(self.tls.reload_interval)
        if interval > 0 and self.clock() >= self._next:
            self._next = self.clock() + interval
            signature = _signature(self.tls.files())
            if signature != self._signature:
                try:
                    self._context = ssl_context(self.tls, self.alpn)
                    self._signature = signature
                except (OSError, ssl.SSLError, ValueError) as error:
                    if self.log is not None:
                        self.log.warning("TLS files changed but do not load; keeping the last ones",
                                         fields={"error": f"{type(error).__name__}: {error}"})
        return self._context


def _signature(paths: tuple[str, ...]) -> tuple:
    out = []
    for path in paths:
        try:
            stat = os.stat(path)
            out.append((path, stat.st_mtime_ns, stat.st_size, stat.st_ino))
        except OSError:
            out.append((path, None))
    return tuple(out)


def request_options(tls: ClientTLS | None, url: str) -> dict:
    """aiohttp request arguments for ``url``: the current context and the name to check."""
    if tls is None or not url.startswith("https://"):
        return {}
    options = {"ssl": tls.context()}
    if tls.server_hostname:
        options["server_hostname"] = tls.server_hostname
    return options
