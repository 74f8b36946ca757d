"""Apache htpasswd content: ``user:encoded-password`` lines, read as the collector's basicauth reads them.

Empty lines and lines starting with ``#`` are skipped; a later line for the same user
replaces an earlier one (so ``inline`` overrides ``file``). Each password is recognised by
its prefix, in this order, and anything unrecognised is a plain-text password (which also
matches when written ``{PLAIN}<password>``):

- ``$apr1$salt$hash``: Apache's MD5 (``htpasswd -m``, its default)
- ``{SHA}base64``: SHA-1 (``htpasswd -s``)
- ``$2y$``, ``$2a$``, ``$2b$``: bcrypt (``htpasswd -B``)
- ``{SSHA}base64``: salted SHA-1
- ``$5$``, ``$6$``: SHA-crypt, which the collector takes and the relay does not: such a line is an error

Errors name the line number and the user, never the encoded password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from typing import Callable

import bcrypt

# Recent bcrypt outcomes are remembered (as a keyed digest, never the password): a client sending
# the same credentials on every request costs one bcrypt run, not one per request, and so does
# one repeating a wrong password. Each table is bounded, the oldest entry going first.
BCRYPT_CACHE_SIZE = 1024
BCRYPT_FAILURE_CACHE_SIZE = 1024
_APR1_ALPHABET = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Kinds of encoded password, cheapest first; an unknown user is checked against a dummy of the
# costliest kind in the table (``dummy``), so a miss takes as long as a known user's wrong password.
_KINDS = ("plain", "sha", "ssha", "apr1", "bcrypt")
# Well-formed; what they match does not matter, a dummy's verdict is never used.
_DUMMIES = {
    "plain": "{PLAIN}" + "\0" * 32,
    "sha": "{SHA}" + base64.b64encode(b"\0" * 20).decode(),
    "ssha": "{SSHA}" + base64.b64encode(b"\0" * 28).decode(),
    "apr1": "$apr1$relayrel$" + "." * 22,
}
_DUMMY_BCRYPT = "$2b${cost:02d}$relayrelayrelayrelayre" + "dummy" * 6 + "d"


class HtpasswdError(ValueError):
    pass


def parse(text: str, source: str) -> dict[str, Matcher]:
    """The users in ``text`` and how to check each one's password; ``source`` names it in errors."""
    table: dict[str, Matcher] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, encoded = line.partition(":")
        if not colon:
            raise HtpasswdError(f"{source} line {number}: no colon (expected user:password)")
        try:
            table[user] = matcher(encoded)
        except HtpasswdError as error:
            raise HtpasswdError(f"{source} line {number} (user {user!r}): {error}") from None
    return table


class Matcher:
    """One user's password check: calling it with a password says whether it matches. ``kind``
    names the encoding (one of ``_KINDS``); ``slow`` checks (bcrypt) are meant to run off the
    event loop, unless ``remembered`` already knows the answer."""

    slow = False

    def __init__(self, kind: str, verify: Callable[[bytes], bool]):
        self.kind = kind
        self._verify = verify

    def __call__(self, password: bytes) -> bool:
        return self._verify(password)

    def remembered(self, password: bytes) -> bool | None:
        """The answer without doing the check, when it is cheap or known; None otherwise."""
        return None if self.slow else self(password)


def matcher(encoded: str) -> Matcher:
    """How to check a password against one line's encoded password."""
    if encoded.startswith("$apr1$"):
        salt, dollar, digest = encoded[len("$apr1$"):].partition("$")
        if not dollar:
            raise HtpasswdError("malformed $apr1$ password (expected $apr1$salt$hash)")
        expected = digest.encode("ascii", "replace")
        return Matcher("apr1", lambda password: hmac.compare_digest(apr1(password, salt.encode()), expected))
    if encoded.startswith("{SHA}"):
        expected = _b64(encoded[len("{SHA}"):], "{SHA}")
        if len(expected) != hashlib.sha1().digest_size:
            raise HtpasswdError("malformed {SHA} password (not a base64 SHA-1 digest)")
        return Matcher("sha", lambda password: hmac.compare_digest(hashlib.sha1(password).digest(), expected))
    if encoded[:4] in ("$2y$", "$2a$", "$2b$"):
        return Bcrypt(encoded)
    if encoded.startswith("{SSHA}"):
        raw = _b64(encoded[len("{SSHA}"):], "{SSHA}")
        size = hashlib.sha1().digest_size
        if len(raw) <= size:
            raise HtpasswdError("malformed {SSHA} password (no salt after the SHA-1 digest)")
        expected, salt = raw[:size], raw[size:]
        return Matcher("ssha", lambda password: hmac.compare_digest(hashlib.sha1(password + salt).digest(), expected))
    if encoded.startswith(("$5$", "$6$")):
        raise HtpasswdError("SHA-crypt ($5$, $6$) passwords are not supported here; "
                            "use bcrypt (htpasswd -B), $apr1$ or {SHA}")
    plain = encoded.encode("utf-8", "surrogateescape")
    # "|", not "or": both comparisons run, whichever matches.
    return Matcher("plain", lambda password: (hmac.compare_digest(password, plain)
                                              | hmac.compare_digest(b"{PLAIN}" + password, plain)))


def dummy(matchers) -> Matcher:
    """What an unknown user's password is checked against (its verdict ignored): a fixed password
    of the costliest kind among ``matchers`` (bcrypt at their highest cost), so that an unknown
    user takes as long as a known one with a wrong password and timing does not tell them apart."""
    matchers = list(matchers)
    kind = max((m.kind for m in matchers), key=_KINDS.index, default="plain")
    if kind == "bcrypt":
        return Bcrypt(_DUMMY_BCRYPT.format(cost=max(m.cost for m in matchers if isinstance(m, Bcrypt))))
    return matcher(_DUMMIES[kind])


def _b64(text: str, kind: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HtpasswdError(f"malformed {kind} password (not base64)") from None


class Bcrypt(Matcher):
    """A bcrypt password (tens of milliseconds per check, by design), with its recent outcomes
    remembered as keyed digests. Thread-safe: checks run on worker threads."""

    slow = True

    def __init__(self, encoded: str):
        hashed = encoded.encode("ascii", "replace")
        # bcrypt refuses a malformed hash only when asked to check one: ask now, with a throwaway password.
        try:
            bcrypt.checkpw(b"", hashed)
        except ValueError:
            raise HtpasswdError("malformed bcrypt password") from None
        super().__init__("bcrypt", lambda password: bcrypt.checkpw(password, hashed))
        self.cost = int(encoded[4:6]) if encoded[4:6].isdigit() else 0
        self._key = secrets.token_bytes(32)
        self._matched: OrderedDict[bytes, None] = OrderedDict()
        self._failed: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def _tag(self, password: bytes) -> bytes:
        # bcrypt ignores what lies past 72 bytes; the digest covers it all, so this is stricter, never looser.
        return hmac.new(self._key, password, hashlib.sha256).digest()

    def remembered(self, password: bytes) -> bool | None:
        tag = self._tag(password)
        with self._lock:
            for table, verdict in ((self._matched, True), (self._failed, False)):
                if tag in table:
                    table.move_to_end(tag)
                    return verdict
        return None

    def __call__(self, password: bytes) -> bool:
        verdict = self.remembered(password)
        if verdict is not None:
            return verdict
        verdict = self._verify(password)
        table, size = (self._matched, BCRYPT_CACHE_SIZE) if verdict else (self._failed, BCRYPT_FAILURE_CACHE_SIZE)
        with self._lock:
            table[self._tag(password)] = None
            while len(table) > size:
                table.popitem(last=False)
        return verdict


def apr1(password: bytes, salt: bytes) -> bytes:
    """Apache's MD5-crypt digest (the 22 characters after ``$apr1$salt$``)."""
    salt = salt[:8]
    magic = b"$apr1$"
    alternate = hashlib.md5(password + salt + password).digest()
    ctx = hashlib.md5(password + magic + salt)
    for i in range(len(password), 0, -16):
        ctx.update(alternate[:min(i, 16)])
    i = len(password)
    while i:
        ctx.update(b"\0" if i & 1 else password[:1])
        i >>= 1
    digest = ctx.digest()
    for round_ in range(1000):
        step = hashlib.md5()
        step.update(password if round_ & 1 else digest)
        if round_ % 3:
            step.update(salt)
        if round_ % 7:
            step.update(password)
        step.update(digest if round_ & 1 else password)
        digest = step.digest()
    out = bytearray()
    for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        out += _crypt64((digest[a] << 16) | (digest[b] << 8) | digest[c], 4)
    out += _crypt64(digest[11], 2)
    return bytes(out)


def _crypt64(value: int, count: int) -> bytes:
    chars = bytearray()
    for _ in range(count):
        chars.append(_APR1_ALPHABET[value & 0x3F])
        value >>= 6
    return bytes(chars)
