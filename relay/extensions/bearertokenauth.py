"""The ``bearertokenauth`` extension: a shared secret in one request header, as the collector's.

A receiver names it in ``protocols.<grpc|http>.auth.authenticator`` and
refuses every request whose header is not exactly ``<scheme> <token>``; an
exporter names it in ``auth.authenticator`` and sends that header on every
call. The token is given inline (``token``, usually ``${env:TOKEN}``) or in a
file (``filename``). A token file is looked at again (at most once a second,
when the token is used) and re-read when it changed, so a rotated token
takes effect without a restart; while the file is missing or empty the last
token read stays in force.

The token stays out of everything the relay writes: logs, error messages,
the config's repr.
"""

from __future__ import annotations

import hmac
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from relay.component import Settings
from relay.errors import ConfigError, Problem
from relay.net.auth import AUTHENTICATOR_TYPE, header_value
from relay.net.headers import HTTP_NAME as HEADER_NAME
from relay.telemetry import Throttled, component_logger

TYPE = AUTHENTICATOR_TYPE  # the type an auth.authenticator reference must name
SIGNALS = ()
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"token": "${env:RELAY_TOKEN:-change-me}"}

# A token file is looked at no more often than this, however many requests check it.
FILE_CHECK_INTERVAL = 1.0


@dataclass
class Config:
    # repr=False: a config dump must not carry the secret.
    token: str = field(default="", repr=False)
    filename: str = ""
    scheme: str = "Bearer"
    header: str = "authorization"

    def validate(self) -> list[Problem]:
        problems = []
        if bool(self.token) == bool(self.filename):
            problems.append(Problem((), "exactly one of token and filename must be set"))
        if self.token and _unusable(self.token):
            # What is wrong, never the value itself.
            problems.append(Problem(("token",), "must not contain line breaks, NUL or surrounding spaces"))
        if any(c.isspace() or not c.isprintable() for c in self.scheme):
            problems.append(Problem(("scheme",), "must be one word, without spaces"))
        name = self.header.lower()
        if not HEADER_NAME.fullmatch(self.header):
            problems.append(Problem(("header",), "not a valid header name"))
        elif name.endswith("-bin") or name.startswith("grpc-") or name.startswith(":"):
            problems.append(Problem(("header",), "cannot be a binary (-bin) or reserved (grpc-) gRPC metadata key"))
        return problems


def _unusable(token: str) -> bool:
    return token != token.strip() or any(c in token for c in "\r\n\0")


class BearerTokenAuth:
    def __init__(self, id_, config: Config):
        self.id = id_
        self.config = config
        # Lowercase: gRPC metadata keys are, and HTTP compares header names without case.
        self.header = config.header.lower()
        self.scheme = config.scheme
        self.log = component_logger(id_)
        self._file_trouble = Throttled(self.log, 60.0)
        self._expected: bytes | None = None
        self._value: str | None = None
        self._signature: tuple | None = None
        self._next_check = 0.0
        if config.token:
            self._set(config.token)

    async def start(self) -> None:
        if self.config.filename:
            path = self.config.filename
            try:
                signature = _signature(path)
                token = _read_token(path)
            except (OSError, ValueError) as error:
                raise ConfigError([Problem(("extensions", str(self.id), "filename"), str(error))]) from None
            self._signature = signature
            self._next_check = time.monotonic() + FILE_CHECK_INTERVAL
            self._set(token)
        self.log.info("bearer token authenticator ready", fields={
            "source": "file" if self.config.filename else "token", "header": self.header,
            **({"filename": self.config.filename} if self.config.filename else {})})

    async def shutdown(self) -> None:
        pass

    def authenticate(self, headers: Mapping[str, Any]) -> bool:
        """Whether ``headers`` carry exactly the expected header value; compared in constant time."""
        presented = header_value(headers, self.header)
        expected = self._current()
        if presented is None or expected is None:
            return False
        return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected)

    def client_headers(self) -> dict[str, str]:
        """The header an exporter sends, read anew on each call so that a rotated file is picked up."""
        self._current()
        return {self.header: self._value} if self._value is not None else {}

    def _set(self, token: str) -> None:
        self._value = f"{self.scheme} {token}" if self.scheme else token
        self._expected = self._value.encode("utf-8", "surrogatepass")

    def _current(self) -> bytes | None:
        if self.config.filename:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + FILE_CHECK_INTERVAL
                self._reread_if_changed()
        return self._expected

    def _reread_if_changed(self) -> None:
        path = self.config.filename
        signature = None
        try:
            signature = _signature(path)
            if signature == self._signature:
                return
            token = _read_token(path)
        except (OSError, ValueError) as error:
            # Mid-rotation (renamed away, truncated before the write): keep the last token.
            # A file that stays broken is read again once its size or time changes.
            if signature is not None:
                self._signature = signature
            self._file_trouble.warning("cannot use the token file; keeping the last token read",
                                       {"filename": path, "error": str(error)})
            return
        self._signature = signature
        self._set(token)
        self.log.info("token file changed; token reloaded", fields={"filename": path})


def _signature(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError as error:
        raise OSError(f"cannot read token file {path}: {error.strerror}") from None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read_token(path: str) -> str:
    """The token in ``path``, without surrounding whitespace. Errors name the file, never its content."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(64 * 1024 + 1)
    except OSError as error:
        raise OSError(f"cannot read token file {path}: {error.strerror}") from None
    if len(raw) > 64 * 1024:
        raise ValueError(f"token file {path} is larger than 64 KiB")
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"token file {path} is not UTF-8 text") from None
    if not token:
        raise ValueError(f"token file {path} is empty")
    if _unusable(token):
        raise ValueError(f"token file {path} holds more than one line")
    return token


def create(settings: Settings, config: Config) -> BearerTokenAuth:
    return BearerTokenAuth(settings.id, config)
