"""Client TLS settings."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from relay.errors import Problem


@dataclass
class TLSConfig:
    """Client TLS for https:// URLs; the URL's scheme alone decides whether TLS is used."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    # Skips verifying the server's certificate (the collector's key of the same name).
    insecure_skip_verify: bool = False
    # Accepted so that collector configs load; as in the collector's HTTP clients, it has
    # no effect: an http:// URL is plain HTTP already.
    insecure: bool = False

    def validate(self) -> list[Problem]:
        if bool(self.cert_file) != bool(self.key_file):
            return [Problem(("cert_file" if not self.cert_file else "key_file",),
                            "cert_file and key_file must be given together")]
        return []


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """``ca_file`` alone is trusted when given; otherwise the system's roots."""
    context = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context



@dataclass
class GrpcTLSConfig:
    insecure: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name_override: str = ""

    def validate(self) -> list[Problem]:
        if bool(self.cert_file) != bool(self.key_file):
            return [Problem(("cert_file" if not self.cert_file else "key_file",),
                            "cert_file and key_file must be given together")]
        return []
