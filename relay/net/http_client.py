"""What the HTTP exporters (OTLP/HTTP, remote write) share: TLS settings, header names, User-Agent."""

from __future__ import annotations

import importlib.metadata

from relay.errors import Problem
from relay.net.headers import clean as headers_clean

# RFC 9110 token characters: what a header name may be made of.


def relay_version() -> str:
    try:
        return importlib.metadata.version("genops-relay")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def user_agent() -> str:
    return f"genops-relay/{relay_version()}"


def header_problems(headers: dict[str, str], credentials_in_url: bool) -> list[Problem]:
    """Configured headers an HTTP client can send (see ``headers.clean``)."""
    problems = headers_clean(headers, grpc=False)[1]
    for key in headers:
        if key.lower() == "authorization" and credentials_in_url:
            problems.append(Problem(("headers", key), "cannot be combined with user:password in a URL "
                                                      "(that becomes the Authorization header)"))
    return problems
