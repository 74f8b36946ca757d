"""The collector's pattern languages: RE2 (Go) regular expressions, replacement templates, globs.

* Regular expressions are RE2 (Go ``regexp``). The common syntax is the same;
  where it differs it is translated: ``(?<name>...)`` is ``(?P<name>...)``,
  ``\\z`` is ``\\Z``, POSIX classes such as ``[[:digit:]]`` are spelled out, and
  ``$`` outside multi-line mode means the very end of the text (Python's
  ``$`` would also match before a final newline). What RE2 rejects
  (backreferences, lookaround) is rejected here too, so a pattern that the
  collector would refuse at startup is refused at validation.
* Replacement templates follow Go's ``Regexp.Expand``: ``$1``, ``${1}``,
  ``$name``, ``${name}``; ``$$`` is a literal ``$``; a name that is not a
  group expands to nothing.
* Glob patterns (``replace_match``) follow the collector's glob library:
  ``*`` any text, ``?`` one character, ``[abc]``, ``[!abc]``, ``[a-z]``,
  ``{a,b}`` alternatives, ``\\`` escapes; the whole value must match.

Patterns are checked by translating them and compiling the translation with
``re``, so every pattern gets the same messages; they run on RE2 itself
(``google-re2``) when it is installed, since patterns are matched against
client data and RE2 takes linear time where ``re`` may backtrack for ever
(``^(a+)+$``). RE2 also refuses what Go does and ``re`` would accept
(``a++``, ``(?>a)``, ``a{1001}``). What is compiled has ``search``,
``finditer``, ``fullmatch``, ``sub``, ``groups`` and ``groupindex`` either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from relay.ottl.parse import StatementError, quote

try:
    import re2
except ImportError:
    # google-re2 is a compiled extension; where no build of it fits the platform the relay still
    # runs, on re: patterns then may backtrack on hostile data, and \d, \w and \s take Unicode.
    re2 = None

ENGINE = "re" if re2 is None else "re2"
Pattern = Any  # a compiled re.Pattern, or re2's equivalent with the same methods

if re2 is not None:
    _RE2_OPTIONS = re2.Options()
    _RE2_OPTIONS.log_errors = False  # a bad pattern is a config problem, reported as one, not a log line


def _compile(python: str, go: str, shown: str, what: str = "regular expression") -> Pattern:
    """``python`` compiled with ``re`` (which checks it); ``go``, the same in RE2 syntax, run by RE2."""
    try:
        compiled = re.compile(python)
    except re.error as error:
        raise StatementError(f"invalid {what} {quote(shown)}: {error}") from None
    if re2 is None:
        return compiled
    try:
        return re2.compile(go, _RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else ""
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise StatementError(f"invalid {what} {quote(shown)}: {reason}") from None


_POSIX = {"alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
          "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~",
          "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z", "word": "0-9A-Za-z_",
          "xdigit": "0-9A-Fa-f"}
_MULTILINE = re.compile(r"\(\?[a-zA-Z]*m[a-zA-Z]*[:)]")


def compile_re2(pattern: str) -> Pattern:
    """``pattern`` (RE2 syntax) compiled; StatementError says why it cannot be."""
    return _compile(_translate(pattern, multiline=bool(_MULTILINE.search(pattern))), pattern, pattern)


_NAMED_OR_ESCAPE = re.compile(r"\\.|\(\?P?<([^>=!][^>]*)>", re.DOTALL)


def compile_re2_named(pattern: str) -> tuple[Pattern, list[tuple[str, str]]]:
    """``pattern`` compiled, with its named groups as (Python group name, RE2 name) pairs, in order.

    RE2 allows names Python does not (``git.sha``), so every named group is renamed.
    """
    names: list[tuple[str, str]] = []

    def rename(found: re.Match) -> str:
        if found.group(1) is None:
            return found.group(0)
        names.append((f"g{len(names)}", found.group(1)))
        return f"(?P<{names[-1][0]}>"

    renamed = _NAMED_OR_ESCAPE.sub(rename, pattern)
    return _compile(_translate(renamed, multiline=bool(_MULTILINE.search(pattern))), renamed, pattern), names


def _unsupported(pattern: str, what: str) -> StatementError:
    return StatementError(f"invalid regular expression {quote(pattern)}: {what} (the collector's regular "
                          "expressions are RE2)")


def _translate(pattern: str, multiline: bool) -> str:
    out, pos, n = [], 0, len(pattern)
    while pos < n:
        char = pattern[pos]
        if char == "\\" and pos + 1 < n:
            nxt = pattern[pos + 1]
            if nxt == "z":
                out.append("\\Z")
            elif nxt in "pP":
                raise _unsupported(pattern, f"Unicode classes (\\{nxt}) are not supported here")
            elif nxt.isdigit() and nxt != "0":
                raise _unsupported(pattern, f"backreferences (\\{nxt}) are not supported")
            elif nxt == "Q":
                end = pattern.find("\\E", pos + 2)
                end = n if end < 0 else end
                out.append(re.escape(pattern[pos + 2:end]))
                pos = end + 2
                continue
            else:
                out.append(pattern[pos:pos + 2])
            pos += 2
        elif char == "[":
            pos = _char_class(pattern, pos, out)
        elif char == "(" and pattern.startswith("(?", pos):
            pos = _group(pattern, pos, out)
        elif char == "$" and not multiline:
            out.append("\\Z")
            pos += 1
        else:
            out.append(char)
            pos += 1
    return "".join(out)


def _group(pattern: str, pos: int, out: list[str]) -> int:
    rest = pattern[pos + 2:]
    if rest.startswith("<") and not rest.startswith(("<=", "<!")):
        out.append("(?P<")
        return pos + 3
    if rest.startswith(("=", "!", "<=", "<!")):
        raise _unsupported(pattern, "lookahead and lookbehind are not supported")
    if rest.startswith("P="):
        raise _unsupported(pattern, "backreferences are not supported")
    flags = re.match(r"[a-zA-Z-]*", rest).group()
    if "U" in flags:
        raise _unsupported(pattern, "the ungreedy flag U is not supported here")
    out.append("(?")
    return pos + 2


def _char_class(pattern: str, pos: int, out: list[str]) -> int:
    start, pos = pos, pos + 1
    body = ["["]
    if pattern.startswith("^", pos):
        body.append("^")
        pos += 1
    if pattern.startswith("]", pos):
        body.append("\\]")
        pos += 1
    while pos < len(pattern) and pattern[pos] != "]":
        if pattern.startswith("[:", pos):
            end = pattern.find(":]", pos + 2)
            name = pattern[pos + 2:end] if end > 0 else ""
            negated = name.startswith("^")
            ranges = _POSIX.get(name.lstrip("^"))
            if ranges is None:
                raise _unsupported(pattern, f'unknown character class "[:{name}:]"')
            if negated:
                raise _unsupported(pattern, "negated POSIX classes are not supported here")
            body.append(ranges)
            pos = end + 2
        elif pattern[pos] == "\\" and pos + 1 < len(pattern):
            body.append(pattern[pos:pos + 2])
            pos += 2
        elif pattern[pos] == "[":
            body.append("\\[")  # Python warns about (and may one day treat as nested) a bare "[" in a class
            pos += 1
        else:
            body.append(pattern[pos])
            pos += 1
    if pos >= len(pattern):
        raise StatementError(f"invalid regular expression {quote(pattern)}: missing ] for the class "
                             f"at position {start}")
    out.append("".join(body) + "]")
    return pos + 1


_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_]+")


def expander(template: str) -> Callable[[Any], str]:
    """The replacement function for ``re.sub`` that expands a Go ``Regexp.Expand`` template."""
    parts: list[str | int] = []  # literal text, or a group (number or name) to insert
    pos = 0
    while pos < len(template):
        dollar = template.find("$", pos)
        if dollar < 0:
            parts.append(template[pos:])
            break
        parts.append(template[pos:dollar])
        rest = template[dollar + 1:]
        if rest.startswith("$"):
            parts.append("$")
            pos = dollar + 2
            continue
        braced = rest.startswith("{")
        match = _TEMPLATE_NAME.match(rest, 1 if braced else 0)
        if match is None or (braced and not rest.startswith("}", match.end())):
            parts.append("$")  # malformed: Go keeps the "$" as text
            pos = dollar + 1
            continue
        name = match.group()
        parts.append(int(name) if name.isdigit() else "\0" + name)
        pos = dollar + 1 + match.end() + (1 if braced else 0)

    def expand(found) -> str:
        out = []
        for part in parts:
            if isinstance(part, int):
                out.append((found.group(part) or "") if part <= (found.re.groups or 0) else "")
            elif part.startswith("\0"):
                name = part[1:]
                out.append((found.group(name) or "") if name in found.re.groupindex else "")
            else:
                out.append(part)
        return "".join(out)
    return expand


# Escaped with a backslash in both engines; RE2 refuses an escaped letter, digit or space.
_SPECIAL = frozenset("\\.^$|?*+()[]{}")


def _literal(char: str) -> str:
    return "\\" + char if char in _SPECIAL else char


def compile_glob(pattern: str) -> Pattern:
    """A glob pattern as a regular expression matching the whole text."""
    out, depth, pos = [], 0, 0
    while pos < len(pattern):
        char = pattern[pos]
        if char == "\\":
            if pos + 1 >= len(pattern):
                raise StatementError(f"invalid glob pattern {quote(pattern)}: it ends with an escape")
            out.append(_literal(pattern[pos + 1]))
            pos += 2
            continue
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = pattern.find("]", pos + 1)
            if end < 0:
                raise StatementError(f"invalid glob pattern {quote(pattern)}: unclosed [ at position {pos}")
            body = pattern[pos + 1:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\").replace("[", "\\[") + "]")
            pos = end + 1
            continue
        elif char == "{":
            depth += 1
            out.append("(?:")
        elif char == "}" and depth:
            depth -= 1
            out.append(")")
        elif char == "," and depth:
            out.append("|")
        else:
            out.append(_literal(char))
        pos += 1
    if depth:
        raise StatementError(f"invalid glob pattern {quote(pattern)}: unclosed {{")
    translated = "(?s)" + "".join(out)
    return _compile(translated, translated, pattern, "glob pattern")
