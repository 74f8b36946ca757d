"""A real relay process between a raw OTLP/gRPC client and recording sinks."""

from __future__ import annotations

import random
import signal
import threading
import urllib.request

import grpc
import pytest

from relay.signals import Signal
from tests.support import RelayProcess, Sink, free_port, passthrough_config, traces_request


def span_ids(request) -> list[bytes]:
    return [s.span_id for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


class Client:
    def __init__(self, port: int):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.export = self.channel.unary_unary(Signal.TRACES.method)

    def send(self, payload: bytes, **kwargs):
        return self.export(payload, timeout=10, **kwargs)

    def close(self):
        self.channel.close()


@pytest.fixture
def relay_factory(tmp_path):
    started = []

    def start(config_for_ports, **kwargs):
        port, health = free_port(), free_port()
        process = RelayProcess(config_for_ports(port, health), tmp_path, health, **kwargs).start()
        process.port = port
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


def test_fan_out_to_two_exporters(relay_factory, sink):
    other = Sink().start()
    try:
        relay = relay_factory(lambda p, h: passthrough_config(
            p, {"otlp/a": sink.endpoint, "otlp_grpc/b": other.endpoint}, h))
        client, rng = Client(relay.port), random.Random(1)
        sent = []
        for _ in range(20):
            request = traces_request(25, rng=rng)
            client.send(request.SerializeToString())
            sent += span_ids(request)
        client.close()
        # Acknowledged once queued; each exporter's queue delivers on its own.
        assert sink.wait_for(Signal.TRACES, len(sent)) and other.wait_for(Signal.TRACES, len(sent))
        assert sorted(sink.span_ids()) == sorted(sent)
        assert sorted(other.span_ids()) == sorted(sent)
    finally:
        other.stop()


# Without a queue or retries, the client hears each downstream's outcome.
SYNCHRONOUS = "    sending_queue:\n      enabled: false\n    retry_on_failure:\n      enabled: false\n"


def test_fan_out_with_one_downstream_down_and_no_queue(relay_factory, sink):
    down_port = free_port()  # nothing listens here
    relay = relay_factory(lambda p, h: passthrough_config(
        p, {"otlp/up": sink.endpoint, "otlp/down": f"127.0.0.1:{down_port}"}, h,
        extra_exporter_settings="    timeout: 1s\n" + SYNCHRONOUS))
    client, rng = Client(relay.port), random.Random(2)
    sent, codes = [], set()
    for _ in range(10):
        request = traces_request(10, rng=rng)
        sent += span_ids(request)
        with pytest.raises(grpc.RpcError) as refused:
            client.send(request.SerializeToString())
        codes.add(refused.value.code())
    client.close()
    # The client is told to retry (nothing is acknowledged that one branch lost) ...
    assert codes == {grpc.StatusCode.UNAVAILABLE}
    # ... and the healthy branch still got every span.
    assert sorted(sink.span_ids()) == sorted(sent)


def test_fan_out_with_one_downstream_down_queues_for_it(relay_factory, sink):
    down_port, metrics = free_port(), free_port()
    relay = relay_factory(lambda p, h: passthrough_config(
        p, {"otlp/up": sink.endpoint, "otlp/down": f"127.0.0.1:{down_port}"}, h, metrics_port=metrics,
        extra_exporter_settings="    timeout: 1s\n"))
    client, rng = Client(relay.port), random.Random(2)
    sent = []
    for _ in range(10):
        request = traces_request(10, rng=rng)
        client.send(request.SerializeToString())  # acknowledged: both queues took it
        sent += span_ids(request)
    client.close()
    assert sink.wait_for(Signal.TRACES, len(sent))
    assert sorted(sink.span_ids()) == sorted(sent)
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as answer:
        scrape = answer.read().decode()
    # The down branch holds all ten requests, retrying; none was dropped.
    assert 'otelcol_exporter_queue_size{exporter="otlp/down"} 10.0' in scrape
    assert 'otelcol_exporter_queue_capacity{exporter="otlp/down"} 1000.0' in scrape
    assert 'otelcol_exporter_send_failed_spans_total{exporter="otlp/down"' not in scrape


def test_bad_input_is_refused_and_the_relay_keeps_serving(relay_factory, sink):
    relay = relay_factory(lambda p, h: passthrough_config(p, {"otlp": sink.endpoint}, h))
    client, rng = Client(relay.port), random.Random(3)
    valid = traces_request(5, rng=rng).SerializeToString()

    cases = {
        "garbage": (b"\xff\xfe\xfd not a protobuf \x00\x01", grpc.StatusCode.INVALID_ARGUMENT),
        "truncated": (valid[:-7], grpc.StatusCode.INVALID_ARGUMENT),
        "oversize": (traces_request(1, rng=rng).SerializeToString() + b"\x0a\x80\x80\x80\x03" + b"\x00" * (6 * 1024 * 1024),
                     grpc.StatusCode.RESOURCE_EXHAUSTED),
    }
    details = {}
    for name, (payload, expected) in cases.items():
        with pytest.raises(grpc.RpcError) as refused:
            client.send(payload)
        assert refused.value.code() == expected, name
        details[name] = refused.value.details()
    assert details["garbage"].startswith("cannot parse ExportTraceServiceRequest")
    assert details["truncated"].startswith("cannot parse ExportTraceServiceRequest")

    client.send(valid)
    assert sink.wait_for(Signal.TRACES, 5)
    assert sink.requests[Signal.TRACES][-1].SerializeToString() == valid
    # An empty request succeeds and forwards nothing.
    client.send(b"")
    client.close()
    assert len(sink.requests[Signal.TRACES]) == 1


def test_sigterm_under_load_exits_cleanly_and_loses_nothing_acknowledged(tmp_path, sink):
    port, health = free_port(), free_port()
    relay = RelayProcess(passthrough_config(port, {"otlp": sink.endpoint}, health), tmp_path, health).start()
    acked: list[bytes] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(seed: int) -> None:
        client, rng = Client(port), random.Random(seed)
        for _ in range(5000):  # bounded; the relay going away ends it much sooner
            if stop.is_set():
                break
            request = traces_request(50, rng=rng)
            try:
                client.send(request.SerializeToString())
            except grpc.RpcError:
                continue
            with lock:
                acked.extend(span_ids(request))
        client.close()

    workers = [threading.Thread(target=load, args=(seed,)) for seed in range(4)]
    for worker in workers:
        worker.start()
    try:
        assert sink.wait_for(Signal.TRACES, 50 * 40, timeout=30), "load never got going"
        relay.process.send_signal(signal.SIGTERM)
        status = relay.process.wait(timeout=5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
        relay.stop(signal.SIGKILL)
    assert status == 0
    assert len(acked) >= 50 * 40
    missing = set(acked) - set(sink.span_ids())
    assert not missing, f"{len(missing)} acknowledged spans never reached the sink"
    messages = [line["msg"] for line in relay.log_lines()]
    assert "shutting down" in messages and messages[-1] == "relay stopped"


def test_self_telemetry_and_logs(tmp_path, sink):
    port, health, metrics = free_port(), free_port(), free_port()
    secret = "hc-secret-4f9a1b"
    config = passthrough_config(port, {"otlp": sink.endpoint}, health, metrics_port=metrics,
                                extra_exporter_settings="    headers:\n      x-honeycomb-team: ${HONEYCOMB_API_KEY}\n"
                                + SYNCHRONOUS)
    relay = RelayProcess(config, tmp_path, health, env={"HONEYCOMB_API_KEY": secret}).start()
    try:
        client, rng = Client(port), random.Random(4)
        client.send(traces_request(7, rng=rng).SerializeToString())
        sink.fail_with(grpc.StatusCode.UNAUTHENTICATED, "bad key")
        with pytest.raises(grpc.RpcError) as refused:
            client.send(traces_request(3, rng=rng).SerializeToString())
        sink.fail_with(grpc.StatusCode.UNAVAILABLE, "busy", retry_after=7.0)
        with pytest.raises(grpc.RpcError) as throttled:
            client.send(traces_request(2, rng=rng).SerializeToString())
        client.close()
        assert refused.value.code() == grpc.StatusCode.INTERNAL
        assert throttled.value.code() == grpc.StatusCode.UNAVAILABLE
        assert dict(throttled.value.trailing_metadata())["google.rpc.retryinfo-bin"]
        assert sink.metadata[0]["x-honeycomb-team"] == secret

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as answer:
            scrape = answer.read().decode()
        assert 'otelcol_receiver_accepted_spans_total{receiver="otlp",transport="grpc"} 7.0' in scrape
        assert 'otelcol_exporter_sent_spans_total{exporter="otlp"} 7.0' in scrape
        assert 'otelcol_exporter_send_failed_spans_total{exporter="otlp",retryable="false"} 3.0' in scrape
        assert 'otelcol_exporter_send_failed_spans_total{exporter="otlp",retryable="true"} 2.0' in scrape
        assert 'otelcol_receiver_refused_spans_total{reason="PermanentError",receiver="otlp",transport="grpc"} 3.0' in scrape
        assert ('otelcol_receiver_refused_requests_total{receiver="otlp",signal="traces",status="INTERNAL",'
                'transport="grpc"} 1.0') in scrape
        assert ('otelcol_receiver_refused_requests_total{receiver="otlp",signal="traces",status="UNAVAILABLE",'
                'transport="grpc"} 1.0') in scrape
        for family in ("otelcol_process_cpu_seconds_total", "otelcol_process_resident_memory_bytes",
                       "otelcol_process_uptime_seconds_total"):
            assert f"\n{family} " in scrape, family
    finally:
        assert relay.stop() == 0

    lines = relay.log_lines()
    assert lines and all({"ts", "level", "msg"} <= line.keys() for line in lines)
    failures = [line for line in lines if line["msg"] == "export failed"]
    assert failures and failures[0]["component"] == "otlp" and failures[0]["retryable"] is False
    assert secret not in relay.log_text()
