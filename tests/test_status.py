"""relay.status: the one mapping between relay errors and gRPC / HTTP status codes."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from relay import status
from relay.errors import InvalidDataError, PermanentError, RetryableError, TooLargeError

Code = grpc.StatusCode


# --- to_grpc / to_http: what a receiver answers its client --------------------------------

OUTGOING = [
    # (error, gRPC code, HTTP status, retry hint)
    pytest.param(RetryableError("busy"), Code.UNAVAILABLE, 503, None, id="retryable"),
    pytest.param(RetryableError("busy", retry_after=7.5), Code.UNAVAILABLE, 503, 7.5, id="retryable-with-delay"),
    pytest.param(InvalidDataError("bad span id"), Code.INVALID_ARGUMENT, 400, None, id="invalid-data"),
    # OTLP: over the size limit is a non-retryable RESOURCE_EXHAUSTED (no RetryInfo) or HTTP 413.
    pytest.param(TooLargeError("too big"), Code.RESOURCE_EXHAUSTED, 413, None, id="too-large"),
    pytest.param(PermanentError("downstream: bad", status="INVALID_ARGUMENT"), Code.INVALID_ARGUMENT, 400, None,
                 id="permanent-invalid-argument"),
    pytest.param(PermanentError("downstream HTTP: bad", status="400"), Code.INVALID_ARGUMENT, 400, None,
                 id="permanent-http-400"),
    pytest.param(PermanentError("downstream: denied", status="PERMISSION_DENIED"), Code.INTERNAL, 500, None,
                 id="permanent-other-status"),
    pytest.param(PermanentError("gone"), Code.INTERNAL, 500, None, id="permanent-no-status"),
    # A bug in the relay is never the client's fault: keep the client's copy alive for a retry.
    pytest.param(RuntimeError("boom"), Code.UNAVAILABLE, 503, None, id="unexpected-exception"),
    pytest.param(KeyError("k"), Code.UNAVAILABLE, 503, None, id="unexpected-keyerror"),
]


@pytest.mark.parametrize("error, grpc_code, http_status, retry_after", OUTGOING)
def test_to_grpc(error, grpc_code, http_status, retry_after):
    assert status.to_grpc(error) == (grpc_code, retry_after)


@pytest.mark.parametrize("error, grpc_code, http_status, retry_after", OUTGOING)
def test_to_http(error, grpc_code, http_status, retry_after):
    assert status.to_http(error) == (http_status, retry_after)


def test_answers_for_permanent_errors_are_never_retryable_for_the_client():
    # Whatever a receiver answers for a permanent error must be non-retryable in the
    # client's own table, or a client would resend data that can never be accepted.
    for error in (InvalidDataError("x"), TooLargeError("x"), PermanentError("x"),
                  PermanentError("x", status="INVALID_ARGUMENT")):
        code, retry_after = status.to_grpc(error)
        assert isinstance(status.from_grpc(code, "", retry_after), PermanentError), error
        http, retry_after = status.to_http(error)
        assert isinstance(status.from_http(http, "", retry_after), PermanentError), error


def test_answers_for_retryable_errors_are_retryable_for_the_client():
    for error in (RetryableError("x"), RetryableError("x", 2.0), RuntimeError("x")):
        code, retry_after = status.to_grpc(error)
        assert isinstance(status.from_grpc(code, "", retry_after), RetryableError), error
        http, retry_after = status.to_http(error)
        assert isinstance(status.from_http(http, "", retry_after), RetryableError), error


# --- from_grpc: classifying a downstream's gRPC answer (OTLP retry table) ---------------

RETRYABLE_CODES = {Code.CANCELLED, Code.DEADLINE_EXCEEDED, Code.ABORTED, Code.OUT_OF_RANGE,
                   Code.UNAVAILABLE, Code.DATA_LOSS}
PERMANENT_CODES = {Code.UNKNOWN, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.ALREADY_EXISTS,
                   Code.PERMISSION_DENIED, Code.UNAUTHENTICATED, Code.FAILED_PRECONDITION,
                   Code.UNIMPLEMENTED, Code.INTERNAL}


def test_the_table_covers_every_grpc_error_code():
    classified = RETRYABLE_CODES | PERMANENT_CODES | {Code.RESOURCE_EXHAUSTED}
    assert classified == set(Code) - {Code.OK}
    assert not RETRYABLE_CODES & PERMANENT_CODES


@pytest.mark.parametrize("code", sorted(RETRYABLE_CODES, key=lambda c: c.value[0]), ids=lambda c: c.name)
@pytest.mark.parametrize("retry_after", [None, 4.0])
def test_from_grpc_retryable(code, retry_after):
    error = status.from_grpc(code, "try later", retry_after)
    assert isinstance(error, RetryableError)
    assert error.retry_after == retry_after
    assert code.name in str(error) and "try later" in str(error)


@pytest.mark.parametrize("code", sorted(PERMANENT_CODES, key=lambda c: c.value[0]), ids=lambda c: c.name)
@pytest.mark.parametrize("retry_after", [None, 4.0])
def test_from_grpc_permanent(code, retry_after):
    # A RetryInfo hint does not make a non-retryable code retryable.
    error = status.from_grpc(code, "no", retry_after)
    assert isinstance(error, PermanentError)
    assert not isinstance(error, RetryableError)
    assert error.status == code.name
    assert code.name in str(error) and "no" in str(error)


def test_from_grpc_resource_exhausted_without_retry_info_is_permanent():
    error = status.from_grpc(Code.RESOURCE_EXHAUSTED, "over quota", None)
    assert isinstance(error, PermanentError)
    assert error.status == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize("retry_after", [0.0, 1.5, 30.0])
def test_from_grpc_resource_exhausted_with_retry_info_is_retryable(retry_after):
    error = status.from_grpc(Code.RESOURCE_EXHAUSTED, "slow down", retry_after)
    assert isinstance(error, RetryableError)
    assert error.retry_after == retry_after


# --- every HTTP client's retry rule, one table ---------------------------------------------

# status -> (OTLP/HTTP exporter, remote write exporter, budget webhook): retried?
HTTP_RETRY = {
    200: None, 301: (False, False, False), 400: (False, False, False), 401: (False, False, False),
    403: (False, False, False), 404: (False, False, False), 408: (False, False, False),
    413: (False, False, False), 429: (True, True, True), 500: (False, True, True),
    501: (False, True, True), 502: (True, True, True), 503: (True, True, True), 504: (True, True, True),
    507: (False, True, True), 599: (False, True, True),
}
TABLES = {"otlp_http": status.RETRYABLE_HTTP, "remote_write": status.RETRYABLE_REMOTE_WRITE,
          "webhook": status.RETRYABLE_WEBHOOK}


@pytest.mark.parametrize("http_status", [code for code, rule in HTTP_RETRY.items() if rule is not None])
@pytest.mark.parametrize("transport", list(TABLES))
def test_every_transports_http_retry_rule(transport, http_status):
    retried = HTTP_RETRY[http_status][list(TABLES).index(transport)]
    error = status.from_http(http_status, "why", 12.0, TABLES[transport])
    assert isinstance(error, RetryableError if retried else PermanentError)
    assert str(http_status) in str(error) and "why" in str(error)
    if retried:
        assert error.retry_after == 12.0
        assert status.from_http(http_status, "why", None, TABLES[transport]).retry_after is None
    else:
        assert error.status == str(http_status)


def test_the_otlp_table_is_the_default_and_what_the_receiver_answers_with():
    assert status.from_http(500, "x", None).__class__ is PermanentError
    assert status.to_http(RetryableError("later"))[0] in status.RETRYABLE_HTTP


def test_the_transports_use_these_tables():
    """No other module decides on HTTP status codes whether to retry."""
    import re
    from pathlib import Path

    import relay

    decision = re.compile(r"(==|>=|<=|<|>|in)\s*\(?\s*(429|5\d\d)\b")
    found = [f"{path.name}:{n}" for path in Path(relay.__file__).parent.rglob("*.py") if path.name != "status.py"
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if decision.search(line.split("#")[0])]
    assert found == []


# --- RetryInfo in trailing metadata -------------------------------------------------------

def test_retry_info_metadata_carries_both_keys():
    metadata = dict(status.retry_info_metadata(Code.UNAVAILABLE, "busy", 2.5))
    assert set(metadata) == {status.DETAILS_KEY, status.RETRY_INFO_KEY}
    details = status_pb2.Status.FromString(metadata[status.DETAILS_KEY])
    assert details.code == Code.UNAVAILABLE.value[0]
    assert details.message == "busy"
    info = error_details_pb2.RetryInfo.FromString(metadata[status.RETRY_INFO_KEY])
    assert info.retry_delay.seconds == 2 and info.retry_delay.nanos == 500_000_000


@pytest.mark.parametrize("key", [status.DETAILS_KEY, status.RETRY_INFO_KEY])
@pytest.mark.parametrize("delay", [5.0, 2.5, 0.25, 30.0])
def test_retry_info_round_trip_through_each_key_alone(key, delay):
    metadata = status.retry_info_metadata(Code.UNAVAILABLE, "busy", delay)
    only = tuple((k, v) for k, v in metadata if k == key)
    assert len(only) == 1
    assert status.retry_after_from_metadata(only) == pytest.approx(delay)


def test_retry_after_among_unrelated_metadata():
    metadata = (("x-request-id", "abc"),) + status.retry_info_metadata(Code.RESOURCE_EXHAUSTED, "m", 3.0)
    assert status.retry_after_from_metadata(metadata) == 3.0


def test_status_details_without_retry_info_falls_back_to_the_bare_key():
    # A status whose details carry something else (here BadRequest) is no hint by itself.
    bare = status_pb2.Status(code=Code.UNAVAILABLE.value[0], message="m")
    bare.details.add().Pack(error_details_pb2.BadRequest())
    assert status.retry_after_from_metadata(((status.DETAILS_KEY, bare.SerializeToString()),)) is None
    info = dict(status.retry_info_metadata(Code.UNAVAILABLE, "m", 9.0))[status.RETRY_INFO_KEY]
    assert status.retry_after_from_metadata(
        ((status.DETAILS_KEY, bare.SerializeToString()), (status.RETRY_INFO_KEY, info))) == 9.0


@pytest.mark.parametrize("metadata", [
    None,
    (),
    (("x-other", "value"),),
    ((status.DETAILS_KEY, b"\xff\xff\xff\xff"),),
    ((status.RETRY_INFO_KEY, b"\xff\xff\xff\xff"),),
    ((status.DETAILS_KEY, b"\x0a"),),  # truncated
    ((status.RETRY_INFO_KEY, "not bytes"),),
    ((status.DETAILS_KEY, b"\xff\xff"), (status.RETRY_INFO_KEY, b"\xff\xff")),
], ids=["none", "empty", "unrelated", "garbled-details", "garbled-retryinfo", "truncated-details",
        "str-value", "both-garbled"])
def test_garbled_or_missing_metadata_is_no_hint(metadata):
    assert status.retry_after_from_metadata(metadata) is None


def test_garbled_key_does_not_hide_a_good_one():
    good = dict(status.retry_info_metadata(Code.UNAVAILABLE, "m", 4.0))[status.RETRY_INFO_KEY]
    metadata = ((status.DETAILS_KEY, b"\xff\xff\xff"), (status.RETRY_INFO_KEY, good))
    assert status.retry_after_from_metadata(metadata) == 4.0


class _Thing:
    pass


@pytest.mark.parametrize("error, expected", [
    (ValueError(f"failed on {_Thing()!r}\n  then\tmore"), "ValueError: failed on (an object) then more"),
    (TimeoutError(), "TimeoutError (the error carried no readable message)"),
    (ValueError("<_InactiveRpcError of RPC that terminated with:\n\tstatus = StatusCode.UNAVAILABLE\n>"),
     "ValueError: (an object)"),
])
def test_describe_gives_one_readable_line(error, expected):
    assert status.describe(error) == expected


def test_describe_keeps_a_relay_error_as_written_and_cuts_long_ones():
    assert status.describe(RetryableError("sending queue is full")) == "sending queue is full"
    long = status.describe(RetryableError("x" * 10_000))
    assert len(long) == status.MAX_MESSAGE and long.endswith("...")


def test_a_downstream_message_is_quoted_on_one_line():
    error = status.from_grpc(grpc.StatusCode.INVALID_ARGUMENT, "bad\n<a.B object at 0xdeadbeef>\n", None)
    assert str(error) == "downstream answered INVALID_ARGUMENT: bad (an object)"
