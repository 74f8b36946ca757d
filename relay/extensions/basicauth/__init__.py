"""The ``basicauth`` extension: HTTP Basic credentials, as the collector's.

One extension is either side, never both:

- ``htpasswd: {file, inline}`` checks clients. A receiver names it in
  ``protocols.<grpc|http>.auth.authenticator`` and refuses (gRPC UNAUTHENTICATED, HTTP 401)
  every request whose ``Authorization: Basic <base64 user:password>`` does not match a
  user. The file is read at start (a missing or malformed one stops the relay, naming the
  file and line); ``inline`` lines come after the file's, so they win for the same user.
  Password formats: see ``htpasswd``.
- ``client_auth: {username, password}`` (or ``username_file`` / ``password_file``, taking
  precedence) is what an ``otlp`` / ``otlphttp`` / ``prometheusremotewrite`` exporter sends
  when its ``auth.authenticator`` names this extension. The files are read at start, and
  looked at again (at most once a second, when the header is used) and re-read when they
  changed, so rotated credentials are sent without a restart; while a file is unreadable
  the last credentials read stay in force.

Passwords and the header stay out of everything the relay writes: logs, errors, the
config's repr. Checks compare in constant time. A bcrypt check (tens of milliseconds) runs on
the extension's own worker threads, so clients with wrong passwords do not hold up the event
loop; recent outcomes, right or wrong, are remembered. An unknown user's password is checked
against a dummy password of the table's costliest kind, so timing does not tell which users exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping

from relay.component import Settings
from relay.errors import ConfigError, Problem
from relay.extensions.basicauth.htpasswd import HtpasswdError, Matcher, dummy, parse
from relay.net.auth import BASIC_AUTHENTICATOR_TYPE, CLIENT, SERVER, header_value
from relay.telemetry import Throttled, component_logger

TYPE = BASIC_AUTHENTICATOR_TYPE
SIGNALS = ()
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"htpasswd": {"inline": "relay:${env:RELAY_PASSWORD:-change-me}"}}

HEADER = "authorization"
SCHEME = "Basic"
MAX_FILE_BYTES = 1024 * 1024
# Credential files are looked at no more often than this, however many requests use them.
FILE_CHECK_INTERVAL = 1.0
# Threads for slow (bcrypt) checks: few, so a flood of wrong passwords queues here and takes
# neither the event loop nor the threads the rest of the relay shares.
CHECK_THREADS = 2
CHECK_THREAD_NAME = "basicauth-check"


@dataclass
class HtpasswdConfig:
    file: str = ""
    # repr=False: a config dump must not carry passwords.
    inline: str = field(default="", repr=False)

    def validate(self) -> list[Problem]:
        if not self.file and not self.inline:
            return [Problem((), "no credential source provided: set file or inline")]
        try:
            parse(self.inline, "inline")
        except HtpasswdError as error:
            return [Problem(("inline",), str(error))]
        return []


@dataclass
class ClientAuthConfig:
    username: str = ""
    password: str = field(default="", repr=False)
    username_file: str = ""
    password_file: str = ""

    def validate(self) -> list[Problem]:
        problems = []
        if ":" in self.username:
            # Basic credentials are user:password; the collector refuses such a username too.
            problems.append(Problem(("username",), 'must not contain ":"'))
        for key in ("username", "password"):
            if any(c in getattr(self, key) for c in "\r\n\0"):
                problems.append(Problem((key,), "must not contain line breaks or NUL"))
        return problems


@dataclass
class Config:
    htpasswd: HtpasswdConfig | None = None
    client_auth: ClientAuthConfig | None = None

    def validate(self) -> list[Problem]:
        if self.htpasswd is not None and self.client_auth is not None:
            return [Problem((), "only one of htpasswd or client_auth can be specified")]
        if self.htpasswd is None and self.client_auth is None:
            return [Problem((), "no credential source provided: set htpasswd (to check the clients of a "
                                "receiver) or client_auth (for an exporter to send)")]
        return []


class BasicAuth:
    def __init__(self, id_, config: Config, clock=time.monotonic):
        self.id = id_
        self.clock = clock
        self.config = config
        self.log = component_logger(id_)
        # What AuthGate names in a refusal's log line and a 401's WWW-Authenticate.
        self.header = HEADER
        self.scheme = SCHEME
        self.roles = (SERVER,) if config.htpasswd is not None else (CLIENT,)
        self._users: dict[str, Matcher] = {}
        self._unknown: Matcher | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._header_value: str | None = None
        self._file_trouble = Throttled(self.log, 60.0, clock)
        self._signature: tuple | None = None
        self._next_check = 0.0

    async def start(self) -> None:
        if self.config.htpasswd is not None:
            self._users = self._load_users(self.config.htpasswd)
            self._unknown = dummy(self._users.values())
            self._threads = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix=CHECK_THREAD_NAME)
            self.log.info("basic authenticator ready", fields={
                "side": "server", "users": len(self._users),
                **({"file": self.config.htpasswd.file} if self.config.htpasswd.file else {})})
        else:
            self._signature = self._file_signature()
            self._header_value = self._client_header()
            self._next_check = self.clock() + FILE_CHECK_INTERVAL
            self.log.info("basic authenticator ready", fields={"side": "client"})

    async def shutdown(self) -> None:
        if self._threads is not None:
            # Checks still queued are for requests being torn down; none is waited for.
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    def authenticate(self, headers: Mapping[str, Any]) -> bool:
        """Whether ``headers`` carry Basic credentials of a known user with the right password.
        Checks in the caller's thread, bcrypt included: a receiver awaits ``authenticate_async``."""
        found = self._lookup(headers)
        if found is None:
            return False
        check, password, known = found
        return check(password) and known  # the check runs first, known or not

    async def authenticate_async(self, headers: Mapping[str, Any]) -> bool:
        """``authenticate``, with a slow check (bcrypt) on the extension's threads, not the event loop."""
        found = self._lookup(headers)
        if found is None:
            return False
        check, password, known = found
        verdict = check.remembered(password)
        if verdict is None:
            if self._threads is None:
                return False  # shut down: nothing is let in any more
            verdict = await asyncio.get_running_loop().run_in_executor(self._threads, check, password)
        return verdict and known

    def _lookup(self, headers: Mapping[str, Any]) -> tuple[Matcher, bytes, bool] | None:
        """(the check to run, the password, whether the user exists); None without Basic credentials.
        An unknown user gets the dummy check, so it costs what a known user's does."""
        credentials = _credentials(header_value(headers, HEADER))
        if credentials is None or self._unknown is None:
            return None
        username, password = credentials
        check = self._users.get(username)
        return (self._unknown, password, False) if check is None else (check, password, True)

    def client_headers(self) -> dict[str, str]:
        """The header an exporter sends; credential files that changed are read anew first."""
        auth = self.config.client_auth
        if auth is not None and (auth.username_file or auth.password_file):
            now = self.clock()
            if now >= self._next_check:
                self._next_check = now + FILE_CHECK_INTERVAL
                self._reread_if_changed()
        return {HEADER: self._header_value} if self._header_value is not None else {}

    def _client_header(self) -> str:
        auth = self.config.client_auth
        username = self._read(auth.username_file, "client_auth", "username_file") or auth.username
        password = self._read(auth.password_file, "client_auth", "password_file") or auth.password
        if ":" in username:
            raise ConfigError([Problem(self._where("client_auth", "username_file"),
                                       'the username must not contain ":"')])
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return f"{SCHEME} {token}"

    def _file_signature(self) -> tuple:
        auth = self.config.client_auth
        signature = []
        for path in (auth.username_file, auth.password_file):
            try:
                st = os.stat(path) if path else None
            except OSError:
                st = None
            signature.append((st.st_mtime_ns, st.st_size, st.st_ino) if st is not None else None)
        return tuple(signature)

    def _reread_if_changed(self) -> None:
        signature = self._file_signature()
        if signature == self._signature:
            return
        # A file that stays broken is read again once its size or time changes.
        self._signature = signature
        try:
            value = self._client_header()
        except ConfigError as error:
            # Mid-rotation (renamed away, truncated before the write): keep the last credentials.
            self._file_trouble.warning("cannot use the credentials files; keeping the last credentials read",
                                       {"error": str(error)})
            return
        self._header_value = value
        self.log.info("credentials files changed; credentials reloaded")

    def _load_users(self, settings: HtpasswdConfig) -> dict[str, Matcher]:
        users: dict[str, Matcher] = {}
        try:
            if settings.file:
                users.update(parse(self._read(settings.file, "htpasswd", "file"), settings.file))
            users.update(parse(settings.inline, "inline"))
        except HtpasswdError as error:
            raise ConfigError([Problem(self._where("htpasswd"), str(error))]) from None
        return users

    def _read(self, path: str, *key: str) -> str:
        if not path:
            return ""
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            raise ConfigError([Problem(self._where(*key), f"cannot read {path}: {error.strerror}")]) from None
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError([Problem(self._where(*key), f"{path} is larger than 1 MiB")])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError([Problem(self._where(*key), f"{path} is not UTF-8 text")]) from None
        # A credentials file ends in a line break that is not part of the value.
        return text if key[-1] == "file" else text.strip()

    def _where(self, *key: str) -> tuple[str, ...]:
        return ("extensions", str(self.id)) + key


def _credentials(value: str | None) -> tuple[str, bytes] | None:
    """(username, password) of an ``Authorization: Basic ...`` value; None if it is not one."""
    if value is None or len(value) < len(SCHEME) + 1 or value[:len(SCHEME) + 1].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(value[len(SCHEME) + 1:].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    username, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return username.decode("utf-8", "surrogateescape"), password


def create(settings: Settings, config: Config) -> BasicAuth:
    return BasicAuth(settings.id, config)
