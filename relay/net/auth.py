"""How a component names its authenticator, and reads the header it checks.

A receiver protocol or an exporter says ``auth: {authenticator: <extension id>}``; the
extension is looked up on the host when the component starts. Any extension whose type
is in ``AUTHENTICATOR_TYPES`` will do, as long as it plays the role asked of it: a
receiver needs a server authenticator (one with ``authenticate(headers) -> bool``, and,
when that check is slow, such as bcrypt, ``async authenticate_async(headers)``, which a
receiver awaits instead so the event loop is not held up), an exporter a client one
(``client_headers()``). An extension says which roles it plays in
``roles``; ``bearertokenauth`` plays both, a ``basicauth`` one or the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from relay.errors import ConfigError, Problem

AUTHENTICATOR_TYPE = "bearertokenauth"
BASIC_AUTHENTICATOR_TYPE = "basicauth"
AUTHENTICATOR_TYPES = (AUTHENTICATOR_TYPE, BASIC_AUTHENTICATOR_TYPE)
# What the loader names as the required type when a reference points at something else.
ANY_AUTHENTICATOR = " or ".join(AUTHENTICATOR_TYPES)

SERVER, CLIENT = "server", "client"


@dataclass
class AuthConfig:
    """``auth: {authenticator: <extension id>}`` on a receiver protocol or an exporter."""

    authenticator: str

    def validate(self) -> list[Problem]:
        return []

    def reference(self, *owner: str) -> tuple[tuple[str, ...], str, str]:
        """The (key path, extension id, required type) of ``extension_references()``, for the
        ``auth`` section under the keys ``owner``."""
        # The loader compares one required type: the referenced one when it is an authenticator.
        named = self.authenticator.split("/", 1)[0]
        required = named if named in AUTHENTICATOR_TYPES else ANY_AUTHENTICATOR
        return (owner + ("auth", "authenticator"), self.authenticator, required)


def header_value(headers: Mapping[str, Any], name: str) -> str | None:
    """The value of header ``name`` (lowercase) in ``headers``, whatever the case of its key."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None)
    return value if isinstance(value, str) else None


def authenticator_for(host, auth: AuthConfig | None, *path: str, role: str = SERVER):
    """The running extension ``auth`` names, looked up on ``host``; None when there is no ``auth``.

    ``role`` is what the caller needs: ``SERVER`` for a receiver, ``CLIENT`` for an exporter.
    """
    if auth is None:
        return None
    where = path + ("auth", "authenticator")
    try:
        extension = host.extension(auth.authenticator)
    except (AttributeError, KeyError, ValueError):
        raise ConfigError([Problem(where, f'extension "{auth.authenticator}" is not running (list it in '
                                          "service::extensions)")]) from None
    roles = getattr(extension, "roles", (SERVER, CLIENT))
    if role not in roles:
        # The collector's basicauth is one or the other: htpasswd checks clients, client_auth is one.
        message = ("cannot check the credentials of a receiver's clients (a basicauth extension does that "
                   "with htpasswd)" if role == SERVER
                   else "has no credentials for an exporter to send (a basicauth extension sends client_auth)")
        raise ConfigError([Problem(where, f'extension "{auth.authenticator}" {message}')])
    return extension
