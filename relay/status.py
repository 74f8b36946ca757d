"""The one place that maps relay errors to and from gRPC and HTTP status codes.

Receivers call ``to_grpc`` / ``to_http`` on whatever the pipeline raised;
exporters call ``from_grpc`` / ``from_http`` on whatever the downstream
answered. The tables follow the OTLP specification (retryable gRPC codes,
RESOURCE_EXHAUSTED retryable only with RetryInfo; only HTTP 429/502/503/504
retryable) and the collector's gRPC-to-HTTP mapping. Every HTTP client's retry rule is a table
here: OTLP/HTTP's, Prometheus remote write's (every 5xx, and 429) and the budget webhook's.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import re
import time

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from relay.errors import InvalidDataError, PermanentError, RelayError, RetryableError, TooLargeError

StatusCode = grpc.StatusCode

RETRYABLE_GRPC = frozenset({
    StatusCode.CANCELLED,
    StatusCode.DEADLINE_EXCEEDED,
    StatusCode.ABORTED,
    StatusCode.OUT_OF_RANGE,
    StatusCode.UNAVAILABLE,
    StatusCode.DATA_LOSS,
})

GRPC_TO_HTTP = {
    StatusCode.OK: 200,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.CANCELLED: 503,
    StatusCode.DEADLINE_EXCEEDED: 503,
    StatusCode.ABORTED: 503,
    StatusCode.OUT_OF_RANGE: 503,
    StatusCode.DATA_LOSS: 503,
    StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.UNAUTHENTICATED: 401,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.UNIMPLEMENTED: 404,
}

# Which HTTP answers are worth another attempt, by protocol; every other status is permanent.
RETRYABLE_HTTP = frozenset({429, 502, 503, 504})  # OTLP/HTTP, as the specification says
# Prometheus remote write: the specification retries every 5xx, and 429 where the sender may.
RETRYABLE_REMOTE_WRITE = frozenset({429, *range(500, 600)})
# A webhook is an endpoint we do not know: a server error or a rate limit may pass.
RETRYABLE_WEBHOOK = RETRYABLE_REMOTE_WRITE

DETAILS_KEY = "grpc-status-details-bin"
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"


def to_grpc(error: BaseException) -> tuple[StatusCode, float | None]:
    """The status a receiver answers for ``error``, with a retry delay hint."""
    if isinstance(error, RetryableError):
        return StatusCode.UNAVAILABLE, error.retry_after
    if isinstance(error, InvalidDataError):
        return StatusCode.INVALID_ARGUMENT, None
    if isinstance(error, TooLargeError):
        return StatusCode.RESOURCE_EXHAUSTED, None
    if isinstance(error, PermanentError):
        # A downstream that refused the data as malformed is telling our
        # client the same thing; anything else permanent is our failure.
        if error.status in (StatusCode.INVALID_ARGUMENT.name, "400"):
            return StatusCode.INVALID_ARGUMENT, None
        return StatusCode.INTERNAL, None
    # An unclassified exception is a bug in the relay, never the client's data;
    # answering UNAVAILABLE keeps the client's copy alive for a retry.
    return StatusCode.UNAVAILABLE, None


def to_http(error: BaseException) -> tuple[int, float | None]:
    if isinstance(error, TooLargeError):
        # Over a size limit is 413 in OTLP/HTTP: the gRPC code, RESOURCE_EXHAUSTED,
        # maps to 429, which an HTTP client would retry forever with the same payload.
        return 413, None
    code, retry_after = to_grpc(error)
    return GRPC_TO_HTTP.get(code, 500), retry_after


def http_refusal(error: BaseException) -> tuple[int, dict[str, str]]:
    """(status, headers) of an HTTP receiver's refusal of ``error``: ``to_http``'s status, with
    a Retry-After in whole seconds (rounded up) where the status is retryable and a delay is known."""
    code, retry_after = to_http(error)
    if retry_after is not None and code in RETRYABLE_HTTP:
        return code, {"Retry-After": str(max(0, math.ceil(retry_after)))}
    return code, {}


# An object's default repr, and the dump str() of a gRPC error is, where a message quotes them.
_OBJECT_REPR = re.compile(r"<\w+ of RPC that terminated with:.*>|<[^<>]*\bat 0x[0-9a-fA-F]+>", re.DOTALL)
MAX_MESSAGE = 500


def describe(error: BaseException) -> str:
    """``error`` as one line a person can read, for a log line or a client: never a
    multi-line dump or an object's repr, at most MAX_MESSAGE characters."""
    code, details = getattr(error, "code", None), getattr(error, "details", None)
    if isinstance(error, grpc.RpcError) and callable(code) and callable(details):
        return _one_line(f"downstream answered {code().name}: {details() or 'no details'}")
    text = _one_line(str(error))
    name = type(error).__name__
    if not text:
        return f"{name} (the error carried no readable message)"
    return text if isinstance(error, RelayError) else _one_line(f"{name}: {text}")


def _one_line(text: str) -> str:
    text = " ".join(_OBJECT_REPR.sub("(an object)", text).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def from_grpc(code: StatusCode, message: str, retry_after: float | None) -> Exception:
    """Classify a downstream gRPC failure, per the OTLP retry table."""
    # The downstream's words are quoted on one line, cut: its message is not ours to trust.
    text = _one_line(f"downstream answered {code.name}: {message}")
    if code in RETRYABLE_GRPC:
        return RetryableError(text, retry_after)
    if code == StatusCode.RESOURCE_EXHAUSTED and retry_after is not None:
        return RetryableError(text, retry_after)
    return PermanentError(text, status=code.name)


def from_http(status: int, message: str, retry_after: float | None,
              retryable: frozenset[int] = RETRYABLE_HTTP) -> Exception:
    """Classify a downstream HTTP failure by the protocol's table (``RETRYABLE_*``)."""
    return classify_http(status, _one_line(f"downstream answered HTTP {status}: {message}"), retry_after, retryable)


def classify_http(status: int, text: str, retry_after: float | None, retryable: frozenset[int]) -> Exception:
    """``text``, as the error of an HTTP answer with ``status``, by the table ``retryable``."""
    if status in retryable:
        return RetryableError(text, retry_after)
    return PermanentError(text, status=str(status))


def retry_info_metadata(code: StatusCode, message: str, retry_after: float) -> tuple:
    """Trailing metadata that carries a RetryInfo delay in both places clients read it.

    Go clients (the collector) read the details of ``grpc-status-details-bin``;
    the Python SDK reads a bare RetryInfo under ``google.rpc.retryinfo-bin``.
    """
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(retry_after * 1e9))
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(info)
    return ((DETAILS_KEY, status.SerializeToString()), (RETRY_INFO_KEY, info.SerializeToString()))


def retry_after_from_metadata(trailing) -> float | None:
    """The RetryInfo delay in a call's trailing metadata, if there is one."""
    for key, value in trailing or ():
        try:
            if key == DETAILS_KEY:
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                        info = error_details_pb2.RetryInfo()
                        detail.Unpack(info)
                        return info.retry_delay.ToNanoseconds() / 1e9
            elif key == RETRY_INFO_KEY:
                return error_details_pb2.RetryInfo.FromString(value).retry_delay.ToNanoseconds() / 1e9
        except Exception:  # noqa: BLE001 - a garbled hint is no hint
            continue
    return None


def retry_after_from_http(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header: delay-seconds or an HTTP-date.

    ``now`` (Unix seconds) is injected by tests. A date in the past means "now" (0);
    an unreadable header is no hint.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
