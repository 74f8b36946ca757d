"""Hostile input against a real relay process, over OTLP/gRPC and OTLP/HTTP.

Every hostile request must get the protocol's own answer for what is wrong
with it (gRPC INVALID_ARGUMENT / RESOURCE_EXHAUSTED, HTTP 400 / 413 / 415 /
405), never an internal error, a hang or a crash; and after each group of
cases the relay must still take valid traffic and deliver everything it
acknowledged. One relay serves the whole module: a case that kills it fails,
and the next test starts a fresh one.

Byte-level cases come from a seeded property-based generator (mutations of
valid requests and of the recorded fixtures). Their oracle is this process's
own protobuf decoder: a payload that decodes must be accepted (and arrive at
the sink), one that does not must be refused as invalid.
"""

from __future__ import annotations

import gzip
import http.client
import json
import math
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay import ids, otlpjson
from relay.signals import Signal
from tests.support import ROOT, RelayProcess, Sink, free_port, logs_request, metrics_request, traces_request

MIB = 1024 * 1024
LIMIT = 4 * MIB                 # both max_recv_msg_size_mib and max_request_body_size
CALL_TIMEOUT = 20.0             # generous: several suites share two cores; a hang still ends
PROTOBUF, JSON = "application/x-protobuf", "application/json"
PATH = {signal: "/v1development/profiles" if signal is Signal.PROFILES else f"/v1/{signal.value}" for signal in Signal}
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

FUZZ_GRPC, FUZZ_HTTP, FUZZ_JSON = 2000, 1000, 300


# --- the relay under attack -------------------------------------------------------------

def config(grpc_port: int, http_port: int, health: int, metrics: int, sink: Sink, prometheus: int) -> str:
    # Traces pass through genops and genops_metrics as in the default config, so every hostile
    # span also meets the wire scanner, the pricing path and the aggregation.
    pipelines = "".join(f"    {s.value}:\n      receivers: [otlp]\n"
                        + ("      processors: [genops]\n      exporters: [otlp, genops_metrics]\n"
                           if s is Signal.TRACES else "      exporters: [otlp]\n") for s in Signal)
    pipelines += "    metrics/cost:\n      receivers: [genops_metrics]\n      exporters: [prometheus]\n"
    return (f"receivers:\n  otlp:\n    protocols:\n"
            f"      grpc:\n        endpoint: 127.0.0.1:{grpc_port}\n        max_recv_msg_size_mib: 4\n"
            f"      http:\n        endpoint: 127.0.0.1:{http_port}\n        max_request_body_size: {LIMIT}\n"
            f"processors:\n  genops: {{}}\nconnectors:\n  genops_metrics: {{metrics_flush_interval: 200ms}}\n"
            f"exporters:\n  prometheus:\n    endpoint: 127.0.0.1:{prometheus}\n    namespace: genops_openrouter\n"
            f"  otlp:\n    endpoint: {sink.endpoint}\n    tls:\n      insecure: true\n"
            f"extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\n"
            f"service:\n  extensions: [health_check]\n  pipelines:\n{pipelines}"
            f"  telemetry:\n    logs:\n      level: info\n    metrics:\n      address: 127.0.0.1:{metrics}\n")


def distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class Relay:
    """The relay process, clients for it, and what it has acknowledged so far."""

    def __init__(self, workdir: Path, sink: Sink):
        self.workdir = workdir
        self.sink = sink
        self.rng = random.Random(20240529)
        self.runs = 0
        self.retired = False                             # stopped on purpose by the last case
        self.cases = 0                                   # hostile requests sent, module-wide
        self.fuzzed: dict[str, int] = {}
        self.acked = {signal: 0 for signal in Signal}    # items acknowledged, per signal
        self.acked_ids: set[bytes] = set()               # span ids of acknowledged requests built here
        self.start()

    def start(self) -> None:
        if self.runs:
            self.stop()                                  # a dead run: close its log and channels
        self.runs += 1
        self.retired = False
        self.grpc_port, self.http_port, self.health_port, self.metrics_port, self.prometheus_port = distinct_ports(5)
        run_dir = self.workdir / f"run{self.runs}"       # a dead run's log stays readable
        run_dir.mkdir()
        self.process = RelayProcess(config(self.grpc_port, self.http_port, self.health_port, self.metrics_port,
                                           self.sink, self.prometheus_port), run_dir, self.health_port).start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        self.gzip_channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}", compression=grpc.Compression.Gzip)
        self._calls = {(signal, zipped): (self.gzip_channel if zipped else self.channel).unary_unary(signal.method)
                       for signal in Signal for zipped in (False, True)}
        # Whatever a dead run had queued is gone; count from what the sink holds.
        self.acked = {signal: self.sink.count(signal) for signal in Signal}
        self.acked_ids = set(self.sink.span_ids())

    def stop(self) -> int:
        self.channel.close()
        self.gzip_channel.close()
        return self.process.stop()

    def alive(self) -> bool:
        return self.process.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.process.log_text().splitlines()[-lines:])

    # -- clients --

    def export(self, signal: Signal, data: bytes, compressed: bool = False) -> tuple[grpc.StatusCode, str]:
        try:
            self._calls[signal, compressed](data, timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
        return OK, ""

    def post(self, path: str, body: bytes, content_type: str | None = PROTOBUF, method: str = "POST",
             headers: dict | None = None) -> tuple[int, str, bytes]:
        """(status, Content-Type, body) of one request on a fresh connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=CALL_TIMEOUT)
        try:
            sent = dict(headers or {})
            if content_type is not None:
                sent["Content-Type"] = content_type
            connection.request(method, path, body=body, headers=sent)
            answer = connection.getresponse()
            return answer.status, answer.getheader("Content-Type", ""), answer.read()
        finally:
            connection.close()

    # -- bookkeeping --

    def accepted(self, signal: Signal, message) -> None:
        self.acked[signal] += signal.count(message)
        if signal is Signal.TRACES:
            self.acked_ids.update(span_ids(message))


def span_ids(request) -> list[bytes]:
    return [s.span_id for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def decoded(signal: Signal, data: bytes):
    """The request ``data`` decodes to, or None: the oracle for what the relay must accept.

    Ids of the wrong length decode but are refused (relay.ids); the oracle judges them by the
    Python check on the parsed message, the relay by its native one on the bytes."""
    try:
        message = signal.request_type.FromString(data)
    except DecodeError:
        return None
    return None if ids.problem(signal, message) is not None else message


def shown(data: bytes, limit: int = 96) -> str:
    """Enough of a payload to reproduce a failure by hand."""
    text = data[:limit].hex()
    return f"{len(data)} bytes: {text}{'...' if len(data) > limit else ''}"


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    sink = Sink().start()
    process = None
    try:
        process = Relay(tmp_path_factory.mktemp("hostile"), sink)
        yield process
    finally:
        if process is not None:
            process.stop()
        sink.stop()


@pytest.fixture(autouse=True)
def survives(relay):
    """A dead relay fails the case that killed it; the next case gets a fresh one."""
    if not relay.alive():
        relay.start()
    yield
    if not relay.alive() and not relay.retired:
        status = relay.process.process.returncode
        pytest.fail(f"the relay died (exit status {status}); log tail:\n{relay.log_tail()}")


def report(request, capsys, line: str) -> None:
    """Show ``line`` in the terminal even under capture, and in the -rA summary."""
    print(line)
    if request.config.getoption("capture") != "no":
        with capsys.disabled():
            print(f"\n{line}")


# --- expectations ------------------------------------------------------------------------

def expect_grpc(relay: Relay, signal: Signal, data: bytes, allowed: set, compressed: bool = False, what: str = "",
                message=None) -> grpc.StatusCode:
    """Send ``data``; its code must be in ``allowed``. OK counts ``message`` (or the decoded
    payload) as acknowledged."""
    relay.cases += 1
    code, details = relay.export(signal, data, compressed=compressed)
    acknowledged = None
    if code == OK:
        # Counted even when OK is the wrong answer: the relay did take it, and later checks
        # must not trip over it.
        acknowledged = message if message is not None else decoded(signal, data)
        if acknowledged is not None:
            relay.accepted(signal, acknowledged)
    assert code in allowed, (f"{what or 'payload'} over gRPC to {signal.value}: got {code.name} ({details}), "
                             f"expected one of {sorted(c.name for c in allowed)}; {shown(data)}")
    assert code != OK or acknowledged is not None, f"{what}: OK for a payload that does not decode; {shown(data)}"
    return code


def expect_grpc_oracle(relay: Relay, signal: Signal, data: bytes, what: str = "") -> grpc.StatusCode:
    if len(data) > LIMIT:
        allowed = {EXHAUSTED}
    else:
        allowed = {OK} if decoded(signal, data) is not None else {INVALID}
    return expect_grpc(relay, signal, data, allowed, what=what)


def expect_http(relay: Relay, signal: Signal, body: bytes, allowed: set, content_type: str | None = PROTOBUF,
                headers: dict | None = None, what: str = "", message=None) -> int:
    relay.cases += 1
    status, media, answer = relay.post(PATH[signal], body, content_type, headers=headers)
    if status == 200 and message is None:
        message = decoded(signal, body) if content_type == PROTOBUF else _json_decoded(signal, body)
    if status == 200 and message is not None:
        relay.accepted(signal, message)    # as for gRPC: counted whether or not 200 was right
    assert status in allowed, (f"{what or 'payload'} over HTTP to {PATH[signal]} ({content_type}): got {status} "
                               f"{answer[:200]!r}, expected one of {sorted(allowed)}; {shown(body)}")
    if status == 200:
        assert message is not None, f"{what}: 200 for a body that does not decode; {shown(body)}"
    elif status in (400, 413) and content_type in (PROTOBUF, JSON):
        # A refusal is a google.rpc.Status in the request's own encoding.
        assert media == content_type, (what, media)
        reply = (status_pb2.Status.FromString(answer) if media == PROTOBUF
                 else otlpjson.decode(answer, status_pb2.Status))
        assert reply.code == (INVALID if status == 400 else EXHAUSTED).value[0], (what, reply)
        assert reply.message, what
    return status


def _json_decoded(signal: Signal, body: bytes):
    # The relay's own codec: OTLP/JSON has no independent decoder here to judge by.
    try:
        return otlpjson.decode(body, signal.request_type)
    except ValueError:
        return None


def expect_http_oracle(relay: Relay, signal: Signal, body: bytes, what: str = "") -> int:
    if len(body) > LIMIT:
        allowed = {413}
    else:
        allowed = {200} if decoded(signal, body) is not None else {400}
    return expect_http(relay, signal, body, allowed, what=what)


def assert_still_serving(relay: Relay) -> None:
    """Valid traffic on every route is acknowledged, and everything acknowledged so far
    (this batch and every hostile case that was accepted) reaches the sink, nothing more."""
    assert relay.alive(), relay.log_tail()
    batch: list[bytes] = []
    for _ in range(2):
        request = traces_request(5, rng=relay.rng)
        code, details = relay.export(Signal.TRACES, request.SerializeToString())
        assert code == OK, f"valid gRPC request refused: {code.name} {details}"
        relay.accepted(Signal.TRACES, request)
        batch += span_ids(request)
    for media in (PROTOBUF, JSON):
        request = traces_request(5, rng=relay.rng)
        body = request.SerializeToString() if media == PROTOBUF else otlpjson.encode(request)
        status, _, answer = relay.post(PATH[Signal.TRACES], body, media)
        assert status == 200, f"valid {media} request refused: {status} {answer[:200]!r}"
        relay.accepted(Signal.TRACES, request)
        batch += span_ids(request)
    assert relay.export(Signal.METRICS, metrics_request().SerializeToString())[0] == OK
    relay.accepted(Signal.METRICS, metrics_request())
    assert relay.post(PATH[Signal.LOGS], logs_request().SerializeToString())[0] == 200
    relay.accepted(Signal.LOGS, logs_request())

    for signal in Signal:
        assert relay.sink.wait_for(signal, relay.acked[signal], timeout=30), (
            f"{signal.value}: {relay.sink.count(signal)} of {relay.acked[signal]} acknowledged items arrived")
    # Nothing refused was forwarded (and nothing acknowledged was forwarded twice).
    assert {signal: relay.sink.count(signal) for signal in Signal} == relay.acked
    arrived = set(relay.sink.span_ids())
    assert set(batch) <= arrived
    missing = relay.acked_ids - arrived
    assert not missing, f"{len(missing)} acknowledged span ids never arrived"


# --- the protobuf wire format, for payloads the protobuf library will not build ----------

def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def vi(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def key_value(key: bytes, value: bytes | None = None) -> bytes:
    return ld(1, key) + (ld(2, value) if value is not None else b"")


def any_string(text: bytes) -> bytes:
    return ld(1, text)


def span_bytes(span_id: bytes, name: bytes = b"hostile", attributes: tuple[bytes, ...] = (),
               trace_id: bytes = b"\x07" * 16) -> bytes:
    return ld(1, trace_id) + ld(2, span_id) + ld(5, name) + b"".join(ld(9, kv) for kv in attributes)


def traces_bytes(span: bytes, resource_attributes: tuple[bytes, ...] = (), scope_name: bytes = b"") -> bytes:
    resource = b"".join(ld(1, kv) for kv in resource_attributes)
    scope_spans = (ld(1, ld(1, scope_name)) if scope_name else b"") + ld(2, span)
    return ld(1, ld(1, resource) + ld(2, scope_spans))


def nested(depth: int, kind: str) -> bytes:
    """An AnyValue ``depth`` levels deep: arrays, kvlists, or the two alternating."""
    value = any_string(b"bottom")
    for level in range(depth):
        as_array = kind == "array" or (kind == "mixed" and level % 2 == 0)
        if as_array:
            value = ld(5, ld(1, value))                        # AnyValue.array_value.values
        else:
            value = ld(6, ld(1, key_value(b"k", value)))       # AnyValue.kvlist_value.values
    return value


def one_span(span_id: bytes):
    """What a request built on the wire holding one span acknowledges."""
    request = traces_request(0)
    request.resource_spans[0].scope_spans[0].spans.add(span_id=span_id)
    return request


def nested_json(depth: int, kind: str) -> str:
    """The OTLP/JSON twin of ``nested``, written out by hand: json.dumps recurses."""
    opening, closing = [], []
    for level in range(depth):
        if kind == "array" or (kind == "mixed" and level % 2 == 0):
            opening.append('{"arrayValue":{"values":[')
            closing.append("]}}")
        else:
            opening.append('{"kvlistValue":{"values":[{"key":"k","value":')
            closing.append("}]}}")
    return "".join(reversed(opening)) + '{"stringValue":"bottom"}' + "".join(closing)


def sized_traces(total: int, rng: random.Random):
    """A valid one-span traces request whose serialized size is exactly ``total`` bytes."""
    span_id = rng.randbytes(8)
    pad = total
    for _ in range(8):
        candidate = traces_request(1, attribute_bytes=pad)
        candidate.resource_spans[0].scope_spans[0].spans[0].span_id = span_id
        size = candidate.ByteSize()
        if size == total:
            return candidate
        pad -= size - total
    raise AssertionError(f"no padding gives {total} bytes")


def gzip_of_zeros(size: int) -> bytes:
    """A genuine gzip stream of ``size`` zero bytes, built from one compressed MiB repeated.

    After a full flush, deflate output is byte-aligned and refers to nothing before it,
    so the compressed block for 1 MiB of zeros can be repeated; compressing a GiB
    outright would take seconds.
    """
    block = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    piece = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert piece == again                       # the repetition is exact
    end = compressor.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(size // MIB):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + piece * (size // MIB) + end + struct.pack("<II", crc, size & 0xFFFFFFFF)


# --- raw HTTP/1.1, for what an HTTP client library will not send ------------------------

def read_responses(sock: socket.socket, first_only: bool = False) -> list[int]:
    """Status codes of the responses read until the server hangs up (or of the first one).

    Ends at CALL_TIMEOUT: a server that never answers yields fewer statuses, not a hang.
    """
    deadline = time.monotonic() + CALL_TIMEOUT
    buffer, statuses, wanted = b"", [], None   # wanted: where the response being read ends
    try:
        while time.monotonic() < deadline:
            head_end = buffer.find(b"\r\n\r\n")
            if wanted is None and head_end >= 0:
                head = buffer[:head_end].decode("latin-1").split("\r\n")
                statuses.append(int(head[0].split()[1]))
                length = next((int(line.split(":", 1)[1]) for line in head[1:]
                               if line.lower().startswith("content-length:")), 0)
                wanted = head_end + 4 + length
            if wanted is not None and len(buffer) >= wanted:
                buffer, wanted = buffer[wanted:], None
                if first_only:
                    return statuses
                continue
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return statuses


def raw_exchange(port: int, data: bytes, first_only: bool = False) -> list[int]:
    """Send ``data`` from a thread (the server may answer before reading it all) and read the answers.

    With ``first_only`` the connection stays open until the first answer is read, so a
    client that has not sent its whole body is still there, owing bytes.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=CALL_TIMEOUT)

    def send() -> None:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server answered and hung up before taking it all

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        return read_responses(sock, first_only=first_only)
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        sender.join(CALL_TIMEOUT)


def http_head(path: str, *lines: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{line}\r\n" for line in lines)
            + "\r\n").encode()


def chunked(data: bytes, size: int = 64 * 1024) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size)]
    return b"".join(parts) + b"0\r\n\r\n"


# --- seeded property-based byte mutations -----------------------------------------------

def _seeds() -> list[tuple[Signal, bytes]]:
    rng = random.Random(11)
    seeds = [(Signal.TRACES, traces_request(3).SerializeToString()),
             (Signal.TRACES, traces_request(12, attribute_bytes=48, rng=rng).SerializeToString()),
             (Signal.METRICS, metrics_request().SerializeToString()),
             (Signal.LOGS, logs_request().SerializeToString())]
    for name, signal in (("traces_llm", Signal.TRACES), ("metrics", Signal.METRICS), ("logs", Signal.LOGS)):
        seeds.append((signal, (ROOT / "proto_fixtures" / f"{name}.binpb").read_bytes()))
    return seeds


def _json_seeds() -> list[tuple[Signal, bytes]]:
    seeds = [(Signal.TRACES, otlpjson.encode(traces_request(3))),
             (Signal.METRICS, otlpjson.encode(metrics_request())),
             (Signal.LOGS, otlpjson.encode(logs_request()))]
    for name, signal in (("traces_llm", Signal.TRACES), ("metrics", Signal.METRICS), ("logs", Signal.LOGS)):
        seeds.append((signal, (ROOT / "proto_fixtures" / f"{name}.json").read_bytes()))
    return seeds


SEEDS = _seeds()
JSON_SEEDS = _json_seeds()


@st.composite
def mutations(draw, seeds: list[tuple[Signal, bytes]]) -> tuple[Signal, str, bytes]:
    """(signal, how, payload): random bytes, or a valid seed truncated, bit-flipped, spliced or sent
    to another signal's endpoint."""
    how = draw(st.sampled_from(("random", "truncate", "flip", "flip", "insert", "delete", "overwrite", "cross")))
    if how == "random":
        return draw(st.sampled_from(list(Signal))), how, draw(st.binary(max_size=600))
    signal, data = draw(st.sampled_from(seeds))
    last = len(data) - 1
    if how == "truncate":
        return signal, how, data[:draw(st.integers(0, last))]
    if how == "flip":
        mutated = bytearray(data)
        for position, bit in draw(st.lists(st.tuples(st.integers(0, last), st.integers(0, 7)),
                                           min_size=1, max_size=6)):
            mutated[position] ^= 1 << bit
        return signal, how, bytes(mutated)
    if how == "insert":
        at = draw(st.integers(0, len(data)))
        return signal, how, data[:at] + draw(st.binary(min_size=1, max_size=32)) + data[at:]
    if how == "delete":
        at = draw(st.integers(0, last))
        return signal, how, data[:at] + data[at + draw(st.integers(1, 64)):]
    if how == "overwrite":
        at = draw(st.integers(0, last))
        junk = draw(st.binary(min_size=1, max_size=16))
        return signal, how, data[:at] + junk + data[at + len(junk):]
    # cross: a whole valid request of one signal posted as another
    return draw(st.sampled_from([s for s in Signal if s is not signal])), how, data


def fuzz(relay: Relay, request, capsys, label: str, examples: int, seeds, send) -> dict:
    """Run ``send(signal, how, payload)`` on ``examples`` seeded mutations of ``seeds``; report how
    many ran (also when one fails) and return the count of each outcome."""
    outcomes: dict = {}
    ran = [0]

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutations(seeds))
    def case(mutation):
        ran[0] += 1
        signal, how, data = mutation
        outcome = send(signal, how, data)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    try:
        case()
    finally:
        relay.fuzzed[label] = ran[0]
        report(request, capsys, f"hostile fuzz: {ran[0]} {label} cases run, outcomes {dict(sorted(outcomes.items()))}")
    assert ran[0] >= examples
    return outcomes


# --- the cases ---------------------------------------------------------------------------

def test_the_relay_serves_valid_traffic_before_any_attack(relay):
    assert relay.process.health()[0] == 200
    assert_still_serving(relay)


def test_fuzzed_protobuf_over_grpc(relay, request, capsys):
    outcomes = fuzz(relay, request, capsys, "protobuf over gRPC", FUZZ_GRPC, SEEDS,
                    lambda signal, how, data: expect_grpc_oracle(relay, signal, data, what=f"fuzz/{how}").name)
    assert outcomes.get("OK") and outcomes.get("INVALID_ARGUMENT")    # both sides of the oracle were hit
    assert_still_serving(relay)


def test_fuzzed_protobuf_over_http(relay, request, capsys):
    outcomes = fuzz(relay, request, capsys, "protobuf over HTTP", FUZZ_HTTP, SEEDS,
                    lambda signal, how, data: expect_http_oracle(relay, signal, data, what=f"fuzz/{how}"))
    assert outcomes.get(200) and outcomes.get(400)
    assert_still_serving(relay)


def test_fuzzed_json_over_http(relay, request, capsys):
    # No independent oracle for OTLP/JSON: refused as invalid, or accepted and delivered.
    outcomes = fuzz(relay, request, capsys, "OTLP/JSON over HTTP", FUZZ_JSON, JSON_SEEDS,
                    lambda signal, how, data: expect_http(relay, signal, data, {200, 400}, content_type=JSON,
                                                          what=f"json fuzz/{how}"))
    assert outcomes.get(200) and outcomes.get(400)
    assert_still_serving(relay)


@pytest.mark.parametrize("kind", ["array", "kvlist", "mixed"])
def test_deeply_nested_attribute_values(relay, kind):
    for depth in (20, 200, 1000, 5000):
        what = f"{kind} nested {depth} deep"
        # A valid message however deep: accepted and delivered, or refused as invalid by a
        # decoder with a depth limit. Never an internal error or a crash.
        codes = []
        for send in ("grpc", "http", "json"):
            span_id = relay.rng.randbytes(8)
            if send == "json":
                body = ('{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"' + "07" * 16 + '","spanId":"'
                        + span_id.hex() + '","name":"hostile","attributes":[{"key":"deep","value":'
                        + nested_json(depth, kind) + "}]}]}]}]}").encode()
                codes.append(expect_http(relay, Signal.TRACES, body, {200, 400}, content_type=JSON,
                                         what=f"JSON {what}", message=one_span(span_id)) == 200)
                continue
            data = traces_bytes(span_bytes(span_id, attributes=(key_value(b"deep", nested(depth, kind)),)))
            if send == "grpc":
                codes.append(expect_grpc(relay, Signal.TRACES, data, {OK, INVALID}, what=what,
                                         message=one_span(span_id)) == OK)
            else:
                codes.append(expect_http(relay, Signal.TRACES, data, {200, 400}, what=what,
                                         message=one_span(span_id)) == 200)
        if depth == 20:
            assert all(codes), f"{what}: a shallow value was refused ({codes})"
        # Both transports decode protobuf alike.
        assert codes[0] == codes[1], what
    assert_still_serving(relay)


def test_huge_attribute_values(relay):
    valid = traces_request(1, attribute_bytes=3 * MIB, rng=relay.rng)
    data = valid.SerializeToString()
    assert expect_grpc(relay, Signal.TRACES, data, {OK}, what="3 MiB attribute", message=valid) == OK
    other = traces_request(1, attribute_bytes=3 * MIB, rng=relay.rng)
    assert expect_http(relay, Signal.TRACES, other.SerializeToString(), {200}, what="3 MiB attribute",
                       message=other) == 200

    at_limit = sized_traces(LIMIT, relay.rng)
    assert expect_grpc(relay, Signal.TRACES, at_limit.SerializeToString(), {OK}, what="exactly the limit",
                       message=at_limit) == OK
    over = sized_traces(LIMIT + 1, relay.rng)
    expect_grpc(relay, Signal.TRACES, over.SerializeToString(), {EXHAUSTED}, what="one byte over the limit")
    at_limit = sized_traces(LIMIT, relay.rng)
    expect_http(relay, Signal.TRACES, at_limit.SerializeToString(), {200}, what="exactly the limit",
                message=at_limit)
    expect_http(relay, Signal.TRACES, over.SerializeToString(), {413}, what="one byte over the limit")

    five = traces_request(1, attribute_bytes=5 * MIB, rng=relay.rng).SerializeToString()
    expect_grpc(relay, Signal.TRACES, five, {EXHAUSTED}, what="5 MiB attribute")
    expect_http(relay, Signal.TRACES, five, {413}, what="5 MiB attribute")

    assert_still_serving(relay)
    # The big one arrived whole.
    spans = {s.span_id: s for r in relay.sink.requests[Signal.TRACES] for rs in r.resource_spans
             for ss in rs.scope_spans for s in ss.spans}
    arrived = spans[span_ids(valid)[0]]
    assert len(arrived.attributes[0].value.string_value) == 3 * MIB


def test_a_million_tiny_attributes(relay):
    million = 1_000_000
    # Each an explicitly empty key: 4 bytes apiece, 4 MB in all, under the 4 MiB limit.
    span_id = relay.rng.randbytes(8)
    under = traces_bytes(span_bytes(span_id) + ld(9, ld(1, b"")) * million)
    assert len(under) < LIMIT
    code = expect_grpc(relay, Signal.TRACES, under, {OK, INVALID, EXHAUSTED}, what="a million empty attributes")
    span_id = relay.rng.randbytes(8)
    under = traces_bytes(span_bytes(span_id) + ld(9, ld(1, b"")) * million)
    status = expect_http(relay, Signal.TRACES, under, {200, 400, 413}, what="a million empty attributes")
    assert (code == OK) == (status == 200)
    # A million one-letter keys with an int value: over the limit.
    over = traces_bytes(span_bytes(relay.rng.randbytes(8)) + ld(9, key_value(b"a", vi(3, 1))) * million)
    assert len(over) > LIMIT
    expect_grpc(relay, Signal.TRACES, over, {EXHAUSTED}, what="a million int attributes")
    relay.cases += 1
    statuses = raw_exchange(relay.http_port, http_head(PATH[Signal.TRACES], f"Content-Type: {PROTOBUF}",
                                                       f"Content-Length: {len(over)}") + over, first_only=True)
    assert statuses == [413], statuses
    # Compressed, the same million attributes are small on the wire and must be cut off inflating.
    zipped = zlib.compressobj(6, zlib.DEFLATED, 31)
    body = zipped.compress(over) + zipped.flush()
    assert len(body) < LIMIT
    expect_http(relay, Signal.TRACES, body, {413}, headers={"Content-Encoding": "gzip"},
                what="a million attributes, gzip")
    assert_still_serving(relay)


INVALID_UTF8 = {
    "stray continuation byte": b"bad\x80name",
    "0xff": b"\xff",
    "overlong slash": b"\xc0\xaf",
    "encoded surrogate": b"\xed\xa0\x80",
    "truncated sequence": b"abc\xe2\x82",
    "beyond U+10FFFF": b"\xf4\x90\x80\x80",
}


@pytest.mark.parametrize("bad", list(INVALID_UTF8), ids=list(INVALID_UTF8))
def test_invalid_utf8_in_string_fields(relay, bad):
    text = INVALID_UTF8[bad]
    payloads = {
        "span name": (Signal.TRACES, traces_bytes(span_bytes(b"\x01" * 8, name=text))),
        "attribute key": (Signal.TRACES, traces_bytes(span_bytes(b"\x02" * 8, attributes=(key_value(text),)))),
        "string value": (Signal.TRACES, traces_bytes(span_bytes(
            b"\x03" * 8, attributes=(key_value(b"k", any_string(text)),)))),
        "resource attribute": (Signal.TRACES, traces_bytes(
            span_bytes(b"\x04" * 8), resource_attributes=(key_value(b"service.name", any_string(text)),))),
        "scope name": (Signal.TRACES, traces_bytes(span_bytes(b"\x05" * 8), scope_name=text)),
        # ResourceMetrics.scope_metrics.metrics[].name
        "metric name": (Signal.METRICS, ld(1, ld(2, ld(2, ld(1, text))))),
        # ResourceLogs.scope_logs.log_records[].body.string_value
        "log body": (Signal.LOGS, ld(1, ld(2, ld(2, ld(5, any_string(text)))))),
    }
    for field, (signal, data) in payloads.items():
        expect_grpc(relay, signal, data, {INVALID}, what=f"invalid UTF-8 ({bad}) in {field}")
        expect_http(relay, signal, data, {400}, what=f"invalid UTF-8 ({bad}) in {field}")
    assert_still_serving(relay)


def group(field: int, inner: bytes = b"") -> bytes:
    """An unknown group field (wire types 3 and 4): deprecated, but valid protobuf."""
    return varint(field << 3 | 3) + inner + varint(field << 3 | 4)


def test_unknown_group_fields_are_skipped_not_refused(relay):
    """A valid request with unknown groups in a span, an attribute and the request: accepted
    and delivered, as the protobuf parser accepts it (the scanner used to answer UNAVAILABLE)."""
    llm = (key_value(b"gen_ai.request.model", any_string(b"openai/gpt-4o")) + group(77, vi(1, 5)),
           key_value(b"gen_ai.usage.input_tokens", vi(3, 100)))  # AnyValue.int_value
    for index, (transport, send) in enumerate((("gRPC", expect_grpc), ("HTTP", expect_http))):
        span = span_bytes(bytes([0x60 + index]) * 8, attributes=llm) + group(99, group(100, vi(1, 1)))
        data = traces_bytes(span) + group(1000)
        allowed = {OK} if send is expect_grpc else {200}
        send(relay, Signal.TRACES, data, allowed, what=f"unknown groups over {transport}")
    assert_still_serving(relay)


def header_config(grpc_port: int, health: int, sink: Sink, headers: str) -> str:
    return (f"receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc_port}\n"
            f"exporters:\n  otlp:\n    endpoint: {sink.endpoint}\n    tls: {{insecure: true}}\n"
            f"    headers:\n{headers}"
            f"extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\n"
            f"service:\n  extensions: [health_check]\n  pipelines:\n    traces:\n      receivers: [otlp]\n"
            f"      exporters: [otlp]\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{free_port()}\n")


def validate(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "validate.yaml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "relay", "validate", "--config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_a_header_value_ending_in_a_newline_is_stripped_with_a_warning(tmp_path):
    """A token read from a Kubernetes Secret ends in a newline: the relay sends it without, and
    says so; upper-case gRPC metadata keys are lower-cased, as the collector does."""
    sink = Sink().start()
    grpc_port, health = distinct_ports(2)
    text = header_config(grpc_port, health, sink, '      Authorization: "Bearer s3cret-token\\n"\n'
                                                   "      X-Tenant: acme\n")
    relay = None
    try:
        checked = validate(tmp_path, text)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        relay = RelayProcess(text, tmp_path, health).start()
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        export = channel.unary_unary(Signal.TRACES.method)
        export(traces_request(2).SerializeToString(), timeout=CALL_TIMEOUT)
        channel.close()
        assert sink.wait_for(Signal.TRACES, 2, timeout=CALL_TIMEOUT), "the export never reached the sink"
        metadata = sink.metadata[-1]
        assert metadata["authorization"] == "Bearer s3cret-token" and metadata["x-tenant"] == "acme"
        warned = [line for line in relay.log_lines() if line.get("header") == "Authorization"]
        assert warned and warned[0]["level"] == "warning", relay.log_text()
        assert "s3cret-token" not in relay.log_text()
    finally:
        if relay is not None:
            relay.stop()
        sink.stop()


@pytest.mark.parametrize("value", ["Bearer a\\u0001b", "Bearer a\\nInjected: 1", "caf\\u00e9"])
def test_a_header_value_a_transport_cannot_carry_is_a_config_error_naming_the_key(tmp_path, value):
    text = header_config(free_port(), free_port(), Sink(), f'      x-token: "{value}"\n')
    checked = validate(tmp_path, text)
    output = checked.stdout + checked.stderr
    assert checked.returncode == 1, output
    assert "headers::x-token" in output and "Traceback" not in output
    assert "Bearer a" not in output and "caf" not in output  # the value is never quoted


def test_an_exporter_error_is_one_readable_line_never_a_dump(tmp_path):
    """A downstream's multi-line answer quoting object reprs reaches the log and the client as
    one line: the downstream's code and words, without the reprs."""
    sink = Sink().start()
    sink.fail_with(grpc.StatusCode.INVALID_ARGUMENT,
                   "rejected:\n  <app.validate.Checker object at 0x7f3a2c1b9e50>\n\tdebug = {\n  x\n}")
    grpc_port, health = distinct_ports(2)
    text = header_config(grpc_port, health, sink, "      x-tenant: acme\n").replace(
        "    tls: {insecure: true}\n",
        "    tls: {insecure: true}\n    sending_queue: {enabled: false}\n    retry_on_failure: {enabled: false}\n")
    relay = RelayProcess(text, tmp_path, health).start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(Signal.TRACES.method)(traces_request(2).SerializeToString(), timeout=CALL_TIMEOUT)
        channel.close()
        assert refused.value.code() == INVALID
        logged = [line["error"] for line in relay.log_lines() if line.get("msg") == "export failed"]
        assert logged, relay.log_text()
        for message in (refused.value.details(), logged[0]):
            assert message.startswith("downstream answered INVALID_ARGUMENT: rejected:"), message
            assert "\n" not in message and "\t" not in message and "0x7f3a" not in message, message
    finally:
        relay.stop()
        sink.stop()


RESOURCE_SPANS = '{"scopeSpans": [{"spans": [{"traceId": "%s", "spanId": "%s", "name": "twice"}]}]}' % (
    "0a" * 16, "0b" * 8)


@pytest.mark.parametrize("body, key", [
    (f'{{"resourceSpans": [{RESOURCE_SPANS}], "resourceSpans": [{RESOURCE_SPANS}]}}', "resourceSpans"),
    (f'{{"resourceSpans": [{RESOURCE_SPANS}], "resource_spans": [{RESOURCE_SPANS}]}}', "resource_spans"),
    ('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "%s", "traceId": "%s"}]}]}]}' % (
        "0a" * 16, "0c" * 16), "traceId"),
])
def test_json_with_a_key_given_twice_is_refused_naming_it(relay, body, key):
    """The last of two equal keys used to win, and the spans under the first vanished with a 200."""
    relay.cases += 1
    status, _, answer = relay.post(PATH[Signal.TRACES], body.encode(), JSON)
    assert status == 400, (status, answer[:200])
    assert key in otlpjson.decode(answer, status_pb2.Status).message
    assert_still_serving(relay)


@pytest.mark.parametrize("what, span", [
    ("an 8-byte trace_id", span_bytes(b"\x31" * 8, trace_id=b"\x07" * 8)),
    ("no trace_id", ld(2, b"\x32" * 8) + ld(5, b"no trace")),
    ("a 4-byte span_id", span_bytes(b"\x33" * 4)),
    ("a 16-byte parent_span_id", span_bytes(b"\x34" * 8) + ld(4, b"\x01" * 16)),
    ("a link with a 3-byte span_id", span_bytes(b"\x35" * 8) + ld(13, ld(1, b"\x07" * 16) + ld(2, b"abc"))),
])
def test_spans_with_ids_of_the_wrong_length_are_refused(relay, what, span):
    """Forwarded, such a span made a collector downstream refuse its whole request, other
    clients' batched spans with it."""
    good = span_bytes(b"\x36" * 8)
    data = ld(1, ld(2, ld(2, good) + ld(2, span)))  # the bad span second, in one scope
    relay.cases += 1
    code, details = relay.export(Signal.TRACES, data)
    assert code == INVALID, (what, code, details)
    assert "resource_spans[0].scope_spans[0].spans[1]" in details, details
    expect_http(relay, Signal.TRACES, data, {400}, what=what)
    assert_still_serving(relay)


def test_a_request_for_another_signals_service_is_not_forwarded_as_garbage(relay):
    """ExportMetricsServiceRequest bytes parse as traces too, as spans with ids of any length."""
    metrics = metrics_request().SerializeToString()
    relay.cases += 1
    code, details = relay.export(Signal.TRACES, metrics)
    assert code == INVALID, (code, details)
    expect_http(relay, Signal.TRACES, metrics, {400}, what="metrics to /v1/traces")
    assert_still_serving(relay)


def cost_total(relay) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{relay.prometheus_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("genops_openrouter_cost_total{"))


def test_poisoned_costs_and_token_counts_never_move_the_cost_counter_back_or_to_infinity(relay):
    """Each reported cost or token count below once made genops_openrouter_cost_total go down,
    become +Inf for ever, jump by trillions, or count a string as 0 while saying reported."""
    model = key_value(b"gen_ai.request.model", any_string(b"openai/gpt-4o"))
    poisons = [("a negative cost", ld(4, struct.pack("<d", -5.0))), ("1e308", ld(4, struct.pack("<d", 1e308))),
               ("1e308 again", ld(4, struct.pack("<d", 1e308))), ("+Inf", ld(4, struct.pack("<d", math.inf))),
               ("NaN", ld(4, struct.pack("<d", math.nan))), ("the string 12.5", any_string(b"12.5"))]
    totals = [cost_total(relay)]
    for index, (what, cost) in enumerate(poisons):
        attributes = (model, key_value(b"gen_ai.usage.input_tokens", vi(3, 1000)),
                      key_value(b"gen_ai.usage.cost", cost))
        expect_grpc(relay, Signal.TRACES, traces_bytes(span_bytes(bytes([0x70 + index]) * 8, attributes=attributes)),
                    {OK}, what=what)
    infinite_tokens = (model, key_value(b"gen_ai.usage.input_tokens", ld(4, struct.pack("<d", math.inf))))
    expect_grpc(relay, Signal.TRACES, traces_bytes(span_bytes(b"\x7f" * 8, attributes=infinite_tokens)), {OK},
                what="infinite input tokens")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the connector flushes every 200 ms
        totals.append(cost_total(relay))
        if totals[-1] > totals[0] + 12:
            break
        time.sleep(0.2)
    assert all(math.isfinite(total) for total in totals), totals
    assert totals == sorted(totals), totals
    # "12.5" is booked as 12.5; the others at the list price of 1000 input tokens, cents at most.
    assert 12.5 <= totals[-1] - totals[0] < 12.6, totals
    assert_still_serving(relay)


def alias_bomb() -> str:
    """Nine levels of nine aliases: a few hundred bytes that expand to 387 million strings."""
    lines, previous = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'], "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\nreceivers: *i\n"


HOSTILE_CONFIGS = {
    "an alias bomb": (alias_bomb().encode(), "expands to more than 1,000,000 values"),
    "deep nesting": (b"receivers: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested more than 64 levels deep"),
    "deep mappings": (b"receivers: " + b"{a: " * 3000 + b"1" + b"}" * 3000 + b"\n", "nested more than 64 levels"),
    "Latin-1 bytes": ("receivers: {otlp: {}}\n# caf\xe9\n".encode("latin-1"), "not UTF-8 (byte 0xe9 at offset 27)"),
    "more than 4 MiB": (b"# " + b"x" * (4 * 1024 * 1024) + b"\n", "larger than 4 MiB"),
    "a 3 MB bad value": (b'exporters:\n  otlp:\n    endpoint: "' + b"x" * 3_000_000 + b'"\n', "more characters)"),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", list(HOSTILE_CONFIGS) + ["/dev/zero", "a FIFO"])
def test_hostile_config_files_fail_in_one_bounded_line(tmp_path, case, command):
    """Each once cost minutes, gigabytes, a traceback, an endless read or a 50 MB error line."""
    if case == "/dev/zero":
        path, expected = "/dev/zero", "not a regular file"
    elif case == "a FIFO":
        path, expected = str(tmp_path / "fifo"), "not a regular file"
        os.mkfifo(path)
    else:
        data, expected = HOSTILE_CONFIGS[case]
        path = str(tmp_path / "hostile.yaml")
        Path(path).write_bytes(data)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "relay", command, "--config", path], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-2000:]
    assert "Traceback" not in output and expected in output, output[:2000]
    assert path in output  # the error names the file
    assert max(len(line) for line in output.splitlines()) < 2000, "an error line quotes too much"
    print(f"{case}: {command} refused it in {time.monotonic() - started:.1f} s")


def llm_spans_request(spans: int, first_id: int) -> bytes:
    model = key_value(b"gen_ai.request.model", any_string(b"openai/gpt-4o"))
    tokens = key_value(b"gen_ai.usage.input_tokens", vi(3, 1000))
    padding = key_value(b"prompt", any_string(b"p" * 300))
    body = b"".join(ld(2, span_bytes((first_id + n).to_bytes(8, "big"), attributes=(model, tokens, padding)))
                    for n in range(spans))
    return ld(1, ld(2, body))


@pytest.mark.parametrize("exporter_limit, sink_limit", [(4 * MIB, 200 * 1024), (100 * 1024, 4 * MIB)])
def test_requests_grown_by_enrichment_are_split_not_dropped(tmp_path, exporter_limit, sink_limit):
    """genops adds attributes to every LLM span, so a request can leave larger than it came.
    Sent whole, a downstream with a 4 MiB limit answered RESOURCE_EXHAUSTED and acknowledged
    spans were dropped as permanent. Now the exporter splits what exceeds max_request_size, and
    halves what a downstream refuses as too large."""
    sink = Sink(max_receive_bytes=sink_limit).start()
    grpc_port, health = distinct_ports(2)
    text = (f"receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc_port}\n"
            f"processors:\n  genops: {{}}\n"
            f"exporters:\n  otlp:\n    endpoint: {sink.endpoint}\n    tls: {{insecure: true}}\n"
            f"    max_request_size: {exporter_limit}\n"
            f"extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\n"
            f"service:\n  extensions: [health_check]\n  pipelines:\n    traces:\n      receivers: [otlp]\n"
            f"      processors: [genops]\n      exporters: [otlp]\n"
            f"  telemetry:\n    metrics:\n      address: 127.0.0.1:{free_port()}\n")
    relay = RelayProcess(text, tmp_path, health).start()
    try:
        data = llm_spans_request(800, 1)  # about 330 KB in, larger once enriched
        assert len(data) > min(exporter_limit, sink_limit)
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        channel.unary_unary(Signal.TRACES.method)(data, timeout=CALL_TIMEOUT)
        channel.close()
        assert sink.wait_for(Signal.TRACES, 800, timeout=CALL_TIMEOUT), (sink.count(Signal.TRACES), relay.log_text())
        assert sorted(int.from_bytes(i, "big") for i in sink.span_ids()) == list(range(1, 801))
        sizes = [r.ByteSize() for r in sink.requests[Signal.TRACES]]
        assert len(sizes) > 1 and max(sizes) <= min(exporter_limit, sink_limit), sizes
        assert not [line for line in relay.log_lines() if "dropped" in line.get("msg", "")], relay.log_text()
    finally:
        relay.stop()
        sink.stop()


def test_gzip_bombs(relay):
    gib_of_zeros = gzip_of_zeros(1024 * MIB)
    assert len(gib_of_zeros) < LIMIT    # small on the wire: only inflating finds it too large
    expect_http(relay, Signal.TRACES, gib_of_zeros, {413}, headers={"Content-Encoding": "gzip"},
                what="1 GiB of zeros, gzip")
    # The same inflated past the limit as a deflate body (zlib framing), and as a valid request.
    deflated = zlib.compress(bytes(64 * MIB), 9)
    expect_http(relay, Signal.TRACES, deflated, {413}, headers={"Content-Encoding": "deflate"},
                what="64 MiB of zeros, deflate")
    big = traces_request(1, attribute_bytes=16 * MIB, rng=relay.rng).SerializeToString()
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    expect_http(relay, Signal.TRACES, packer.compress(big) + packer.flush(), {413},
                headers={"Content-Encoding": "gzip"}, what="a valid 16 MiB request, gzip")
    # Broken compression is the client's fault.
    expect_http(relay, Signal.TRACES, gzip.compress(traces_request(2).SerializeToString())[:-12], {400},
                headers={"Content-Encoding": "gzip"}, what="truncated gzip")
    expect_http(relay, Signal.TRACES, b"\x1f\x8b\x08\x00garbage", {400}, headers={"Content-Encoding": "gzip"},
                what="corrupt gzip")
    expect_http(relay, Signal.TRACES, traces_request(1).SerializeToString(), {400},
                headers={"Content-Encoding": "br"}, what="an unsupported encoding")

    # gRPC: the channel compresses with grpc-encoding gzip; the relay must bound the inflated size.
    expect_grpc(relay, Signal.TRACES, big, {EXHAUSTED, INVALID}, compressed=True, what="a valid 16 MiB request, gzip")
    expect_grpc(relay, Signal.TRACES, bytes(16 * MIB), {EXHAUSTED, INVALID}, compressed=True,
                what="16 MiB of zeros, gzip")
    expect_grpc(relay, Signal.TRACES, bytes(4096), {INVALID}, compressed=True, what="4 KiB of zeros, gzip")
    small = traces_request(4, rng=relay.rng)
    expect_grpc(relay, Signal.TRACES, small.SerializeToString(), {OK}, compressed=True, what="a valid request, gzip",
                message=small)
    assert_still_serving(relay)


def test_oversize_messages(relay):
    payload = traces_request(1, attribute_bytes=5 * MIB, rng=relay.rng).SerializeToString()
    for size in (5 * MIB, 32 * MIB):
        data = traces_request(1, attribute_bytes=size, rng=relay.rng).SerializeToString()
        expect_grpc(relay, Signal.TRACES, data, {EXHAUSTED}, what=f"{size // MIB} MiB")
    path = PATH[Signal.TRACES]
    content_type = f"Content-Type: {PROTOBUF}"

    def exchange(what: str, data: bytes, **kwargs) -> list[int]:
        relay.cases += 1
        statuses = raw_exchange(relay.http_port, data, **kwargs)
        assert statuses, f"{what}: no answer"
        assert all(status < 500 for status in statuses), (what, statuses)
        return statuses

    # Honest Content-Length over the limit.
    assert exchange("5 MiB", http_head(path, content_type, f"Content-Length: {len(payload)}") + payload,
                    first_only=True) == [413]
    # Content-Length claims 5 MiB, the client sends 1 KiB and stalls: refused without waiting for the rest.
    assert exchange("claimed 5 MiB, sent 1 KiB", http_head(path, content_type, f"Content-Length: {5 * MIB}")
                    + payload[:1024], first_only=True) == [413]
    # Content-Length claims 100 bytes and 5 MiB follow: the body is the first 100 bytes (a truncated
    # request, 400), the rest is not HTTP (400, then the server hangs up).
    assert decoded(Signal.TRACES, payload[:100]) is None
    statuses = exchange("claimed 100 bytes, sent 5 MiB",
                        http_head(path, content_type, "Content-Length: 100") + payload)
    assert statuses[0] == 400 and set(statuses) == {400}, statuses
    # Chunked: no length up front, so the bytes must be counted as they come.
    assert exchange("5 MiB chunked", http_head(path, content_type, "Transfer-Encoding: chunked")
                    + chunked(payload), first_only=True) == [413]
    # One chunk that claims a TiB.
    assert exchange("a chunk claiming 1 TiB", http_head(path, content_type, "Transfer-Encoding: chunked")
                    + b"10000000000\r\n" + payload, first_only=True) in ([413], [400])
    # Framing that cannot be trusted at all.
    assert exchange("Content-Length and chunked", http_head(path, content_type, "Content-Length: 10",
                                                            "Transfer-Encoding: chunked") + chunked(payload[:64]),
                    first_only=True) == [400]
    assert exchange("a chunk size that is not hex", http_head(path, content_type, "Transfer-Encoding: chunked")
                    + b"zz\r\nhello\r\n0\r\n\r\n", first_only=True) == [400]
    assert exchange("a Content-Length that is not a number", http_head(path, content_type,
                                                                      "Content-Length: abc") + b"abc",
                    first_only=True) == [400]
    assert exchange("a negative Content-Length", http_head(path, content_type, "Content-Length: -5"),
                    first_only=True) == [400]
    # gzip-compressed and chunked, inflating past the limit.
    assert exchange("gzip bomb, chunked", http_head(path, content_type, "Content-Encoding: gzip",
                                                    "Transfer-Encoding: chunked")
                    + chunked(gzip_of_zeros(64 * MIB)), first_only=True) == [413]
    assert_still_serving(relay)


def test_slowloris_clients_do_not_starve_a_normal_one(relay):
    path = PATH[Signal.TRACES]
    stop = threading.Event()
    dribblers: list[tuple[socket.socket, bytes]] = []
    stallers: list[socket.socket] = []
    try:
        for i in range(50):
            sock = socket.create_connection(("127.0.0.1", relay.http_port), timeout=5)
            head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {PROTOBUF}\r\n"
                    + "".join(f"X-Slow-{n}: {i}\r\n" for n in range(40))).encode()   # never the blank line
            dribblers.append((sock, head))
        for i in range(50):
            sock = socket.create_connection(("127.0.0.1", relay.http_port), timeout=5)
            framing = "Content-Length: 100000" if i % 2 else "Transfer-Encoding: chunked"
            body = b"\x0a\x80\x80" if i % 2 else b"186a0\r\n\x0a\x80\x80"            # never the rest
            sock.sendall(http_head(path, f"Content-Type: {PROTOBUF}", framing) + body)
            stallers.append(sock)
        relay.cases += 100

        rounds = [0]

        def dribble() -> None:
            while not stop.is_set():
                at = rounds[0]
                for sock, head in dribblers:
                    if at < len(head):
                        try:
                            sock.send(head[at:at + 1])
                        except OSError:
                            pass
                rounds[0] = at + 1
                stop.wait(0.02)

        dribbler = threading.Thread(target=dribble, daemon=True)
        dribbler.start()
        # Every dribbler is a few header bytes in before the normal client comes.
        deadline = time.monotonic() + 10
        while rounds[0] < 10 and time.monotonic() < deadline:
            stop.wait(0.01)
        assert rounds[0] >= 10

        # Each call below ends at CALL_TIMEOUT: a relay held up by the slow clients fails it.
        request = traces_request(3, rng=relay.rng)
        status, _, answer = relay.post(path, request.SerializeToString())
        assert status == 200, answer
        relay.accepted(Signal.TRACES, request)
        json_request = traces_request(3, rng=relay.rng)
        assert relay.post(path, otlpjson.encode(json_request), JSON)[0] == 200
        relay.accepted(Signal.TRACES, json_request)
        grpc_request = traces_request(3, rng=relay.rng)
        assert relay.export(Signal.TRACES, grpc_request.SerializeToString())[0] == OK
        relay.accepted(Signal.TRACES, grpc_request)
        assert relay.process.health()[0] == 200
        # The slow clients were all still pending while the normal one was served.
        assert all(_still_open(sock) for sock, _ in dribblers)
        assert all(_still_open(sock) for sock in stallers)
    finally:
        stop.set()
        for sock in [s for s, _ in dribblers] + stallers:
            sock.close()
    assert_still_serving(relay)


def _still_open(sock: socket.socket) -> bool:
    """No answer and no hang-up from the server: recv would block."""
    sock.setblocking(False)
    try:
        sock.recv(1)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None, "multipart/form-data",
                                          "application/octet-stream", "application/x-protobufx"])
def test_wrong_content_types(relay, content_type):
    body = traces_request(2).SerializeToString()
    for signal in Signal:
        relay.cases += 1
        status, _, answer = relay.post(PATH[signal], body, content_type)
        assert status == 415, (signal, content_type, status, answer)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"])
def test_wrong_methods(relay, method):
    body = traces_request(2).SerializeToString()
    for signal in Signal:
        relay.cases += 1
        status, _, _ = relay.post(PATH[signal], body, PROTOBUF, method=method)
        assert status == 405, (signal, method, status)


def test_a_method_the_http_parser_does_not_know(relay):
    # aiohttp's parser refuses a method outside its table before the relay sees the request.
    relay.cases += 1
    assert relay.post(PATH[Signal.TRACES], b"", PROTOBUF, method="BREW")[0] in (400, 405)


def test_content_types_and_methods_leave_the_relay_serving(relay):
    # A body that is the other encoding than its type says is bad data, not a bad type.
    expect_http(relay, Signal.TRACES, traces_request(2).SerializeToString(), {400}, content_type=JSON,
                what="protobuf labelled JSON")
    expect_http(relay, Signal.TRACES, otlpjson.encode(traces_request(2)), {400}, content_type=PROTOBUF,
                what="JSON labelled protobuf")
    assert_still_serving(relay)


def _span_json(**fields) -> dict:
    span = {"traceId": "0a" * 16, "spanId": "0b" * 8, "name": "s"}
    span.update(fields)
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


def _attribute_json(value) -> dict:
    return _span_json(attributes=[{"key": "k", "value": value}])


JSON_CASES = {
    "traceId a number": (Signal.TRACES, _span_json(traceId=12345)),
    "traceId too short": (Signal.TRACES, _span_json(traceId="0a0b")),
    "spanId not hex": (Signal.TRACES, _span_json(spanId="zz" * 8)),
    "spans an object": (Signal.TRACES, {"resourceSpans": [{"scopeSpans": [{"spans": {"name": "s"}}]}]}),
    "resourceSpans a string": (Signal.TRACES, {"resourceSpans": "all of them"}),
    "attributes an object": (Signal.TRACES, _span_json(attributes={"k": "v"})),
    "attribute value a string": (Signal.TRACES, _attribute_json("plain")),
    "attribute value a number": (Signal.TRACES, _attribute_json(7)),
    "attribute value a list": (Signal.TRACES, _attribute_json([1, 2])),
    "attribute value a bool": (Signal.TRACES, _attribute_json(True)),
    "intValue abc": (Signal.TRACES, _attribute_json({"intValue": "abc"})),
    "intValue 1.5": (Signal.TRACES, _attribute_json({"intValue": 1.5})),
    "doubleValue a word": (Signal.TRACES, _attribute_json({"doubleValue": "lots"})),
    "two values at once": (Signal.TRACES, _attribute_json({"stringValue": "a", "intValue": "1"})),
    "arrayValue values a string": (Signal.TRACES, _attribute_json({"arrayValue": {"values": "x"}})),
    "bytesValue not base64": (Signal.TRACES, _attribute_json({"bytesValue": "!!!"})),
    "span kind an unknown name": (Signal.TRACES, _span_json(kind="SPAN_KIND_BOGUS")),
    "span kind beyond int32": (Signal.TRACES, _span_json(kind=2**40)),
    "status code an unknown name": (Signal.TRACES, _span_json(status={"code": "STATUS_CODE_BOGUS"})),
    "severityNumber an unknown name": (Signal.LOGS, {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"severityNumber": "SEVERITY_NUMBER_BOGUS", "body": {"stringValue": "x"}}]}]}]}),
    "aggregationTemporality an unknown name": (Signal.METRICS, {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "m", "sum": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_BOGUS",
                              "dataPoints": [{"asInt": "1"}]}}]}]}]}),
    "asInt a word": (Signal.METRICS, {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "m", "gauge": {"dataPoints": [{"asInt": "abc"}]}}]}]}]}),
    "startTimeUnixNano a word": (Signal.TRACES, _span_json(startTimeUnixNano="soon")),
    "name a number": (Signal.TRACES, _span_json(name=5)),
    "100k nulls": (Signal.TRACES, {"resourceSpans": [None] * 100_000}),
    "100k null attributes": (Signal.TRACES, _span_json(attributes=[None] * 100_000)),
    "top level an array": (Signal.TRACES, [_span_json()]),
}

JSON_BODIES = {
    "nested arrays 200 deep": b'{"resourceSpans":' + b"[" * 200 + b"]" * 200 + b"}",
    "nested arrays 100k deep": b'{"resourceSpans":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nested objects 100k deep": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "non-UTF-8 bytes in a name": b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\xff\xfe\x80"}]}]}]}',
    "a lone surrogate escape": (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"' + b"0a" * 16
                                + b'","spanId":"' + b"0b" * 8 + b'","name":"\\ud800"}]}]}]}'),
    "NaN": b'{"resourceSpans":NaN}',
    "not JSON": b"<ExportTraceServiceRequest/>",
    "empty": b"",
    "unterminated": b'{"resourceSpans":[{"scopeSpans":[',
}


@pytest.mark.parametrize("case", list(JSON_CASES) + list(JSON_BODIES))
def test_json_with_wrong_types(relay, case):
    if case in JSON_CASES:
        signal, tree = JSON_CASES[case]
        body = json.dumps(tree).encode()
    else:
        signal, body = Signal.TRACES, JSON_BODIES[case]
    expect_http(relay, signal, body, {400}, content_type=JSON, what=f"JSON: {case}")


def test_json_cases_leave_the_relay_serving(relay):
    assert_still_serving(relay)


def test_the_relay_log_stays_json_lines_without_echoing_payloads(relay):
    """Bad input is logged in the relay's own format, and never echoed whole into the log."""
    lines = relay.process.log_text().splitlines()
    foreign = [line for line in lines if not line.startswith("{")]
    long_lines = sorted((len(line) for line in lines if len(line) > 4096), reverse=True)
    assert not foreign and not long_lines, (
        f"{len(foreign)} log lines are not JSON, starting {foreign[:3]!r}; "
        f"{len(long_lines)} log lines are over 4 KiB, the longest {long_lines[:1]} characters")


def test_the_relay_survived_everything(relay, request, capsys):
    report(request, capsys, f"hostile inputs: {relay.cases} hostile requests in all, "
                            f"{sum(relay.fuzzed.values())} of them generated {relay.fuzzed}")
    assert relay.alive(), relay.log_tail()
    assert relay.runs == 1, "the relay had to be restarted: a case killed it"
    assert relay.process.health()[0] == 200
    assert_still_serving(relay)
    # One refusal of each kind of its own, so the counters below do not depend on which cases ran.
    expect_grpc(relay, Signal.TRACES, b"\xff\xff", {INVALID}, what="garbage")
    expect_http(relay, Signal.TRACES, b"\xff\xff", {400}, what="garbage")
    expect_http(relay, Signal.TRACES, bytes(LIMIT + 1), {413}, what="one byte too many")
    with urllib.request.urlopen(f"http://127.0.0.1:{relay.metrics_port}/metrics", timeout=10) as answer:
        scrape = answer.read().decode()
    refusals = [line for line in scrape.splitlines() if line.startswith("otelcol_receiver_refused_requests_total{")]
    assert any('status="INVALID_ARGUMENT"' in line for line in refusals)
    assert any('status="400"' in line for line in refusals) and any('status="413"' in line for line in refusals)
    # Bad input is never answered as the relay's own failure.
    for bad in ('status="INTERNAL"', 'status="UNKNOWN"', 'status="UNAVAILABLE"', 'status="5'):
        assert not [line for line in refusals if bad in line], (bad, refusals)
    errors = [line for line in relay.process.log_lines() if line.get("level") in ("error", "critical")]
    assert not errors, errors[:5]
    # Nothing the attack left behind (half-read bodies, stalled connections) holds up a clean stop.
    relay.retired = True
    assert relay.stop() == 0, relay.log_tail()
    assert relay.process.log_lines()[-1]["msg"] == "relay stopped"

