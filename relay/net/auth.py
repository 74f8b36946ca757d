"""How a component names its authenticator, and reads the header it checks.

A receiver protocol or an exporter says ``auth: {authenticator: <extension id>}``; the
extension (``bearertokenauth``, the one authenticator type) is looked up on the host when the
component starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from relay.errors import ConfigError, Problem

AUTHENTICATOR_TYPE = "bearertokenauth"


@dataclass
class AuthConfig:
    """``auth: {authenticator: <extension id>}`` on a receiver protocol or an exporter."""

    authenticator: str

    def validate(self) -> list[Problem]:
        return []

    def reference(self, *owner: str) -> tuple[tuple[str, ...], str, str]:
        """The (key path, extension id, required type) of ``extension_references()``, for the
        ``auth`` section under the keys ``owner``."""
        return (owner + ("auth", "authenticator"), self.authenticator, AUTHENTICATOR_TYPE)


def header_value(headers: Mapping[str, Any], name: str) -> str | None:
    """The value of header ``name`` (lowercase) in ``headers``, whatever the case of its key."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None)
    return value if isinstance(value, str) else None


def authenticator_for(host, auth: AuthConfig | None, *path: str):
    """The running extension ``auth`` names, looked up on ``host``; None when there is no ``auth``."""
    if auth is None:
        return None
    try:
        return host.extension(auth.authenticator)
    except (AttributeError, KeyError, ValueError):
        raise ConfigError([Problem(path + ("auth", "authenticator"),
                                   f'extension "{auth.authenticator}" is not running (list it in '
                                   "service::extensions)")]) from None
