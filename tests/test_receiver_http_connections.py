"""The OTLP/HTTP receiver's connection limits: the confighttp timeouts and max_connections.

Run in-process on 127.0.0.1 with timeouts of a fraction of a second; every wait
ends at a deadline on a condition.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import socket
import time

import pytest

from relay.config.decode import decode
from relay.receivers import otlp
from relay.receivers.otlp.connections import Limits
from relay.signals import Signal
from relay.telemetry import setup_logging
from tests.support import traces_request
from tests.test_receiver_http import RECEIVER, FakeConsumer, Harness, all_signals

PROTO = traces_request(spans=3).SerializeToString()
SHORT = 0.3          # the deadline under test
WAIT = 5.0           # how long a test waits for what must happen well before


def request_head(*lines: str) -> bytes:
    return ("POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
            + "".join(f"{line}\r\n" for line in lines)).encode()


def whole_request(body: bytes = PROTO) -> bytes:
    return request_head(f"Content-Length: {len(body)}") + b"\r\n" + body


async def connect(h: Harness):
    return await asyncio.open_connection("127.0.0.1", h.http.port)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = WAIT) -> bytes | None:
    """What the server sent before it hung up (b"" for nothing), or None if it never hung up."""
    data = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return data


async def read_answer(reader: asyncio.StreamReader) -> int:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await asyncio.wait_for(reader.readexactly(length), WAIT)
    return int(head.split()[1])


def closed(h: Harness, reason: str) -> float:
    return h.registry.get_sample_value("otelcol_receiver_http_connections_closed_total",
                                       {"receiver": RECEIVER, "reason": reason}) or 0.0


def open_now(h: Harness) -> float:
    return h.registry.get_sample_value("otelcol_receiver_http_connections_open", {"receiver": RECEIVER})


# --- configuration ------------------------------------------------------------------------------------------

def test_the_defaults_are_the_collectors():
    http = otlp.HttpConfig()
    # confighttp's NewDefaultServerConfig: no read timeout, 1m for headers and idle, 30s to write.
    assert (http.read_timeout, http.read_header_timeout, http.write_timeout, http.idle_timeout) == (0, 60, 30, 60)
    assert http.max_connections == 0
    config, problems = decode(otlp.Config, {"protocols": {"http": {
        "read_timeout": "1m30s", "read_header_timeout": "250ms", "write_timeout": 5, "idle_timeout": "2s",
        "max_connections": 100}}})
    assert problems == []
    http = config.protocols.http
    assert (http.read_timeout, http.read_header_timeout, http.write_timeout, http.idle_timeout) == (90, 0.25, 5, 2)
    assert http.max_connections == 100


@pytest.mark.parametrize("key, value, expected", [
    ("read_timeout", -1, "protocols::http::read_timeout: must not be negative (0 means none)"),
    ("read_header_timeout", -0.5,
     "protocols::http::read_header_timeout: must not be negative (0 means read_timeout's value)"),
    ("write_timeout", -30, "protocols::http::write_timeout: must not be negative (0 means none)"),
    ("idle_timeout", -1, "protocols::http::idle_timeout: must not be negative (0 means read_timeout's value)"),
    ("max_connections", -1,
     "protocols::http::max_connections: must not be negative (0 means half the open-file limit)"),
])
def test_negative_limits_are_refused_by_key_path(key, value, expected):
    _, problems = decode(otlp.Config, {"protocols": {"http": {key: value}}})
    assert [str(p) for p in problems] == [expected]


def test_zero_header_and_idle_timeouts_take_the_read_timeout_as_in_go():
    limits = Limits(otlp.HttpConfig(read_timeout=7, read_header_timeout=0, idle_timeout=0), file_limit=1024)
    assert (limits.header, limits.idle, limits.read, limits.write) == (7, 7, 7, 30)
    limits = Limits(otlp.HttpConfig(read_header_timeout=0, idle_timeout=0, write_timeout=0), file_limit=1024)
    assert (limits.header, limits.idle, limits.read, limits.write) == (0, 0, 0, 0)
    assert limits.handshake() is None
    assert Limits(otlp.HttpConfig(read_header_timeout=5, write_timeout=3), 1024).handshake() == 3


def test_max_connections_defaults_to_half_the_open_file_limit():
    assert Limits(otlp.HttpConfig(), file_limit=1024).max_connections == 512
    assert Limits(otlp.HttpConfig(max_connections=50), file_limit=1024).max_connections == 50
    assert Limits(otlp.HttpConfig(max_connections=5000), file_limit=1024).max_connections == 5000


# --- the timeouts ---------------------------------------------------------------------------------------------

def test_read_header_timeout_closes_silent_and_half_sent_requests_without_an_answer():
    async def run():
        async with Harness(all_signals(FakeConsumer()), http={"read_header_timeout": SHORT}) as h:
            started = time.monotonic()
            silent, _ = await connect(h)
            half, half_writer = await connect(h)
            half_writer.write(request_head("X-Slow: 1"))
            assert await closed_by_server(silent) == b""
            assert await closed_by_server(half) == b""
            took = time.monotonic() - started
            # A whole request sent at once is well inside the deadline.
            answer = await h.send(PROTO)
            return took, answer.status, closed(h, "read_header_timeout")

    took, status, count = asyncio.run(run())
    assert SHORT * 0.8 <= took < WAIT
    assert (status, count) == (200, 2)


def test_idle_timeout_closes_a_kept_alive_connection_between_requests():
    async def run():
        async with Harness(all_signals(FakeConsumer()), http={"idle_timeout": SHORT, "read_header_timeout": 10}) as h:
            reader, writer = await connect(h)
            writer.write(whole_request())
            assert await read_answer(reader) == 200
            # Inside the idle timeout, the connection serves the next request.
            writer.write(whole_request())
            assert await read_answer(reader) == 200
            answered = time.monotonic()
            assert await closed_by_server(reader) == b""
            return time.monotonic() - answered, closed(h, "idle_timeout"), closed(h, "read_header_timeout")

    idle_for, idle, header = asyncio.run(run())
    assert SHORT * 0.8 <= idle_for < WAIT
    assert (idle, header) == (1, 0)


def test_write_timeout_ends_a_chunked_body_that_never_ends():
    async def run():
        async with Harness(all_signals(FakeConsumer()), http={"write_timeout": SHORT}) as h:
            reader, writer = await connect(h)
            writer.write(request_head("Transfer-Encoding: chunked") + b"\r\n")
            started = time.monotonic()
            outcome = None
            while time.monotonic() - started < WAIT and outcome is None:
                writer.write(b"2\r\n\x0a\x00\r\n")       # a chunk every 50 ms, never the last one
                outcome = await closed_by_server(reader, timeout=0.05)
            return outcome, time.monotonic() - started, closed(h, "write_timeout"), h.accepted(Signal.TRACES)

    outcome, took, count, accepted = asyncio.run(run())
    assert outcome == b"" and SHORT * 0.8 <= took < WAIT
    assert (count, accepted) == (1, 0)


def test_read_timeout_bounds_the_whole_request_but_not_a_slow_pipeline_after_it():
    consumer = FakeConsumer()

    async def run():
        async with Harness(all_signals(consumer), http={"read_timeout": SHORT, "write_timeout": 0}) as h:
            reader, writer = await connect(h)
            body = PROTO
            writer.write(request_head(f"Content-Length: {len(body)}") + b"\r\n" + body[:5])
            slow_body = await closed_by_server(reader)
            # The whole request in time: the pipeline may take longer than read_timeout.
            consumer.gate = asyncio.Event()
            answer = asyncio.create_task(h.send(PROTO))
            await asyncio.wait_for(consumer.entered.wait(), WAIT)
            await asyncio.sleep(SHORT * 2)  # the pipeline is slow on purpose, past the read deadline
            consumer.gate.set()
            return slow_body, (await answer).status, closed(h, "read_timeout")

    slow_body, status, count = asyncio.run(run())
    assert (slow_body, status, count) == (b"", 200, 1)


def test_zero_timeouts_mean_none():
    async def run():
        async with Harness(all_signals(FakeConsumer()), http={
                "read_header_timeout": 0, "read_timeout": 0, "write_timeout": 0, "idle_timeout": 0}) as h:
            reader, _ = await connect(h)
            return await closed_by_server(reader, timeout=SHORT * 2)

    assert asyncio.run(run()) is None  # still open


# --- max_connections ---------------------------------------------------------------------------------------------

def test_at_max_connections_the_longest_waiting_connection_makes_room():
    async def run():
        async with Harness(all_signals(FakeConsumer()), http={"max_connections": 2}) as h:
            first, _ = await connect(h)
            await asyncio.sleep(0.05)  # so that "first" is the longest waiting, whatever the loop's order
            second, second_writer = await connect(h)
            second_writer.write(request_head("X-Slow: 1"))
            third, third_writer = await connect(h)
            assert await closed_by_server(first) == b""
            # The newcomer is served.
            third_writer.write(whole_request())
            status = await read_answer(third)
            return status, closed(h, "evicted"), open_now(h), await closed_by_server(second, timeout=0.1)

    status, evicted, open_count, second = asyncio.run(run())
    assert (status, evicted, open_count) == (200, 1, 2)
    assert second is None  # untouched


def test_at_max_connections_with_every_request_in_flight_a_new_connection_is_reset():
    consumer = FakeConsumer()

    async def run():
        consumer.gate = asyncio.Event()
        async with Harness(all_signals(consumer), http={"max_connections": 1}) as h:
            in_flight = asyncio.create_task(h.send(PROTO))
            await asyncio.wait_for(consumer.entered.wait(), WAIT)
            try:
                reader, _ = await connect(h)
            except ConnectionResetError:
                refused = b""  # reset before the client's connect even returned
            else:
                refused = await closed_by_server(reader)
            consumer.gate.set()
            return refused, (await in_flight).status, closed(h, "max_connections")

    refused, status, count = asyncio.run(run())
    assert (refused, status, count) == (b"", 200, 1)


def test_a_flood_at_max_connections_is_one_log_line(component_log):
    async def run():
        async with Harness(all_signals(FakeConsumer()), http={"max_connections": 5}) as h:
            streams = []
            for _ in range(60):
                try:
                    streams.append(await connect(h))
                except ConnectionResetError:
                    pass  # reset before the connect returned: counted like the others
            deadline = time.monotonic() + WAIT
            while closed(h, "evicted") + closed(h, "max_connections") < 55 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for _, writer in streams:
                writer.close()
            return closed(h, "evicted") + closed(h, "max_connections"), open_now(h)

    made_room, open_count = asyncio.run(run())
    assert made_room == 55 and open_count <= 5
    lines = [r for r in component_log.records if r.getMessage() == "OTLP/HTTP connections at max_connections"]
    assert len(lines) == 1


# --- accept errors ------------------------------------------------------------------------------------------------

class _OutOfFiles:
    """A listener whose accept always fails as at the open-file limit."""

    def __init__(self, real: socket.socket):
        self.real = real
        self.calls = 0

    def fileno(self) -> int:
        return self.real.fileno()

    def accept(self):
        self.calls += 1
        raise OSError(errno.EMFILE, "Too many open files")


def test_out_of_descriptors_is_counted_logged_once_and_retried_later(component_log):
    async def run():
        async with Harness(all_signals(FakeConsumer())) as h:
            guard = h.http._guard
            listener = _OutOfFiles(guard._sockets[0])
            for _ in range(100):
                guard._accept(listener)
            paused = guard._retry is not None
            errors = h.registry.get_sample_value("otelcol_receiver_http_accept_errors_total",
                                                 {"receiver": RECEIVER, "error": "EMFILE"})
            deadline = time.monotonic() + WAIT
            while guard._retry is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            # Accepting again once the pause is over.
            answer = await h.send(PROTO)
            return listener.calls, paused, errors, answer.status

    calls, paused, errors, status = asyncio.run(run())
    assert (calls, paused, errors, status) == (100, True, 100, 200)
    lines = [r for r in component_log.records if r.getMessage() == "cannot accept OTLP/HTTP connections"]
    assert len(lines) == 1 and lines[0].fields["errno"] == "EMFILE"


def test_asyncios_accept_errors_are_json_at_most_once_a_second():
    stream = io.StringIO()
    setup_logging("info", stream)
    log = logging.getLogger("asyncio")
    for _ in range(50):
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError as error:
            log.error("socket.accept() out of system resource", exc_info=error)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(entries) == 1
    assert entries[0]["level"] == "error" and "Too many open files" in entries[0]["error"]
