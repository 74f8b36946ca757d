"""Go's ``fmt.Sprintf`` for OTTL's ``Format`` converter, over the values OTTL has.

The collector formats with Go's fmt, so a format string must give the same
text here: flags ``+ - # 0`` and space, width, precision, the verbs
``v s q d b o x X c f F e E g G t %``, and Go's in-band complaints
(``%!d(string=a)``, ``%!s(MISSING)``, ``%!(EXTRA int64=1)``) where an
argument does not fit. Values are as OTTL sees them: ints are Go int64,
floats float64, maps and lists as fmt prints them.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

_SPEC = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d*))?(.?)", re.DOTALL)


def go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "[]uint8"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def sprintf(template: str, values: list[Any]) -> str:
    out: list[str] = []
    pos, used = 0, 0
    while pos < len(template):
        start = template.find("%", pos)
        if start < 0:
            out.append(template[pos:])
            break
        out.append(template[pos:start])
        spec = _SPEC.match(template, start)
        flags, width, precision, verb = spec.group(1), spec.group(2), spec.group(3), spec.group(4)
        pos = spec.end()
        if _too_large(width) or _too_large(precision):
            # Go gives up on a width or precision past a million: the rest of the format is taken
            # as the number, so no verb follows.
            out.append("%!(NOVERB)")
            break
        if verb == "%":
            out.append("%")
            continue
        if not verb:
            out.append("%!(NOVERB)")
            continue
        if used >= len(values):
            out.append(f"%!{verb}(MISSING)")
            continue
        value = values[used]
        used += 1
        text = _one(verb, value, flags, None if precision is None else int(precision.lstrip("0") or 0))
        out.append(_pad(text, flags, int(width) if width else 0, verb, value))
    if used < len(values):
        extra = ", ".join(f"{go_type(v)}={_plain(v)}" for v in values[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _too_large(digits: str | None) -> bool:
    # Go's fmt reads a number digit by digit and stops once what it has read is past 1e6.
    significant = (digits or "").lstrip("0")
    return len(significant) > 8 or (len(significant) > 1 and int(significant[:-1]) > 1_000_000)


def _bad(verb: str, value: Any) -> str:
    return f"%!{verb}(<nil>)" if value is None else f"%!{verb}({go_type(value)}={_plain(value)})"


def _plain(value: Any) -> str:
    """What %v prints."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _shortest(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return "[" + " ".join(str(b) for b in value) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_plain(v) for v in value) + "]"
    # Go prints a map's keys sorted.
    return "map[" + " ".join(f"{k}:{_plain(value[k])}" for k in sorted(value)) + "]"


def _shortest(value: float, limit: int = 6) -> str:
    """Go's shortest %v/%g form: the fewest digits that read back, %e when the exponent is < -4 or >= ``limit``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1, value) < 0 else ""
    if value == 0:
        return sign + "0"
    number = Decimal(repr(abs(value))).normalize()
    digits = "".join(map(str, number.as_tuple().digits))
    exponent = len(digits) + number.as_tuple().exponent - 1
    if exponent < -4 or exponent >= limit:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return sign + format(number, "f")


def _one(verb: str, value: Any, flags: str, precision: int | None) -> str:
    if verb == "v":
        if isinstance(value, float) and precision is None:
            return _signed(_shortest(value), flags)
        if isinstance(value, int) and not isinstance(value, bool):
            return _signed(str(value), flags)
        return _plain(value)
    if verb == "t":
        return ("true" if value else "false") if isinstance(value, bool) else _bad(verb, value)
    if verb in "sq":
        if isinstance(value, (str, bytes)):
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            if precision is not None:
                text = text[:precision]
            return _quote(text) if verb == "q" else text
        if verb == "s" and isinstance(value, (list, dict)):
            return _plain(value)
        return _bad(verb, value)
    if verb in "dboxXc":
        if isinstance(value, int) and not isinstance(value, bool):
            return _integer(verb, value, flags, precision)
        if verb in "xX" and isinstance(value, (str, bytes)):
            data = value.encode("utf-8") if isinstance(value, str) else value
            text = data.hex()
            return text.upper() if verb == "X" else text
        return _bad(verb, value)
    if verb in "fFeEgG":
        if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
            if isinstance(value, int):
                return _bad(verb, value)  # Go does not format an int64 with a float verb
            return _float(verb, value, flags, precision)
        return _bad(verb, value)
    return _bad(verb, value)


def _signed(text: str, flags: str) -> str:
    if text.startswith("-") or text in ("NaN",):
        return text
    if "+" in flags:
        return "+" + text
    if " " in flags:
        return " " + text
    return text


def _integer(verb: str, value: int, flags: str, precision: int | None) -> str:
    if verb == "c":
        return chr(value) if 0 <= value <= 0x10FFFF else "\ufffd"
    base = {"d": 10, "b": 2, "o": 8, "x": 16, "X": 16}[verb]
    magnitude = abs(value)
    digits = {10: str, 2: lambda n: format(n, "b"), 8: lambda n: format(n, "o"),
              16: lambda n: format(n, "x")}[base](magnitude)
    if verb == "X":
        digits = digits.upper()
    if precision is not None:
        digits = digits.zfill(precision) if precision else ("" if magnitude == 0 else digits)
    if "#" in flags:
        digits = {2: "0b", 8: "0", 16: "0x" if verb == "x" else "0X"}.get(base, "") + digits
    return _signed(("-" if value < 0 else "") + digits, flags)


def _float(verb: str, value: float, flags: str, precision: int | None) -> str:
    if math.isnan(value) or math.isinf(value):
        return _signed(_shortest(value), flags)
    if verb in "gG" and precision is None:
        text = _shortest(value)
        return _signed(text.upper() if verb == "G" else text, flags)
    python_verb = {"F": "f"}.get(verb, verb)
    return _signed(format(value, f".{6 if precision is None else precision}{python_verb}"), flags)


def _quote(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _pad(text: str, flags: str, width: int, verb: str, value: Any) -> str:
    if len(text) >= width:
        return text
    if "-" in flags:
        return text + " " * (width - len(text))
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and not text.startswith("%!")
    if "0" in flags and numeric and verb not in "sqc":
        sign = text[0] if text[:1] in "+- " else ""
        return sign + text[len(sign):].rjust(width - len(sign), "0")
    return text.rjust(width)
