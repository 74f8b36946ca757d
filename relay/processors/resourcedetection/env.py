"""The ``env`` detector: resource attributes from ``OTEL_RESOURCE_ATTRIBUTES``.

The variable holds ``key1=value1,key2=value2``. As in the collector, space around keys,
values and commas is dropped, keys and values are ASCII (at most 256 characters each),
values are query-unescaped (``%XX`` decoded, ``+`` read as a space) and a malformed
variable is an error that stops the relay from starting, rather than a resource half
read. A trailing comma is allowed. When the variable is unset or blank, the deprecated
``OTEL_RESOURCE`` is read instead.
"""

from __future__ import annotations

import re

VARIABLE = "OTEL_RESOURCE_ATTRIBUTES"
DEPRECATED_VARIABLE = "OTEL_RESOURCE"
_MAX = 256
_SPACE = " \t\n\f\r"  # what the collector's pattern trims around keys and values
_HEX = re.compile(r"[0-9A-Fa-f]{2}")


class FormatError(ValueError):
    pass


def detect(environ) -> dict[str, str]:
    text = (environ.get(VARIABLE) or "").strip(_SPACE)
    if not text:
        text = (environ.get(DEPRECATED_VARIABLE) or "").strip(_SPACE)
    return parse(text) if text else {}


def parse(text: str) -> dict[str, str]:
    """The attributes ``text`` names, in order (a later duplicate key wins); FormatError if malformed."""
    if not text.isascii():
        raise FormatError(f'invalid resource format: "{text}"')
    members = text.split(",")
    if len(members) > 1 and not members[-1].strip(_SPACE):
        members.pop()  # one trailing comma
    out: dict[str, str] = {}
    for member in members:
        key, equals, value = member.partition("=")
        key, value = key.strip(_SPACE), value.strip(_SPACE)
        if not equals or not key or len(key) > _MAX or len(value) > _MAX:
            raise FormatError(f'invalid resource format, invalid text: "{member}"')
        try:
            out[key] = unescape(value)
        except FormatError as error:
            raise FormatError(f'invalid resource format in attribute: "{member}", err: {error}') from None
    return out


def unescape(value: str) -> str:
    """Query unescaping, strict as Go's: a ``%`` not followed by two hex digits is an error."""
    out = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char == "%":
            digits = value[index + 1:index + 3]
            if not _HEX.fullmatch(digits):
                raise FormatError(f'invalid URL escape "{value[index:index + 3]}"')
            out.append(int(digits, 16))
            index += 3
            continue
        out += b" " if char == "+" else char.encode()
        index += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("escaped bytes are not UTF-8") from None
