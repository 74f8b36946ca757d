"""No acknowledged data lost: outage, crash, overload, permanent errors, retry delays, shutdown.

The three scenarios are the ones ``genops-relay bench --scenario`` prints;
here their figures are asserted. The rest drive a relay process directly.
"""

from __future__ import annotations

import random
import signal
import time
import urllib.request

import grpc
import pytest

from relay.bench.scenarios import crash, outage, overload
from relay.signals import Signal
from tests.support import RelayProcess, free_port, passthrough_config, traces_request


def test_outage_every_span_arrives():
    result = outage.run()
    assert result["spans_sent"] >= 50_000
    assert result["outage_s"] >= 1.0, result          # the sink really was down for a stretch
    assert result["missing"] == 0, result
    assert result["spans_delivered"] == result["spans_sent"], result
    assert result["duplicates"] >= 0 and result["dropped_by_relay"] == 0, result
    assert result["relay_exit_status"] == 0


def test_crash_every_acknowledged_span_arrives_from_disk():
    result = crash.run()
    # Spans acknowledged before the kill could only have survived on disk: the sink was down.
    assert result["acknowledged_before_kill"] > 0, result
    assert result["spans_acknowledged"] > result["acknowledged_before_kill"], result
    assert result["missing_acknowledged"] == 0, result
    assert result["relay_exit_status"] == 0


def test_overload_is_held_by_the_memory_limiter_and_loses_nothing_acknowledged():
    result = overload.run()
    assert result["peak_rss_mib"] < result["limit_mib"] + result["stated_overhead_mib"], result
    assert set(result["requests"]) <= {"OK", "UNAVAILABLE"}, result
    assert result["requests"].get("UNAVAILABLE", 0) > 0, result   # the limiter had to refuse
    assert result["spans_refused_by_memory_limiter"] > 0, result
    assert result["missing_acknowledged"] == 0, result
    assert result["relay_exit_status"] == 0


# --- one relay process, driven directly -------------------------------------------------

def span_ids(request) -> list[bytes]:
    return [s.span_id for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def send(port: int, request) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        channel.unary_unary(Signal.TRACES.method)(request.SerializeToString(), timeout=10)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()


def metric(text: str, line_prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


RETRY_FAST = ("    retry_on_failure:\n      initial_interval: 10ms\n      max_interval: 50ms\n"
              "      max_elapsed_time: 0s\n")


def relay_with(tmp_path, sink_endpoint: str, settings: str = "", processors: str = "", storage=None,
               name: str = "relay"):
    port, health, metrics = free_port(), free_port(), free_port()
    config = passthrough_config(port, {"otlp": sink_endpoint}, health, metrics_port=metrics,
                                signals=("traces",), extra_exporter_settings=settings)
    if processors:
        config = config.replace("exporters:\n", processors + "exporters:\n", 1).replace(
            "      exporters: [otlp]", "      processors: [batch]\n      exporters: [otlp]")
    if storage is not None:
        config = config.replace("service:\n", f"  file_storage:\n    directory: {storage}\n"
                                               "service:\n").replace(
            "extensions: [health_check]", "extensions: [health_check, file_storage]")
    workdir = tmp_path / name
    workdir.mkdir()
    process = RelayProcess(config, workdir, health)
    process.port, process.metrics = port, metrics
    return process


def test_permanent_downstream_error_is_dropped_logged_and_counted_not_retried(tmp_path, sink):
    relay = relay_with(tmp_path, sink.endpoint, RETRY_FAST).start()
    sink.fail_with(grpc.StatusCode.INVALID_ARGUMENT, "bad data")
    try:
        rng = random.Random(5)
        for _ in range(3):
            send(relay.port, traces_request(4, rng=rng))  # acknowledged: queued
        failed = 'otelcol_exporter_send_failed_spans_total{exporter="otlp",retryable="false"}'
        assert wait_for(lambda: metric(scrape(relay.metrics), failed) == 12)
        # Counted only after the single attempt each: a retry would have shown up first.
        assert sink.refused == 3
    finally:
        assert relay.stop() == 0
    drops = [line for line in relay_lines(relay) if line["msg"] == "export failed; data dropped"]
    assert len(drops) == 3 and all(line["retryable"] is False for line in drops)
    assert "INVALID_ARGUMENT" in drops[0]["error"]


def relay_lines(relay) -> list[dict]:
    import json

    return [json.loads(line) for line in relay.log_text().splitlines() if line.startswith("{")]


def test_retry_waits_the_delay_retry_info_asks_for(tmp_path, sink):
    relay = relay_with(tmp_path, sink.endpoint, RETRY_FAST).start()
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "slow down", retry_after=1.5, times=1)
    try:
        send(relay.port, traces_request(2))
        assert sink.wait_for(Signal.TRACES, 2, timeout=20)
    finally:
        assert relay.stop() == 0
    first, second = sink.calls[0], sink.calls[1]
    # The backoff alone would retry within 50 ms; only RetryInfo explains a wait this long.
    assert 1.4 <= second - first < 10.0


def test_shutdown_keeps_undelivered_requests_on_disk_and_replays_them(tmp_path, sink):
    queue_dir = tmp_path / "queue"
    queue_dir.mkdir()
    settings = RETRY_FAST + "    sending_queue:\n      storage: file_storage\n"
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "down for maintenance")
    first = relay_with(tmp_path, sink.endpoint, settings, storage=queue_dir, name="first").start()
    rng = random.Random(6)
    sent = []
    for _ in range(5):
        request = traces_request(10, rng=rng)
        send(first.port, request)
        sent += span_ids(request)
    assert wait_for(lambda: sink.refused >= 5)  # in flight: being retried
    assert first.stop(timeout=8) == 0  # a drain that hung on the retries would be killed at 8 s
    kept = [line for line in relay_lines(first) if line["msg"].startswith("undelivered requests kept on disk")]
    assert kept and kept[0]["requests"] == 5 and kept[0]["items"] == 50

    sink.fail_with(None)
    second = relay_with(tmp_path, sink.endpoint, settings, storage=queue_dir, name="second").start()
    try:
        assert sink.wait_for(Signal.TRACES, 50)
    finally:
        assert second.stop() == 0
    assert sorted(sink.span_ids()) == sorted(sent)
    assert any(line["msg"] == "replaying the persistent queue" for line in relay_lines(second))


def test_shutdown_with_a_memory_queue_counts_and_logs_what_it_could_not_deliver(tmp_path, sink):
    relay = relay_with(tmp_path, sink.endpoint, RETRY_FAST).start()
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "down")
    send(relay.port, traces_request(7))
    assert wait_for(lambda: sink.refused >= 1)
    assert relay.stop() == 0
    lost = [line for line in relay_lines(relay) if line["msg"].startswith("undelivered requests lost at shutdown")]
    assert lost and lost[0]["items"] == 7
    # One last attempt was made during the drain, after the backoff was cut short.
    assert sink.refused >= 2


def test_batch_flushes_on_shutdown_and_the_client_is_acknowledged(tmp_path, sink):
    relay = relay_with(tmp_path, sink.endpoint, RETRY_FAST,
                       "processors:\n  batch:\n    timeout: 30s\n    send_batch_size: 100000\n").start()
    outcome = {}

    def client():
        try:
            send(relay.port, traces_request(9))
            outcome["code"] = grpc.StatusCode.OK
        except grpc.RpcError as error:
            outcome["code"] = error.code()

    import threading

    worker = threading.Thread(target=client)
    worker.start()
    # The request waits in the batch (30 s timeout) until shutdown flushes it.
    pending = 'otelcol_processor_batch_pending_items{processor="batch"}'
    assert wait_for(lambda: metric(scrape(relay.metrics), pending) == 9)
    relay.process.send_signal(signal.SIGTERM)
    assert relay.process.wait(10) == 0
    worker.join(10)
    assert outcome["code"] == grpc.StatusCode.OK
    assert sink.count(Signal.TRACES) == 9


@pytest.mark.parametrize("case", ["missing", "unwritable"])
def test_a_queue_directory_that_cannot_be_used_stops_the_relay_with_a_clear_error(tmp_path, sink, case):
    # sysfs refuses new files even to root, so it stands in for an unwritable volume.
    directory = tmp_path / "no-such-dir" if case == "missing" else "/sys"
    expected = {"missing": f"file_storage: directory {directory} does not exist",
                "unwritable": "file_storage: directory /sys is not writable"}[case]
    relay = relay_with(tmp_path, sink.endpoint, "    sending_queue:\n      storage: file_storage\n",
                       storage=directory)
    relay.health_port = None
    relay.start()
    assert relay.process.wait(20) != 0
    assert expected in relay.log_text()


def test_a_full_queue_disk_refuses_clients_and_keeps_what_it_accepted(tmp_path, sink):
    """``max_size_mib`` bounds the queue file; past it SQLite fails exactly as on a full disk."""
    queue_dir = tmp_path / "queue"
    queue_dir.mkdir()
    relay = relay_with(tmp_path, sink.endpoint,
                       RETRY_FAST + "    sending_queue:\n      storage: file_storage\n", storage=queue_dir)
    relay.config_path.write_text(relay.config_path.read_text().replace(
        f"directory: {queue_dir}\n", f"directory: {queue_dir}\n    max_size_mib: 1\n"))
    sink.fail_with(grpc.StatusCode.UNAVAILABLE, "down")
    relay.start()
    rng = random.Random(8)
    acked, codes = [], []
    try:
        for _ in range(40):  # 40 x ~100 KB: well past the 1 MiB file
            request = traces_request(20, attribute_bytes=100_000, rng=rng)
            try:
                send(relay.port, request)
                acked += span_ids(request)
            except grpc.RpcError as error:
                codes.append(error.code())
        assert acked and codes, (len(acked), codes)
        assert set(codes) == {grpc.StatusCode.UNAVAILABLE}
        text = scrape(relay.metrics)
        assert metric(text, 'otelcol_exporter_enqueue_failed_spans_total{exporter="otlp"}') == 20 * len(codes)
        assert metric(text, 'otelcol_receiver_refused_requests_total{receiver="otlp",signal="traces",'
                            'status="UNAVAILABLE"') == len(codes)
        sink.fail_with(None)
        assert sink.wait_for(Signal.TRACES, len(acked), timeout=30)
    finally:
        assert relay.stop() == 0
    assert set(acked) <= set(sink.span_ids())
    assert any("persistent queue cannot grow" in line.get("error", "") for line in relay_lines(relay))
