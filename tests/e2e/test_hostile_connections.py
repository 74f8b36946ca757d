"""Hostile connections against a real relay process held to 1024 open files.

1,100 clients connect to the OTLP/HTTP port and never finish a request: some
send nothing, some half their headers, some a chunked body that never ends.
While they hold on, the health check, OTLP/gRPC and a plain HTTP client must
be served; the slow ones must then be closed by the configured timeouts, and
every line the relay logs must be JSON, the ones about the flood a few at
most. A second relay is let run out of descriptors on purpose (a
max_connections above the limit): its accept failures too must be a few JSON
lines, counted, and it must serve again once the flood is gone.

The suite's ``report`` lines say how many hostile connections were opened.
"""

from __future__ import annotations

import json
import resource
import select
import socket
import threading
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relay.signals import Signal
from tests.e2e.test_hostile_inputs import distinct_ports, report
from tests.support import RelayProcess, Sink, traces_request

NOFILE = 1024
FLOOD = 1100
HEADER_TIMEOUT, WRITE_TIMEOUT, IDLE_TIMEOUT = 4.0, 5.0, 1.0
PROTOBUF = "application/x-protobuf"
PATH = "/v1/traces"
CALL_TIMEOUT = 10.0
# Within this many seconds of the last timeout, every slow connection must be closed
# (generous: two cores shared by several suites; the wait ends as soon as they are).
SLACK = 10.0
FLOOD_MESSAGES = ("OTLP/HTTP connections at max_connections", "closed an OTLP/HTTP connection past its deadline")
ACCEPT_MESSAGES = ("cannot accept OTLP/HTTP connections", "socket.accept() out of system resource")


def about_accepting(entry: dict) -> bool:
    return str(entry.get("msg", "")).startswith(ACCEPT_MESSAGES)


@pytest.fixture(autouse=True, scope="module")
def enough_files_here():
    """The test's own sockets outnumber the relay's limit: raise this process's soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FLOOD * 2 + 256
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs an open-file hard limit of {wanted}, have {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if soft == resource.RLIM_INFINITY else max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def config(grpc_port: int, http_port: int, health: int, metrics: int, sink: Sink, http_extra: str = "") -> str:
    return (f"receivers:\n  otlp:\n    protocols:\n"
            f"      grpc:\n        endpoint: 127.0.0.1:{grpc_port}\n"
            f"      http:\n        endpoint: 127.0.0.1:{http_port}\n"
            f"        read_header_timeout: {HEADER_TIMEOUT}s\n        write_timeout: {WRITE_TIMEOUT}s\n"
            f"        idle_timeout: {IDLE_TIMEOUT}s\n{http_extra}"
            f"exporters:\n  otlp:\n    endpoint: {sink.endpoint}\n    tls:\n      insecure: true\n"
            f"extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\n"
            f"service:\n  extensions: [health_check]\n  pipelines:\n"
            f"    traces:\n      receivers: [otlp]\n      exporters: [otlp]\n"
            f"  telemetry:\n    logs:\n      level: info\n    metrics:\n      address: 127.0.0.1:{metrics}\n")


class Relay:
    def __init__(self, tmp_path, sink: Sink, http_extra: str = ""):
        self.sink = sink
        self.grpc_port, self.http_port, self.health_port, self.metrics_port = distinct_ports(4)
        self.process = RelayProcess(config(self.grpc_port, self.http_port, self.health_port, self.metrics_port,
                                           sink, http_extra), tmp_path, self.health_port, nofile=NOFILE)
        self.channel: grpc.Channel | None = None
        self.sent = 0

    def __enter__(self) -> Relay:
        self.process.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        return self

    def __exit__(self, *exc) -> None:
        self.channel.close()
        self.process.stop()

    def healthy(self) -> bool:
        try:
            return self.process.health()[0] == 200
        except OSError:
            return False

    def export_grpc(self) -> None:
        request = traces_request(2)
        self.channel.unary_unary(Signal.TRACES.method)(request.SerializeToString(), timeout=CALL_TIMEOUT)
        self.sent += 2
        assert self.sink.wait_for(Signal.TRACES, self.sent), "a gRPC export did not reach the sink"

    def export_http(self) -> None:
        """A plain client: one attempt, no retry."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{PATH}",
                                         data=traces_request(3).SerializeToString(),
                                         headers={"Content-Type": PROTOBUF})
        with urllib.request.urlopen(request, timeout=CALL_TIMEOUT) as answer:
            assert answer.status == 200
        self.sent += 3
        assert self.sink.wait_for(Signal.TRACES, self.sent), "an HTTP export did not reach the sink"

    def metrics(self) -> dict[tuple[str, tuple], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=CALL_TIMEOUT) as answer:
            text = answer.read().decode()
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}

    def metric(self, name: str, **labels) -> float:
        return self.metrics().get((name, tuple(sorted({"receiver": "otlp", **labels}.items()))), 0.0)

    def log_lines(self) -> list[str]:
        return self.process.log_text().splitlines()


def wait_until(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def head(*lines: str) -> bytes:
    return (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {PROTOBUF}\r\n"
            + "".join(f"{line}\r\n" for line in lines)).encode()


# What each kind of slow client sends once connected; the chunked ones go on sending.
OPENINGS = {
    "silent": b"",
    "half headers": head("X-Slow: 1"),                                  # never the blank line
    "endless chunks": head("Transfer-Encoding: chunked") + b"\r\n",
}
CHUNK = b"4\r\n\x0a\x00\x0a\x00\r\n"                                    # a valid chunk, never the last


class Flood:
    """``count`` slow clients, the kinds in turn, and a thread feeding the chunked ones."""

    def __init__(self, port: int, count: int, blocking_connect: bool = True):
        self.port = port
        self.kinds = list(OPENINGS)
        self.sockets: list[tuple[str, socket.socket]] = []
        self.failed_connects = 0
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None
        for i in range(count):
            kind = self.kinds[i % len(self.kinds)]
            sock = socket.socket()
            if blocking_connect:
                # One at a time: each is in the relay's backlog before the next, none waits on a SYN retry.
                sock.settimeout(5)
                try:
                    sock.connect(("127.0.0.1", port))
                    sock.sendall(OPENINGS[kind])
                except OSError:
                    # Reset at once because the relay is full: that is an answer too.
                    self.failed_connects += 1
            else:
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
            sock.setblocking(False)
            self.sockets.append((kind, sock))

    def feed(self, every: float = 0.5, at_most: float = 30.0) -> None:
        def run() -> None:
            ends = time.monotonic() + at_most
            while not self._stop.wait(every) and time.monotonic() < ends:
                for kind, sock in self.sockets:
                    if kind == "endless chunks":
                        try:
                            sock.send(CHUNK)
                        except OSError:
                            pass
        self._feeder = threading.Thread(target=run, daemon=True)
        self._feeder.start()

    def open_count(self) -> int:
        """Connections the relay has neither closed nor reset (a read would block)."""
        readable = self._readable()
        still = 0
        for _, sock in self.sockets:
            if sock.fileno() < 0:
                continue
            if sock.fileno() not in readable:
                still += 1
                continue
            try:
                while sock.recv(65536):
                    pass  # an answer before the close: drain it, the close follows
                sock.close()
            except BlockingIOError:
                still += 1
            except OSError:
                sock.close()
        return still

    def _readable(self) -> set[int]:
        fds = [sock.fileno() for _, sock in self.sockets if sock.fileno() >= 0]
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return {fd for fd, _ in poller.poll(0)}

    def close(self) -> None:
        self._stop.set()
        if self._feeder is not None:
            self._feeder.join(5)
        for _, sock in self.sockets:
            sock.close()


def read_answer(sock: socket.socket) -> bytes:
    """One whole response (headers and a Content-Length body), so that the next read sees only what follows."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in header.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return header + b"\r\n\r\n" + body


def json_lines(lines: list[str]) -> list[dict]:
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line that is not JSON: {line[:300]!r}")
    return entries


def test_slow_and_idle_connections_leave_every_port_serving_and_are_closed_on_time(tmp_path, sink, request, capsys):
    started = time.monotonic()
    with Relay(tmp_path, sink) as relay:
        flood = Flood(relay.http_port, FLOOD)
        try:
            flood.feed()
            flooded = time.monotonic()
            # The relay holds as many as it may (half its 1024 files) and no more.
            assert wait_until(lambda: relay.metric("otelcol_receiver_http_connections_open") >= 500, 5), (
                relay.metric("otelcol_receiver_http_connections_open"))
            assert relay.metric("otelcol_receiver_http_connections_open") <= 512 + 1

            assert relay.healthy()
            relay.export_grpc()
            relay.export_http()
            # Still under the flood: what was served was served beside it.
            assert time.monotonic() - flooded < HEADER_TIMEOUT, "too slow to tell: the flood may have timed out"
            holding = relay.metric("otelcol_receiver_http_connections_open")
            assert holding >= 500, holding

            # Every slow client is closed: the silent and half-headed by read_header_timeout,
            # the endless bodies by write_timeout, the rest at once to make room.
            assert wait_until(lambda: flood.open_count() == 0, WRITE_TIMEOUT + SLACK), (
                f"{flood.open_count()} slow connections still open")
            closed_at = time.monotonic() - flooded
        finally:
            flood.close()
        assert wait_until(lambda: relay.metric("otelcol_receiver_http_connections_open") == 0, SLACK)
        closed = {reason: relay.metric("otelcol_receiver_http_connections_closed_total", reason=reason)
                  for reason in ("max_connections", "evicted", "read_header_timeout", "write_timeout")}
        assert closed["read_header_timeout"] > 0 and closed["write_timeout"] > 0, closed
        assert closed["max_connections"] + closed["evicted"] >= FLOOD - 512 - flood.failed_connects, closed
        assert sum(closed.values()) >= FLOOD - flood.failed_connects, closed

        # After the flood, as before it.
        assert relay.healthy()
        relay.export_grpc()
        relay.export_http()

        # A kept-alive connection that sends no next request is closed by idle_timeout.
        idle_before = relay.metric("otelcol_receiver_http_connections_closed_total", reason="idle_timeout")
        kept = socket.create_connection(("127.0.0.1", relay.http_port), timeout=CALL_TIMEOUT)
        try:
            kept.sendall(head("Content-Length: 0") + b"\r\n")
            answer = read_answer(kept)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
            answered = time.monotonic()
            kept.settimeout(IDLE_TIMEOUT + SLACK)
            assert kept.recv(1) == b""
            idle_for = time.monotonic() - answered
        finally:
            kept.close()
        assert IDLE_TIMEOUT * 0.8 <= idle_for < IDLE_TIMEOUT + SLACK, idle_for
        assert relay.metric("otelcol_receiver_http_connections_closed_total", reason="idle_timeout") == idle_before + 1

    entries = json_lines(relay.log_lines())
    about_flood = [e for e in entries if e.get("msg") in FLOOD_MESSAGES]
    # One line per kind at most every 10 s, each with the count it held back.
    assert 1 <= len(about_flood) <= 2 * len(FLOOD_MESSAGES), about_flood
    assert not [e for e in entries if about_accepting(e)], "the relay ran out of descriptors"
    report(request, capsys, f"hostile connections: {FLOOD} slow clients (silent, half headers, endless chunks) "
                            f"against nofile={NOFILE}; closed {closed_at:.1f}s after the flood; "
                            f"{len(entries)} log lines, {len(about_flood)} about the flood; "
                            f"{time.monotonic() - started:.1f}s")


def test_running_out_of_descriptors_is_a_few_json_lines_and_the_relay_recovers(tmp_path, sink, request, capsys):
    started = time.monotonic()
    # A limit above what the process may open: the descriptors run out first.
    with Relay(tmp_path, sink, http_extra="        max_connections: 4096\n") as relay:
        flood = Flood(relay.http_port, FLOOD, blocking_connect=False)
        try:
            assert wait_until(lambda: any(m in relay.process.log_text() for m in ACCEPT_MESSAGES), 10), (
                "the flood never exhausted the relay's descriptors")
            relay.healthy()  # may fail while the descriptors are out: its accept error must be JSON too
            out_for = time.monotonic()
        finally:
            flood.close()
        assert wait_until(relay.healthy, SLACK), "the relay did not recover once the flood was gone"
        out_for = time.monotonic() - out_for
        relay.export_grpc()
        relay.export_http()
        assert relay.metric("otelcol_receiver_http_accept_errors_total", error="EMFILE") > 0

    lines = relay.log_lines()
    entries = json_lines(lines)
    accept_lines = [e for e in entries if about_accepting(e)]
    elapsed = time.monotonic() - started
    # The receiver's own line at most every 10 s, asyncio's (the health and telemetry ports)
    # at most once a second.
    own = [e for e in accept_lines if e["msg"] == ACCEPT_MESSAGES[0]]
    assert 1 <= len(own) <= 1 + elapsed / 10, own
    assert len(accept_lines) - len(own) <= 1 + elapsed, accept_lines
    assert any(e.get("msg") == "max_connections is not below the open-file limit: the relay runs out of "
               "descriptors first, for every port" for e in entries)
    size = sum(len(line) + 1 for line in lines)
    assert size < 64 * 1024, f"{size} bytes of log"
    report(request, capsys, f"hostile connections: {FLOOD} silent clients against nofile={NOFILE} with "
                            f"max_connections 4096; {len(accept_lines)} accept-error lines, {len(entries)} lines "
                            f"({size} bytes) in all; healthy {out_for:.1f}s after the flood; {elapsed:.1f}s")
