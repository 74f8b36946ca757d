"""Apache htpasswd content: ``user:encoded-password`` lines, read as the collector's basicauth reads them.

Empty lines and lines starting with ``#`` are skipped; a later line for the same user
replaces an earlier one (so ``inline`` overrides ``file``). Each password is recognised by
its prefix, in this order, and anything unrecognised is a plain-text password (which also
matches when written ``{PLAIN}<password>``):

- ``$apr1$salt$hash``: Apache's MD5 (``htpasswd -m``, its default)
- ``{SHA}base64``: SHA-1 (``htpasswd -s``)
- ``$2y$``, ``$2a$``, ``$2b$``: bcrypt (``htpasswd -B``), with the ``bcrypt`` package
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

Matcher = Callable[[bytes], bool]

# Successful bcrypt checks are remembered (as a keyed digest, never the password), so that a
# client sending the same credentials on every request costs one bcrypt run, not one per request.
BCRYPT_CACHE_SIZE = 1024
_APR1_ALPHABET = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


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


def matcher(encoded: str) -> Matcher:
    """How to check a password against one line's encoded password."""
    if encoded.startswith("$apr1$"):
        salt, dollar, digest = encoded[len("$apr1$"):].partition("$")
        if not dollar:
            raise HtpasswdError("malformed $apr1$ password (expected $apr1$salt$hash)")
        expected = digest.encode("ascii", "replace")
        return lambda password: hmac.compare_digest(apr1(password, salt.encode()), expected)
    if encoded.startswith("{SHA}"):
        expected = _b64(encoded[len("{SHA}"):], "{SHA}")
        if len(expected) != hashlib.sha1().digest_size:
            raise HtpasswdError("malformed {SHA} password (not a base64 SHA-1 digest)")
        return lambda password: hmac.compare_digest(hashlib.sha1(password).digest(), expected)
    if encoded[:4] in ("$2y$", "$2a$", "$2b$"):
        return _bcrypt(encoded)
    if encoded.startswith("{SSHA}"):
        raw = _b64(encoded[len("{SSHA}"):], "{SSHA}")
        size = hashlib.sha1().digest_size
        if len(raw) <= size:
            raise HtpasswdError("malformed {SSHA} password (no salt after the SHA-1 digest)")
        expected, salt = raw[:size], raw[size:]
        return lambda password: hmac.compare_digest(hashlib.sha1(password + salt).digest(), expected)
    if encoded.startswith(("$5$", "$6$")):
        raise HtpasswdError("SHA-crypt ($5$, $6$) passwords are not supported here; "
                            "use bcrypt (htpasswd -B), $apr1$ or {SHA}")
    plain = encoded.encode("utf-8", "surrogateescape")
    # "|", not "or": both comparisons run, whichever matches.
    return lambda password: (hmac.compare_digest(password, plain)
                             | hmac.compare_digest(b"{PLAIN}" + password, plain))


def _b64(text: str, kind: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HtpasswdError(f"malformed {kind} password (not base64)") from None


def _bcrypt(encoded: str) -> Matcher:
    try:
        import bcrypt
    except ImportError:
        raise HtpasswdError("bcrypt passwords need the bcrypt package (pip install bcrypt)") from None
    hashed = encoded.encode("ascii", "replace")
    # bcrypt refuses a malformed hash only when asked to check one: ask now, with a throwaway password.
    try:
        bcrypt.checkpw(b"", hashed)
    except ValueError:
        raise HtpasswdError("malformed bcrypt password") from None
    key = secrets.token_bytes(32)
    seen: OrderedDict[bytes, None] = OrderedDict()
    lock = threading.Lock()

    def check(password: bytes) -> bool:
        # bcrypt ignores what lies past 72 bytes; the digest covers it all, so this is stricter, never looser.
        tag = hmac.new(key, password, hashlib.sha256).digest()
        with lock:
            if tag in seen:
                seen.move_to_end(tag)
                return True
        if not bcrypt.checkpw(password, hashed):
            return False
        with lock:
            seen[tag] = None
            while len(seen) > BCRYPT_CACHE_SIZE:
                seen.popitem(last=False)
        return True

    return check


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
