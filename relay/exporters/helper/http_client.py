"""What the HTTP exporters (OTLP/HTTP, remote write) share: TLS settings, header names, User-Agent."""

from __future__ import annotations

import importlib.metadata
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from relay.errors import Problem
from relay.exporters.helper.headers import clean as headers_clean

# RFC 9110 token characters: what a header name may be made of.


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


def relay_version() -> str:
    try:
        return importlib.metadata.version("genops-relay")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def user_agent() -> str:
    return f"genops-relay/{relay_version()}"


def url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f'"{display_url(url)}" is not a valid URL'
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f'"{display_url(url)}" must be an http:// or https:// URL with a host'
    if port == 0:
        return f'"{display_url(url)}" has port 0'
    if parts.fragment:
        return f'"{display_url(url)}" must not have a #fragment'
    return None


def display_url(url: str) -> str:
    """``url`` fit for logs: credentials written into it are replaced by "***"."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def header_problems(headers: dict[str, str], credentials_in_url: bool) -> list[Problem]:
    """Configured headers an HTTP client can send (see ``headers.clean``)."""
    problems = headers_clean(headers, grpc=False)[1]
    for key in headers:
        if key.lower() == "authorization" and credentials_in_url:
            problems.append(Problem(("headers", key), "cannot be combined with user:password in a URL "
                                                      "(that becomes the Authorization header)"))
    return problems
