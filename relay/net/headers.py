"""Headers (HTTP) and metadata (gRPC) a client is configured to send, checked once.

Values are secrets more often than not (``authorization``), so no message quotes one. A value
that ends in a line break, as one read from a Kubernetes Secret often does, has it stripped
with a warning; any other character a transport cannot carry is a config error naming the key.
gRPC metadata keys are lower-cased, as the collector does, and must then be valid gRPC keys.
"""

from __future__ import annotations

import re

from relay.errors import Problem

HTTP_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
GRPC_KEY = re.compile(r"[0-9a-z_.\-]+")
# HTTP field values: visible ASCII, space and tab, and obs-text; gRPC ASCII values: printable ASCII.
_HTTP_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_GRPC_BAD = re.compile(r"[^\x20-\x7e]")


def clean(headers: dict[str, str], grpc: bool) -> tuple[dict[str, str], list[Problem], list[str]]:
    """(headers to send, problems, keys whose trailing line break was stripped)."""
    out, problems, stripped = {}, [], []
    for key, value in headers.items():
        name = key.lower() if grpc else key
        if not (GRPC_KEY if grpc else HTTP_NAME).fullmatch(name):
            problems.append(Problem(("headers", key), "not a valid gRPC metadata key (letters, digits, _ . -)"
                                    if grpc else "not a valid HTTP header name"))
            continue
        trimmed = value.rstrip("\r\n")
        if trimmed != value:
            stripped.append(key)
        # "-bin" keys carry binary values in gRPC: any text is fine there.
        bad = None if grpc and name.endswith("-bin") else (_GRPC_BAD if grpc else _HTTP_BAD).search(trimmed)
        if bad is not None:
            problems.append(Problem(("headers", key), f"the value holds a character a header cannot carry "
                                                      f"(U+{ord(bad.group()):04X} at position {bad.start()})"))
            continue
        out[name] = trimmed
    return out, problems, stripped


def warn_stripped(log, stripped: list[str]) -> None:
    for key in stripped:
        log.warning("stripped a line break from the end of a header value", fields={"header": key})
