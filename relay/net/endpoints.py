"""Where a component listens or sends: host:port endpoints, gRPC targets and HTTP URLs, checked
the same way everywhere."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def endpoint_problem(endpoint: str) -> str | None:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return f'"{endpoint}" is not a host:port endpoint'
    return None


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def split_target(endpoint: str) -> tuple[str, bool | None]:
    """(host:port, use_tls) where a scheme decides TLS, and None means "not said"."""
    for scheme, tls in (("https://", True), ("http://", False)):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme):].rstrip("/"), tls
    return endpoint, None


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
