"""Environment expansion in config values: ``${VAR}``, ``${env:VAR}``, ``${VAR:-default}``.

``$$`` stands for a literal ``$``. An unset variable without a default is a
problem naming the variable and the key it was used in. Expanded strings are
marked (``Expanded``) so the decoder may read them as numbers or booleans,
the way the collector does for a value that came from the environment.
A value whose expansion failed is marked ``Unresolved``: its problem is
already reported, so the decoder rejects it without reporting it again
(say, an unset ``${ENDPOINT}`` as also "not a host:port endpoint").
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from relay.errors import Problem

_REF = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_BAD_REF = re.compile(r"\$\{(?!(?:env:)?[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\})[^}]*\}?")


class Expanded(str):
    """A string that came (at least partly) from an environment variable."""


class Unresolved(str):
    """A string whose expansion failed (unset variable, malformed reference); already reported."""


def expand(tree: Any, env: Mapping[str, str], path: tuple[str, ...] = ()) -> tuple[Any, list[Problem]]:
    problems: list[Problem] = []
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out[key], sub = expand(value, env, path + (str(key),))
            problems += sub
        return out, problems
    if isinstance(tree, list):
        items = []
        for index, value in enumerate(tree):
            item, sub = expand(value, env, path + (str(index),))
            items.append(item)
            problems += sub
        return items, problems
    if isinstance(tree, str) and "$" in tree:
        return _expand_string(tree, env, path, problems), problems
    return tree, problems


def _expand_string(text: str, env: Mapping[str, str], path, problems: list[Problem]) -> str:
    bad = _BAD_REF.search(text.replace("$$", ""))
    if bad:
        problems.append(Problem(path, f'malformed variable reference "{bad.group(0)}"'))
        return Unresolved(text)
    unset = False

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None:
            if default is None:
                nonlocal unset
                unset = True
                problems.append(Problem(path, f"environment variable {name} is not set and has no default"))
                return ""
            return default
        return value

    result = _REF.sub(substitute, text)
    if unset:
        return Unresolved(result)
    return Expanded(result) if result != text else result
