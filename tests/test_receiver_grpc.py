"""The OTLP/gRPC receiver, run in-process on 127.0.0.1 with a fake consumer behind it."""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from prometheus_client import CollectorRegistry

from relay import status
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.errors import InvalidDataError, PermanentError, RetryableError, TooLargeError
from relay.receivers import otlp
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import logs_request, metrics_request, profiles_request, traces_request

RECEIVER = "otlp/test"
MIB = 1024 * 1024


class FakeConsumer:
    """Records every request it is handed; raises ``error`` if one is set."""

    mutates_data = False

    def __init__(self):
        self.received: list = []
        self.error: BaseException | None = None

    async def consume(self, request) -> None:
        self.received.append(request)
        if self.error is not None:
            raise self.error




class Harness:
    """A started receiver, a client channel to it and the registry it counts into."""

    def __init__(self, consumers: dict, grpc_config: dict | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.registry = CollectorRegistry()
        self.telemetry = SelfMetrics(self.registry)
        config, problems = decode(otlp.Config, {"protocols": {"grpc": {"endpoint": f"{host}:0",
                                                                         **(grpc_config or {})}}})
        assert problems == [] and config is not None
        self.receiver = otlp.create(Settings(ComponentID.parse(RECEIVER), self.telemetry), config, consumers)
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> "Harness":
        await self.receiver.start()
        assert self.receiver.port, "the receiver must report the port it bound"
        return self

    async def __aexit__(self, *exc) -> None:
        for channel in getattr(self, "_channels", []):
            await channel.close()
        await self.receiver.shutdown(grace=0)

    def channel_for(self, compression=None) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(f"{self.host}:{self.receiver.port}", compression=compression)
        self.__dict__.setdefault("_channels", []).append(channel)
        return channel

    async def export(self, signal: Signal, payload, *, compression=None, channel=None):
        """Call Export with raw bytes (or a message); returns (response bytes, None) or (None, AioRpcError)."""
        channel = channel or self.channel_for(compression)
        data = payload if isinstance(payload, bytes) else payload.SerializeToString()
        try:
            return await channel.unary_unary(signal.method)(data, timeout=10), None
        except grpc.aio.AioRpcError as error:
            return None, error

    def accepted(self, signal: Signal) -> float:
        return self.registry.get_sample_value(f"otelcol_receiver_accepted_{signal.item}_total",
                                              {"receiver": RECEIVER, "transport": "grpc"}) or 0.0

    def refused(self, signal: Signal, reason: str) -> float:
        return self.registry.get_sample_value(f"otelcol_receiver_refused_{signal.item}_total",
                                              {"receiver": RECEIVER, "transport": "grpc", "reason": reason}) or 0.0


def test_valid_traces_request_reaches_the_consumer_and_is_counted():
    consumer = FakeConsumer()
    request = traces_request(spans=3)

    async def run():
        async with Harness({Signal.TRACES: consumer}) as h:
            answer, error = await h.export(Signal.TRACES, request)
            assert error is None
            # Full success: an empty response, partial_success unset.
            response = trace_service_pb2.ExportTraceServiceResponse.FromString(answer)
            assert not response.HasField("partial_success")
            assert h.accepted(Signal.TRACES) == 3
            answer, error = await h.export(Signal.TRACES, traces_request(spans=2))
            assert error is None
            assert h.accepted(Signal.TRACES) == 5

    asyncio.run(run())
    assert len(consumer.received) == 2
    assert consumer.received[0] == request
    assert isinstance(consumer.received[0], trace_service_pb2.ExportTraceServiceRequest)


def test_gzip_compressed_request_is_accepted_unchanged():
    consumer = FakeConsumer()
    request = traces_request(spans=4, attribute_bytes=64 * 1024)  # compressible, well over a frame

    async def run():
        async with Harness({Signal.TRACES: consumer}) as h:
            answer, error = await h.export(Signal.TRACES, request, compression=grpc.Compression.Gzip)
            assert error is None, error
            assert h.accepted(Signal.TRACES) == 4

    asyncio.run(run())
    assert consumer.received == [request]


def test_max_recv_msg_size_is_honoured():
    consumer = FakeConsumer()
    small = traces_request(spans=1, attribute_bytes=MIB // 2)
    large = traces_request(spans=1, attribute_bytes=3 * MIB // 2)
    assert small.ByteSize() < MIB < large.ByteSize()

    async def run():
        async with Harness({Signal.TRACES: consumer}, {"max_recv_msg_size_mib": 1}) as h:
            _, error = await h.export(Signal.TRACES, large)
            assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Non-retryable for an OTLP client: it carries no RetryInfo.
            assert status.retry_after_from_metadata(error.trailing_metadata()) is None
            assert isinstance(status.from_grpc(error.code(), error.details(), None), PermanentError)
            _, error = await h.export(Signal.TRACES, small)
            assert error is None, error
            assert h.accepted(Signal.TRACES) == 1

    asyncio.run(run())
    assert consumer.received == [small]


def test_size_limit_applies_to_the_decompressed_request():
    # A highly compressible request is tiny on the wire; the limit still holds (no gzip bombs).
    consumer = FakeConsumer()
    large = traces_request(spans=1, attribute_bytes=3 * MIB // 2)

    async def run():
        async with Harness({Signal.TRACES: consumer}, {"max_recv_msg_size_mib": 1}) as h:
            _, error = await h.export(Signal.TRACES, large, compression=grpc.Compression.Gzip)
            assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    asyncio.run(run())
    assert consumer.received == []


def test_default_limit_accepts_more_than_one_mib():
    consumer = FakeConsumer()
    request = traces_request(spans=1, attribute_bytes=3 * MIB // 2)

    async def run():
        async with Harness({Signal.TRACES: consumer}) as h:  # default 4 MiB
            _, error = await h.export(Signal.TRACES, request)
            assert error is None, error

    asyncio.run(run())
    assert consumer.received == [request]


@pytest.mark.parametrize("payload", [
    b"\xff\xff\xff\xff garbage",
    traces_request(spans=3).SerializeToString()[:-7],
    traces_request(spans=3).SerializeToString()[:3],
], ids=["garbage", "truncated-tail", "truncated-head"])
def test_unparseable_request_is_invalid_argument(payload):
    consumer = FakeConsumer()

    async def run():
        async with Harness({Signal.TRACES: consumer}) as h:
            _, error = await h.export(Signal.TRACES, payload)
            assert error is not None
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.details().startswith("cannot parse"), error.details()
            assert "ExportTraceServiceRequest" in error.details()
            assert h.accepted(Signal.TRACES) == 0
            # Too broken to count spans in, but the refusal itself is counted.
            assert h.registry.get_sample_value("otelcol_receiver_refused_requests_total", {
                "receiver": RECEIVER, "transport": "grpc", "signal": "traces",
                "status": "INVALID_ARGUMENT"}) == 1

    asyncio.run(run())
    assert consumer.received == []


@pytest.mark.parametrize("payload", [
    b"",
    trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[{"scope_spans": [{}]}]).SerializeToString(),  # structure but no spans
], ids=["empty-bytes", "no-spans"])
def test_empty_request_succeeds_without_calling_the_consumer(payload):
    consumer = FakeConsumer()
    consumer.error = RuntimeError("must not be called")

    async def run():
        async with Harness({Signal.TRACES: consumer}) as h:
            answer, error = await h.export(Signal.TRACES, payload)
            assert error is None, error
            assert answer == b""
            assert h.accepted(Signal.TRACES) == 0

    asyncio.run(run())
    assert consumer.received == []


def test_retryable_consumer_error_is_unavailable_with_retry_info():
    consumer = FakeConsumer()
    consumer.error = RetryableError("queue is full", retry_after=5)

    async def run():
        async with Harness({Signal.TRACES: consumer}) as h:
            _, error = await h.export(Signal.TRACES, traces_request(spans=3))
            assert error is not None
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "queue is full" in error.details()
            trailing = error.trailing_metadata()
            assert status.retry_after_from_metadata(trailing) == 5.0
            # Both places clients read the hint are filled.
            keys = {key for key, _ in trailing}
            assert {status.DETAILS_KEY, status.RETRY_INFO_KEY} <= keys
            assert h.refused(Signal.TRACES, "RetryableError") == 3
            assert h.accepted(Signal.TRACES) == 0

    asyncio.run(run())
    assert len(consumer.received) == 1


def test_retryable_consumer_error_without_delay_has_no_retry_info():
    consumer = FakeConsumer()
    consumer.error = RetryableError("busy")

    async def run():
        async with Harness({Signal.TRACES: consumer}) as h:
            _, error = await h.export(Signal.TRACES, traces_request(spans=1))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert status.retry_after_from_metadata(error.trailing_metadata()) is None

    asyncio.run(run())


@pytest.mark.parametrize("failure, code", [
    (InvalidDataError("span id must be 8 bytes"), grpc.StatusCode.INVALID_ARGUMENT),
    (TooLargeError("over the limit"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (PermanentError("downstream: bad", status="INVALID_ARGUMENT"), grpc.StatusCode.INVALID_ARGUMENT),
    (PermanentError("downstream refused for good", status="PERMISSION_DENIED"), grpc.StatusCode.INTERNAL),
], ids=["invalid-data", "too-large", "permanent-invalid-argument", "permanent-other"])
def test_permanent_consumer_errors(failure, code):
    consumer = FakeConsumer()
    consumer.error = failure

    async def run():
        async with Harness({Signal.TRACES: consumer}) as h:
            _, error = await h.export(Signal.TRACES, traces_request(spans=2))
            assert error is not None
            assert error.code() == code
            assert str(failure) in error.details()
            # No RetryInfo: a client must not retry permanent failures.
            assert status.retry_after_from_metadata(error.trailing_metadata()) is None
            assert h.refused(Signal.TRACES, type(failure).__name__) == 2

    asyncio.run(run())


def test_unexpected_consumer_exception_is_unavailable_and_counted():
    consumer = FakeConsumer()
    consumer.error = RuntimeError("a bug in a processor")

    async def run():
        async with Harness({Signal.TRACES: consumer}) as h:
            _, error = await h.export(Signal.TRACES, traces_request(spans=3))
            assert error is not None
            # UNAVAILABLE: the client keeps its copy and may retry; the data is not lost.
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert isinstance(status.from_grpc(error.code(), error.details(), None), RetryableError)
            # The client learns what to do, not the relay's internals.
            assert error.details() == "internal error in the relay; retry later"
            assert h.refused(Signal.TRACES, "RuntimeError") == 3
            assert h.accepted(Signal.TRACES) == 0

    asyncio.run(run())


def test_metrics_service_counts_data_points():
    consumer = FakeConsumer()
    request = metrics_request()

    async def run():
        async with Harness({Signal.METRICS: consumer}) as h:
            answer, error = await h.export(Signal.METRICS, request)
            assert error is None, error
            assert not metrics_service_pb2.ExportMetricsServiceResponse.FromString(answer).HasField(
                "partial_success")
            assert h.accepted(Signal.METRICS) == 5
            assert h.accepted(Signal.TRACES) == 0

    asyncio.run(run())
    assert consumer.received == [request]
    assert isinstance(consumer.received[0], metrics_service_pb2.ExportMetricsServiceRequest)


def test_logs_service_counts_log_records():
    consumer = FakeConsumer()
    request = logs_request()

    async def run():
        async with Harness({Signal.LOGS: consumer}) as h:
            answer, error = await h.export(Signal.LOGS, request)
            assert error is None, error
            assert h.accepted(Signal.LOGS) == 4
            consumer.error = RetryableError("later")
            _, error = await h.export(Signal.LOGS, request)
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert h.refused(Signal.LOGS, "RetryableError") == 4

    asyncio.run(run())
    assert consumer.received == [request, request]
    assert isinstance(consumer.received[0], logs_service_pb2.ExportLogsServiceRequest)


def test_each_signal_goes_to_its_own_consumer():
    consumers = {signal: FakeConsumer() for signal in Signal}
    requests = {Signal.TRACES: traces_request(2), Signal.METRICS: metrics_request(), Signal.LOGS: logs_request(),
                Signal.PROFILES: profiles_request()}

    async def run():
        async with Harness(consumers) as h:
            for signal, request in requests.items():
                _, error = await h.export(signal, request)
                assert error is None, error

    asyncio.run(run())
    for signal, consumer in consumers.items():
        assert consumer.received == [requests[signal]]


@pytest.mark.parametrize("signal, payload", [
    (Signal.METRICS, metrics_request()),
    (Signal.LOGS, logs_request()),
], ids=["metrics", "logs"])
def test_signal_without_consumer_is_unimplemented(signal, payload):
    consumer = FakeConsumer()

    async def run():
        async with Harness({Signal.TRACES: consumer}) as h:
            _, error = await h.export(signal, payload)
            assert error is not None
            assert error.code() == grpc.StatusCode.UNIMPLEMENTED
            assert h.accepted(signal) == 0

    asyncio.run(run())
    assert consumer.received == []


def test_receiver_stays_up_after_every_kind_of_failure():
    consumer = FakeConsumer()
    good = traces_request(spans=2)

    async def run():
        async with Harness({Signal.TRACES: consumer}, {"max_recv_msg_size_mib": 1}) as h:
            channel = h.channel_for()  # one connection through all of it
            failures = [
                (None, traces_request(spans=1, attribute_bytes=3 * MIB // 2), grpc.StatusCode.RESOURCE_EXHAUSTED),
                (None, b"\xff\xff\xff garbage", grpc.StatusCode.INVALID_ARGUMENT),
                (None, good.SerializeToString()[:-5], grpc.StatusCode.INVALID_ARGUMENT),
                (RetryableError("full", retry_after=5), good, grpc.StatusCode.UNAVAILABLE),
                (InvalidDataError("bad"), good, grpc.StatusCode.INVALID_ARGUMENT),
                (RuntimeError("bug"), good, grpc.StatusCode.UNAVAILABLE),
                (ValueError("another bug"), good, grpc.StatusCode.UNAVAILABLE),
            ]
            for raised, payload, code in failures:
                consumer.error = raised
                _, error = await h.export(Signal.TRACES, payload, channel=channel)
                assert error is not None and error.code() == code, (raised, error)
            _, error = await h.export(Signal.METRICS, metrics_request(), channel=channel)
            assert error.code() == grpc.StatusCode.UNIMPLEMENTED
            _, error = await h.export(Signal.TRACES, b"", channel=channel)
            assert error is None

            consumer.error = None
            received_before = len(consumer.received)
            _, error = await h.export(Signal.TRACES, good, channel=channel)
            assert error is None, error
            assert consumer.received[received_before:] == [good]
            assert h.accepted(Signal.TRACES) == 2
            # A fresh connection works as well.
            _, error = await h.export(Signal.TRACES, good)
            assert error is None, error
            assert h.accepted(Signal.TRACES) == 4
            for reason in ("RetryableError", "InvalidDataError", "RuntimeError", "ValueError"):
                assert h.refused(Signal.TRACES, reason) == 2

    asyncio.run(run())


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_endpoint_in_brackets():
    consumer = FakeConsumer()
    request = traces_request(spans=1)

    async def run():
        async with Harness({Signal.TRACES: consumer}, host="[::1]") as h:
            _, error = await h.export(Signal.TRACES, request)
            assert error is None, error

    asyncio.run(run())
    assert consumer.received == [request]


def test_shutdown_stops_listening():
    consumer = FakeConsumer()

    async def run():
        h = Harness({Signal.TRACES: consumer})
        await h.receiver.start()
        port = h.receiver.port
        await h.receiver.shutdown(grace=0)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                await channel.unary_unary(Signal.TRACES.method)(traces_request(1).SerializeToString(), timeout=10)
            except grpc.aio.AioRpcError as error:
                return error.code()
        return grpc.StatusCode.OK

    assert asyncio.run(run()) == grpc.StatusCode.UNAVAILABLE
    assert consumer.received == []
