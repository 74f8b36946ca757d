"""The relay's exception tree.

Every failure that crosses a component boundary is one of these, so that the
edges of the process (receivers answering clients, exporters reading
downstream answers) classify an error exactly once::

    RelayError
     ├── ConfigError            the configuration cannot run; carries every problem found
     ├── PermanentError         retrying the same data cannot help; it is dropped and counted
     │    ├── InvalidDataError  the payload is malformed (gRPC INVALID_ARGUMENT, HTTP 400)
     │    └── TooLargeError     the payload exceeds a size limit (RESOURCE_EXHAUSTED, HTTP 413)
     └── RetryableError        try again later, optionally after ``retry_after`` seconds
          │                     (gRPC UNAVAILABLE, HTTP 503 with Retry-After)
          ├── QueueFullError    an exporter's sending queue has no room; refused, never dropped
          └── ShutdownError     the relay stopped before the data was delivered; a
                                persistent queue keeps it for the next start

``relay.status`` is the one place that maps these to and from gRPC and HTTP codes.
"""

from __future__ import annotations

from dataclasses import dataclass


class RelayError(Exception):
    """Base of every error the relay raises on purpose."""


MAX_MESSAGE = 500


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


@dataclass(frozen=True)
class Problem:
    """One configuration problem: where it is (a key path) and what is wrong."""

    path: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        # Messages quote config values; a 50 MB value must not come back whole.
        where = _cut("::".join(self.path), 200)
        message = _cut(self.message, MAX_MESSAGE)
        return f"{where}: {message}" if where else message

    def under(self, *prefix: str) -> "Problem":
        return Problem(tuple(prefix) + self.path, self.message)


class ConfigError(RelayError):
    """The configuration is invalid. ``problems`` holds all of them, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PermanentError(RelayError):
    """Retrying cannot succeed. ``status`` keeps the downstream's own code when known."""

    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.status = status


class InvalidDataError(PermanentError):
    """The data itself is malformed."""


class TooLargeError(PermanentError):
    """The data exceeds a configured size limit."""


class RetryableError(RelayError):
    """The data may be accepted later; ``retry_after`` is a hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class QueueFullError(RetryableError):
    """An exporter's sending queue has no room for the request."""


class ShutdownError(RetryableError):
    """Delivery was cut short by shutdown (a backoff ended early, or the queue is closed)."""
