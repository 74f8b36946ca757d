"""The prometheusremotewrite exporter against a fake remote write endpoint on 127.0.0.1.

The endpoint is a real aiohttp server that snappy-decompresses (block format) and
decodes every WriteRequest, and answers with the status each test asks for. Names
and labels are checked twice: by a table, and against what the ``prometheus``
exporter exposes for the same request.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import struct
from dataclasses import dataclass

import cramjam
import pytest
from aiohttp import web
from opentelemetry.proto.metrics.v1 import metrics_pb2

from relay import status
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import ConfigError, PermanentError, RetryableError
from relay.exporters import prometheus
from relay.exporters import prometheusremotewrite as remote_write
from relay.exporters.prometheus.transport import PrometheusTransport
from relay.exporters.prometheusremotewrite import proto
from relay.exporters.prometheusremotewrite.convert import Converter, write_requests
from relay.pipeline.registry import Registry
from relay.receivers import otlp
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.test_exporter_grpc import _write_with_cryptography
from tests.test_prometheus_exporter import (
    DELTA,
    NO_RECORDED_VALUE,
    hist,
    metric,
    number,
    request,
)

ID = ComponentID.parse("prometheusremotewrite")
S = 1_000_000_000
T = 1_700_000_000_123_456_789  # a point's time; 1_700_000_000_123 in milliseconds
MS = T // 1_000_000
SCOPE = {"otel_scope_name": "genops", "otel_scope_version": "1.0"}  # the empty schema URL is left out
JOB = {"job": "app", "instance": "i-1"}
STALE_BITS = 0x7FF0000000000002


# --- the fake endpoint -----------------------------------------------------------------------

@dataclass
class Received:
    headers: dict
    body: bytes
    raw: bytes
    write: object
    status: int = 204


class Receiver:
    """Records each POST decoded; ``answers`` are (status, headers) given in order, then 204."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None):
        self.ssl_context = ssl_context
        self.received: list[Received] = []
        self.answers: list[tuple[int, dict]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/v1/write", self._write)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{'localhost' if self.ssl_context else '127.0.0.1'}:{self.port}/api/v1/write"

    async def _write(self, request: web.Request) -> web.Response:
        body = await request.read()
        raw = bytes(cramjam.snappy.decompress_raw(body))
        received = Received(dict(request.headers), body, raw, proto.WriteRequest.FromString(raw))
        self.received.append(received)
        if self.answers:
            received.status, headers = self.answers.pop(0)
            return web.Response(status=received.status, headers=headers, text=f"answer {received.status}")
        return web.Response(status=204)

    def series(self) -> dict:
        """{(name, frozenset of the other labels): [(timestamp ms, value)]} over every request."""
        out: dict = {}
        for received in self.received:
            for ts in received.write.timeseries:
                labels = {label.name: label.value for label in ts.labels}
                name = labels.pop("__name__")
                out.setdefault((name, frozenset(labels.items())), []).extend(
                    (s.timestamp, s.value) for s in ts.samples)
        return out

    def values(self) -> dict:
        """{(name, frozenset of labels): value} of series holding one sample each."""
        out = {}
        for key, samples in self.series().items():
            assert len(samples) == 1, (key, samples)
            out[key] = samples[0][1]
        return out


QUIET = {"sending_queue": {"enabled": False}, "retry_on_failure": {"enabled": False}}


def config(endpoint: str, **settings) -> remote_write.Config:
    cfg, problems = decode(remote_write.Config, {"endpoint": endpoint, **QUIET, **settings})
    assert problems == []
    return cfg


@dataclass
class Outcome:
    receiver: Receiver
    errors: list
    telemetry: SelfMetrics

    def counter(self, name: str, **labels) -> float:
        return self.telemetry.registry.get_sample_value(name, {"exporter": str(ID), **labels}) or 0


def export(*requests, answers=(), receiver_ssl=None, hooks=None, host=None, **settings) -> Outcome:
    """Sends each request through a started exporter; errors are collected, not raised."""
    telemetry = SelfMetrics()

    async def run():
        receiver = await Receiver(receiver_ssl).start()
        receiver.answers = list(answers)
        cfg = config(receiver.url, **settings)
        exporter = remote_write.create(Settings(ID, telemetry, **{"host": host} if host else {}), cfg,
                                       **{"retry_hooks": hooks} if hooks else {})
        errors = []
        await exporter.start()
        try:
            for req in requests:
                try:
                    await exporter.consume(req)
                except Exception as error:  # noqa: BLE001 - the test looks at it
                    errors.append(error)
        finally:
            await exporter.shutdown()
            await receiver.stop()
        return Outcome(receiver, errors, telemetry)

    return asyncio.run(run())


def key(name: str, **labels) -> tuple:
    return name, frozenset({**SCOPE, **JOB, **labels}.items())


# --- protocol --------------------------------------------------------------------------------

def test_a_post_is_remote_write_1_0_with_its_headers():
    out = export(request(metric("g", "gauge", number(1.5, t=T))), headers={"X-Scope-OrgID": "team-a"})
    assert out.errors == []
    (received,) = out.receiver.received
    headers = received.headers
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert headers["User-Agent"].startswith("genops-relay")
    assert headers["X-Scope-OrgID"] == "team-a"
    # Block format: the body is the compressed message itself, no stream identifier.
    assert not received.body.startswith(b"\xff\x06\x00\x00sNaPpY")
    assert bytes(cramjam.snappy.compress_raw(received.raw)) == received.body
    assert out.counter("otelcol_exporter_sent_metric_points_total") == 1
    assert out.counter("otelcol_exporter_prometheusremotewrite_sent_series_total") == 2  # g and target_info


def test_the_wire_form_has_the_spec_field_numbers():
    write = proto.WriteRequest()
    series = write.timeseries.add()
    series.labels.add(name="__name__", value="up")
    series.samples.add(value=1.0, timestamp=5)
    write.metadata.add(type=proto.GAUGE, metric_family_name="up", help="h", unit="u")
    # timeseries=1 {labels=1 {name=1, value=2}, samples=2 {value=1 double, timestamp=2 varint}},
    # metadata=3 {type=1, metric_family_name=2, help=4, unit=5}.
    assert write.SerializeToString() == (
        b"\x0a\x1d" + b"\x0a\x0e" + b"\x0a\x08__name__" + b"\x12\x02up"
        + b"\x12\x0b" + b"\x09" + struct.pack("<d", 1.0) + b"\x10\x05"
        + b"\x1a\x0c" + b"\x08\x02" + b"\x12\x02up" + b"\x22\x01h" + b"\x2a\x01u")


# --- names and labels ------------------------------------------------------------------------

@pytest.mark.parametrize("otlp_metric, settings, names", [
    (metric("http.requests", "sum", number(3, t=T), unit="{request}"), {}, ["http_requests_total"]),
    (metric("http.requests", "sum", number(3, t=T), unit="{request}"), {"namespace": "genops"},
     ["genops_http_requests_total"]),
    (metric("http.requests", "sum", number(3, t=T), unit="{request}"), {"add_metric_suffixes": False},
     ["http_requests"]),
    (metric("sent", "sum", number(3, t=T), unit="By"), {}, ["sent_bytes_total"]),
    (metric("queue.size", "sum", number(3, t=T), monotonic=False, unit="{item}"), {}, ["queue_size"]),
    (metric("memory.usage", "gauge", number(3, t=T), unit="By"), {}, ["memory_usage_bytes"]),
    (metric("cpu.utilization", "gauge", number(0.5, t=T), unit="1"), {}, ["cpu_utilization_ratio"]),
    (metric("request.duration", "histogram", hist([1, 2], [0.5], 1.0, t=T), unit="s"), {"namespace": "ns"},
     ["ns_request_duration_seconds_bucket", "ns_request_duration_seconds_count",
      "ns_request_duration_seconds_sum"]),
    (metric("rpc.latency", "summary", metrics_pb2.SummaryDataPoint(time_unix_nano=T, count=1, sum=2.0),
            unit="ms"), {}, ["rpc_latency_milliseconds_count", "rpc_latency_milliseconds_sum"]),
])
def test_names_are_the_prometheus_exporters(otlp_metric, settings, names):
    out = export(request(otlp_metric), target_info={"enabled": False}, **settings)
    assert sorted({name for name, _ in out.receiver.series()}) == names


def cross_check_request():
    histogram = hist([1, 2, 0], [0.5, 2.5], 3.25, t=T, **{"http.route": "/chat", "1st": "x"})
    summary = metrics_pb2.SummaryDataPoint(time_unix_nano=T, count=4, sum=10.0)
    summary.quantile_values.add(quantile=0.5, value=2.0)
    summary.quantile_values.add(quantile=0.99, value=4.5)
    req = request(
        metric("requests", "sum", number(3, t=T, **{"http.status_code": 200}), unit="{request}",
               description="Requests"),
        metric("cost", "sum", number(0.0125, t=T, **{"a.b": "dot", "a_b": "under"}), unit="{USD}"),
        metric("cpu.utilization", "gauge", number(0.25, t=T, core="0"), unit="1"),
        metric("queue.size", "sum", number(7, t=T), monotonic=False),
        metric("request.duration", "histogram", histogram, unit="s"),
        metric("rpc.latency", "summary", summary, unit="ms"),
        resource={"service.name": "api", "service.namespace": "shop", "service.instance.id": "pod-7",
                  "host.name": "node-1"},
        scope_attributes={"library.kind": "sdk"}, schema_url="https://opentelemetry.io/schemas/1.26.0")
    return req


def prometheus_exporter_samples(req, **settings) -> dict:
    """{(name, frozenset of non-empty labels): value} that the prometheus exporter exposes."""
    cfg, problems = decode(prometheus.Config, {"endpoint": "127.0.0.1:0", **settings})
    assert problems == []
    transport = PrometheusTransport(ComponentID.parse("prometheus"), cfg, SelfMetrics())
    asyncio.run(transport.send(req))
    return {(s.name, frozenset((k, v) for k, v in s.labels.items() if v)): s.value
            for family in transport.collector.collect() for s in family.samples}


@pytest.mark.parametrize("shared", [
    {},
    {"namespace": "genops_openrouter"},
    {"resource_to_telemetry_conversion": {"enabled": True}},
    {"add_metric_suffixes": False, "namespace": "raw"},
    # A namespace a metric name cannot hold as written: both exporters make the same "_" of it.
    {"namespace": "genops-relay"},
    {"add_metric_suffixes": False, "namespace": "genops-relay"},
])
def test_series_are_those_the_prometheus_exporter_exposes(shared):
    external = {"region": "eu", "replica": "a"}
    req = cross_check_request()
    exposed = prometheus_exporter_samples(req, const_labels=external, **shared)
    written = export(req, external_labels=external, **shared).receiver.values()
    # The prometheus exporter leaves its const labels off target_info; remote write puts
    # external labels on every series.
    expected = {(name, labels | frozenset(external.items())): value for (name, labels), value in exposed.items()}
    assert written == expected
    assert len(written) == 14


def test_job_instance_scope_and_external_labels_of_one_series():
    req = request(metric("g", "gauge", number(1, t=T, **{"http.method": "GET", "empty": ""})),
                  resource={"service.name": "api", "service.namespace": "shop", "service.instance.id": "pod-7"})
    series = export(req, external_labels={"cluster": "c1", "job": "ignored"},
                    target_info={"enabled": False}).receiver.series()
    assert series == {("g", frozenset({"otel_scope_name": "genops", "otel_scope_version": "1.0",
                                       "job": "shop/api", "instance": "pod-7", "http_method": "GET",
                                       "cluster": "c1"}.items())): [(MS, 1.0)]}


def test_labels_are_sorted_by_name_unique_and_never_empty():
    req = request(metric("g", "gauge", number(1, t=T, Zeta="z", alpha="a", **{"b.c": "1", "b_c": "2", "e": ""})))
    (received,) = export(req).receiver.received
    for ts in received.write.timeseries:
        names = [label.name for label in ts.labels]
        assert names == sorted(names) and len(set(names)) == len(names)
        assert all(label.value for label in ts.labels)
    g = next(ts for ts in received.write.timeseries if any(lb.value == "g" for lb in ts.labels))
    # "Z" sorts before "_" and "_" before "a": byte order, __name__ included.
    assert [label.name for label in g.labels] == ["Zeta", "__name__", "alpha", "b_c", "instance", "job",
                                                  "otel_scope_name", "otel_scope_version"]
    assert {lb.name: lb.value for lb in g.labels}["b_c"] == "1;2"


def test_target_info_carries_the_resource_at_its_latest_time():
    req = request(metric("a", "gauge", number(1, t=T)), metric("b", "gauge", number(1, t=T + 5 * S)),
                  resource={"service.name": "app", "service.instance.id": "i-1", "host.name": "node-1"})
    series = export(req, namespace="ns", external_labels={"cluster": "c1"}).receiver.series()
    assert series[("ns_target_info", frozenset({**JOB, "host_name": "node-1", "cluster": "c1"}.items()))] == [
        (MS + 5000, 1.0)]
    disabled = export(req, target_info={"enabled": False}).receiver.series()
    assert {name for name, _ in disabled} == {"a", "b"}


# --- values and time -------------------------------------------------------------------------

def test_timestamps_are_milliseconds_and_samples_of_a_series_are_in_time_order():
    req = request(metric("g", "gauge", number(3, t=T + 2 * S), number(1, t=T), number(2, t=T + S)))
    series = export(req, target_info={"enabled": False}).receiver.series()
    assert series == {key("g"): [(MS, 1.0), (MS + 1000, 2.0), (MS + 2000, 3.0)]}


def test_counter_gauge_histogram_and_summary_values():
    summary = metrics_pb2.SummaryDataPoint(time_unix_nano=T, count=4, sum=10.0)
    summary.quantile_values.add(quantile=0.5, value=2.0)
    summary.quantile_values.add(quantile=1, value=9.0)
    req = request(metric("c", "sum", number(5, t=T)), metric("g", "gauge", number(-2.5, t=T)),
                  metric("h", "histogram", hist([1, 2, 0, 4], [0.5, 1, 1e6], 20.5, t=T)),
                  metric("s", "summary", summary))
    values = export(req, target_info={"enabled": False}).receiver.values()
    assert values == {
        key("c_total"): 5.0, key("g"): -2.5,
        key("h_bucket", le="0.5"): 1.0, key("h_bucket", le="1"): 3.0, key("h_bucket", le="1e+06"): 3.0,
        key("h_bucket", le="+Inf"): 7.0, key("h_sum"): 20.5, key("h_count"): 7.0,
        key("s", quantile="0.5"): 2.0, key("s", quantile="1"): 9.0, key("s_sum"): 10.0, key("s_count"): 4.0,
    }


def test_a_histogram_without_a_sum_has_no_sum_series():
    point = metrics_pb2.HistogramDataPoint(time_unix_nano=T, count=2, bucket_counts=[2, 0], explicit_bounds=[1.0])
    values = export(request(metric("h", "histogram", point)), target_info={"enabled": False}).receiver.values()
    assert values == {key("h_bucket", le="1"): 2.0, key("h_bucket", le="+Inf"): 2.0, key("h_count"): 2.0}


def test_no_recorded_value_is_the_stale_marker():
    gone = number(0, t=T, flags=NO_RECORDED_VALUE)
    hist_gone = metrics_pb2.HistogramDataPoint(time_unix_nano=T, flags=NO_RECORDED_VALUE, explicit_bounds=[1.0])
    values = export(request(metric("g", "gauge", gone), metric("h", "histogram", hist_gone)),
                    target_info={"enabled": False}).receiver.values()
    assert set(values) == {key("g"), key("h_bucket", le="1"), key("h_bucket", le="+Inf"), key("h_sum"),
                           key("h_count")}
    for value in values.values():
        # Prometheus' StaleNaN, not any NaN: a plain NaN would be stored as a value.
        assert struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_BITS


def test_a_plain_nan_stays_a_value():
    values = export(request(metric("g", "gauge", number(math.nan, t=T))), target_info={"enabled": False})
    (value,) = values.receiver.values().values()
    assert math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] != STALE_BITS


def test_what_remote_write_cannot_carry_is_dropped_counted_and_logged_once(component_log):
    exp = metrics_pb2.Metric(name="latency")
    exp.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    exp.exponential_histogram.data_points.add(time_unix_nano=T, count=1)
    bad_buckets = metrics_pb2.HistogramDataPoint(time_unix_nano=T, count=1, bucket_counts=[1], explicit_bounds=[1.0])
    req = request(
        metric("delta.requests", "sum", number(1, t=T), number(2, t=T + S), temporality=DELTA),
        metric("delta.duration", "histogram", hist([1, 0], [1.0], 0.5, t=T), temporality=DELTA),
        exp,
        metric("unspecified", "sum", number(1, t=T), temporality=metrics_pb2.AGGREGATION_TEMPORALITY_UNSPECIFIED),
        metric("broken", "histogram", bad_buckets),
        metric("untimed", "gauge", number(1, t=0)),
        metric("...", "gauge", number(1, t=T)),
        metric("kept", "gauge", number(1, t=T)))
    out = export(req, req, target_info={"enabled": False})
    assert out.errors == []
    assert set(out.receiver.series()) == {key("kept")}
    dropped = {reason: out.counter("otelcol_exporter_prometheusremotewrite_dropped_points_total", reason=reason)
               for reason in ("delta_temporality", "unsupported_type", "unspecified_temporality",
                              "invalid_point", "missing_timestamp", "invalid_name")}
    assert dropped == {"delta_temporality": 6, "unsupported_type": 2, "unspecified_temporality": 2,
                       "invalid_point": 2, "missing_timestamp": 2, "invalid_name": 2}
    lines = [r for r in component_log.records if r.getMessage() == "data points dropped"]
    assert sorted(r.fields["reason"] for r in lines) == sorted(dropped)  # once per reason, not per request
    assert {r.fields["reason"]: r.fields["metric"] for r in lines}["delta_temporality"] == "delta.requests"


def test_a_request_with_nothing_to_write_sends_nothing():
    out = export(request(metric("d", "sum", number(1, t=T), temporality=DELTA)))
    assert out.errors == [] and out.receiver.received == []


def test_metadata_is_sent_when_asked_for():
    req = request(metric("requests", "sum", number(1, t=T), unit="{request}", description="Requests served"),
                  metric("h", "histogram", hist([1, 0], [1.0], 0.5, t=T), unit="s"))
    (received,) = export(req, send_metadata=True, target_info={"enabled": False}).receiver.received
    got = {(m.type, m.metric_family_name, m.help, m.unit) for m in received.write.metadata}
    assert got == {(proto.COUNTER, "requests_total", "Requests served", "{request}"),
                   (proto.HISTOGRAM, "h_seconds", "", "s")}
    (received,) = export(req, target_info={"enabled": False}).receiver.received
    assert list(received.write.metadata) == []


# --- splitting -------------------------------------------------------------------------------

def test_a_request_is_split_into_write_requests_under_max_batch_size_bytes():
    points = [number(i, t=T, series=f"s{i:03d}") for i in range(300)]
    limit = 4000
    out = export(request(metric("g", "gauge", *points)), max_batch_size_bytes=limit, target_info={"enabled": False})
    assert out.errors == []
    assert len(out.receiver.received) > 5
    assert all(len(r.raw) <= limit for r in out.receiver.received)
    series = out.receiver.series()
    assert len(series) == 300 and all(len(samples) == 1 for samples in series.values())
    assert sorted(v for ((_, v),) in series.values()) == [float(i) for i in range(300)]
    assert out.counter("otelcol_exporter_prometheusremotewrite_sent_series_total") == 300


def test_one_series_bigger_than_the_limit_goes_alone():
    converter = Converter()
    big = converter.convert(request(metric("g", "gauge", number(1, t=T, blob="x" * 500)),
                                    metric("h", "gauge", number(1, t=T)))).series
    requests = write_requests(big, [], max_bytes=300)
    assert [len(r.timeseries) for r in requests] == [1, 2]  # g alone; h and target_info together
    assert requests[0].ByteSize() > 300 >= requests[1].ByteSize()


# --- answers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("code, headers, retryable, retry_after", [
    (500, {}, True, None),
    (503, {}, True, None),
    (503, {"Retry-After": "7"}, True, 7.0),
    (429, {"Retry-After": "3"}, True, 3.0),
    (400, {}, False, None),
    (404, {}, False, None),
    (413, {}, False, None),
])
def test_answers_are_classified_as_the_spec_says(code, headers, retryable, retry_after):
    out = export(request(metric("g", "gauge", number(1, t=T))), answers=[(code, headers)])
    (error,) = out.errors
    assert isinstance(error, RetryableError if retryable else PermanentError)
    assert f"HTTP {code}: answer {code}" in str(error)
    if retryable:
        assert error.retry_after == retry_after
    assert out.counter("otelcol_exporter_send_failed_metric_points_total", retryable=str(retryable).lower()) == 1


def test_the_retry_waits_at_least_as_long_as_retry_after():
    waits = []

    async def wait(delay):
        waits.append(delay)
        return False  # no shutdown: retry at once, the test needs no real wait

    out = export(request(metric("g", "gauge", number(1, t=T))), answers=[(429, {"Retry-After": "30"}), (503, {})],
                 hooks={"wait": wait}, retry_on_failure={"initial_interval": "10ms", "max_interval": "20ms"})
    assert out.errors == []
    assert len(out.receiver.received) == 3  # two refusals, then the 204
    assert waits[0] >= 30 and waits[1] < 1
    assert out.counter("otelcol_exporter_sent_metric_points_total") == 1


def test_with_the_queue_a_retried_request_is_not_overtaken():
    async def no_wait(delay):
        return False

    async def run():
        receiver = await Receiver().start()
        receiver.answers = [(503, {}), (503, {})]
        cfg, problems = decode(remote_write.Config, {"endpoint": receiver.url, "target_info": {"enabled": False}})
        assert problems == []
        exporter = remote_write.create(Settings(ID, SelfMetrics()), cfg, retry_hooks={"wait": no_wait})
        await exporter.start()
        try:
            for i in range(5):
                await exporter.consume(request(metric("g", "gauge", number(i, t=T + i * S))))
            async with asyncio.timeout(10):
                while sum(r.status == 204 for r in receiver.received) < 5:
                    await asyncio.sleep(0.01)
        finally:
            await exporter.shutdown()
            await receiver.stop()
        return receiver

    receiver = asyncio.run(run())
    accepted = [r.write.timeseries[0].samples[0].timestamp for r in receiver.received if r.status == 204]
    assert accepted == [MS + i * 1000 for i in range(5)]
    assert [r.status for r in receiver.received][:3] == [503, 503, 204]


def test_nothing_listening_is_retryable():
    async def run():
        receiver = await Receiver().start()
        url = receiver.url
        await receiver.stop()
        exporter = remote_write.create(Settings(ID, SelfMetrics()), config(url))
        await exporter.start()
        try:
            await exporter.consume(request(metric("g", "gauge", number(1, t=T))))
        except Exception as error:  # noqa: BLE001
            return error
        finally:
            await exporter.shutdown()

    error = asyncio.run(run())
    assert isinstance(error, RetryableError) and "remote write failed" in str(error)


def test_retry_after_as_an_http_date():
    assert status.retry_after_from_http("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 10) == 10.0
    assert status.retry_after_from_http("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 + 10) == 0.0
    assert status.retry_after_from_http("soon") is None and status.retry_after_from_http(None) is None


def test_https_with_the_ca_file(tmp_path):
    files = _write_with_cryptography(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files["cert"], files["key"])
    out = export(request(metric("g", "gauge", number(1, t=T))), receiver_ssl=server,
                 tls={"ca_file": str(files["ca"])})
    assert out.errors == [] and len(out.receiver.received) == 1
    unknown_ca = export(request(metric("g", "gauge", number(1, t=T))), receiver_ssl=server)
    (error,) = unknown_ca.errors
    assert isinstance(error, RetryableError) and "certificate" in str(error).lower()


def test_header_values_are_never_logged(component_log):
    export(request(metric("g", "gauge", number(1, t=T))), answers=[(400, {})],
           headers={"Authorization": "Bearer s3cret"})
    assert component_log.records and "s3cret" not in component_log.text


# --- config ----------------------------------------------------------------------------------

def test_config_defaults():
    cfg, problems = decode(remote_write.Config, {"endpoint": "http://127.0.0.1:9090/api/v1/write"})
    assert problems == []
    assert (cfg.headers, cfg.namespace, cfg.external_labels, cfg.resource_to_telemetry_conversion.enabled,
            cfg.add_metric_suffixes, cfg.target_info.enabled, cfg.send_metadata, cfg.max_batch_size_bytes,
            cfg.timeout, cfg.sending_queue.enabled, cfg.retry_on_failure.enabled) == (
        {}, "", {}, False, True, True, False, 3_000_000, 5.0, True, True)
    # One consumer, so that requests (and their retries) reach the receiver in order.
    assert (cfg.sending_queue.num_consumers, cfg.sending_queue.queue_size) == (1, 1000)
    cfg, _ = decode(remote_write.Config, {"endpoint": "http://h/w", "sending_queue": {"queue_size": 10}})
    assert (cfg.sending_queue.num_consumers, cfg.sending_queue.queue_size) == (1, 10)
    cfg, _ = decode(remote_write.Config, {"endpoint": "http://h/w", "sending_queue": {"num_consumers": 4}})
    assert cfg.sending_queue.num_consumers == 4


LABEL_RULE = "is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
URL_RULE = "must be a full http:// or https:// URL, e.g. http://127.0.0.1:9090/api/v1/write"


@pytest.mark.parametrize("raw, expected", [
    ({}, ["endpoint: required key is missing"]),
    ({"endpoint": "127.0.0.1:9090"}, [f'endpoint: "127.0.0.1:9090" {URL_RULE}']),
    ({"endpoint": "ftp://host/x"}, [f'endpoint: "ftp://host/x" {URL_RULE}']),
    ({"endpoint": "http://host:99999/x"}, [f'endpoint: "http://host:99999/x" {URL_RULE}']),
    ({"external_labels": {"cluster.name": "a", "__x": "b", "ok": "c", "empty": ""}},
     [f"external_labels::cluster.name: {LABEL_RULE}", f"external_labels::__x: {LABEL_RULE}",
      "external_labels::empty: must not be empty (Prometheus drops empty labels)"]),
    ({"headers": {"Content-Type": "text/plain", "bad header": "x", "X-Ok": "y"}},
     ["headers::Content-Type: is set by the remote write protocol and cannot be changed",
      "headers::bad header: not a valid HTTP header name"]),
    ({"max_batch_size_bytes": 0}, ["max_batch_size_bytes: must be at least 1"]),
    ({"tls": {"cert_file": "c.pem"}}, ["tls::key_file: cert_file and key_file must be given together"]),
    ({"timeout": "-1s"}, ['timeout: invalid duration "-1s" (use e.g. "5s", "200ms", "1m")']),
])
def test_invalid_config_names_the_key(raw, expected):
    raw = {"endpoint": "http://127.0.0.1:9090/api/v1/write", **raw} if "endpoint" in raw or raw else raw
    _, problems = decode(remote_write.Config, raw)
    assert [str(p) for p in problems] == expected


def test_a_relay_config_loads_with_the_exporter_in_a_metrics_pipeline():
    registry = Registry().add("receivers", otlp).add("exporters", remote_write)
    text = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
exporters:
  prometheusremotewrite:
    endpoint: http://127.0.0.1:9090/api/v1/write
    namespace: genops
    external_labels: {cluster: eu-1}
    resource_to_telemetry_conversion: {enabled: true}
    timeout: 10s
    retry_on_failure: {max_elapsed_time: 1m}
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheusremotewrite]
"""
    loaded = load(text, registry, env={})
    (pipeline,) = loaded.pipelines
    assert pipeline.signal is Signal.METRICS and pipeline.exporters == [ID]
    cfg = loaded.components["exporters"][ID]
    assert (cfg.namespace, cfg.external_labels, cfg.timeout) == ("genops", {"cluster": "eu-1"}, 10.0)
    assert remote_write.TYPE == "prometheusremotewrite" and remote_write.SIGNALS == (Signal.METRICS,)


def test_a_traces_pipeline_cannot_use_it():
    registry = Registry().add("receivers", otlp).add("exporters", remote_write)
    text = """
receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:0}}}}
exporters: {prometheusremotewrite: {endpoint: "http://127.0.0.1:9090/api/v1/write"}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [prometheusremotewrite]}}}
"""
    with pytest.raises(Exception, match="prometheusremotewrite"):
        load(text, registry, env={})



@pytest.mark.parametrize("settings, names", [
    # What a metric name cannot hold becomes "_", as the prometheus exporter does (and the collector's
    # translator for both); target_info takes the namespace as a label name.
    ({"namespace": "genops-relay"}, ["genops_relay_http_requests_total", "genops_relay_target_info"]),
    ({"namespace": "genops.relay"}, ["genops_relay_http_requests_total", "genops_relay_target_info"]),
    ({"namespace": "genops-relay", "add_metric_suffixes": False},
     ["genops_relay_http_requests", "genops_relay_target_info"]),
])
def test_a_namespace_with_a_dash_is_accepted_and_sanitised(settings, names):
    cfg, problems = decode(remote_write.Config, {"endpoint": "http://127.0.0.1:9090/api/v1/write", **settings})
    assert problems == [] and cfg.namespace == settings["namespace"]
    out = export(request(metric("http.requests", "sum", number(3, t=T), unit="{request}"),
                         resource={"service.name": "app", "service.instance.id": "i-1", "host.name": "n"}),
                 **settings)
    assert sorted({name for name, _ in out.receiver.series()}) == names


# --- auth ------------------------------------------------------------------------------------

def basic_client(username: str, password: str):
    from relay.extensions import basicauth

    cfg, problems = decode(basicauth.Config, {"client_auth": {"username": username, "password": password}})
    assert problems == []
    ext = basicauth.create(Settings(ComponentID.parse("basicauth/rw"), None), cfg)
    asyncio.run(ext.start())
    return ext


def test_auth_names_an_authenticator_whose_header_goes_on_every_post(component_log):
    import base64

    from relay.component import Host

    ext = basic_client("tenant-1", "pa55:word")
    req = request(metric("g", "gauge", number(1, t=T)))
    out = export(req, req, host=Host({ComponentID.parse("basicauth/rw"): ext}),
                 auth={"authenticator": "basicauth/rw"},
                 headers={"X-Scope-OrgID": "acme", "Authorization": "Bearer replaced"})
    assert out.errors == [] and len(out.receiver.received) == 2
    expected = "Basic " + base64.b64encode(b"tenant-1:pa55:word").decode()
    for received in out.receiver.received:
        # The authenticator's header replaces a configured one of the same name.
        assert received.headers["Authorization"] == expected
        assert received.headers["X-Scope-OrgID"] == "acme"
        assert received.headers["Content-Encoding"] == "snappy"  # the protocol's headers stay
    assert "pa55:word" not in component_log.text and expected.split()[1] not in component_log.text


def test_auth_is_an_extension_reference_the_loader_checks():
    from relay.extensions import basicauth

    registry = Registry().add("receivers", otlp).add("exporters", remote_write).add("extensions", basicauth)
    text = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
exporters:
  prometheusremotewrite:
    endpoint: http://127.0.0.1:9090/api/v1/write
    auth:
      authenticator: {name}
extensions:
  basicauth/rw:
    client_auth: {{username: u, password: p}}
service:
  extensions: [basicauth/rw]
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheusremotewrite]
"""
    loaded = load(text.format(name="basicauth/rw"), registry, env={})
    assert loaded.components["exporters"][ID].extension_references() == [
        (("auth", "authenticator"), "basicauth/rw", "basicauth")]
    with pytest.raises(ConfigError) as caught:
        load(text.format(name="sigv4auth"), registry, env={})
    assert [str(p) for p in caught.value.problems] == [
        'exporters::prometheusremotewrite::auth::authenticator: references extension "sigv4auth", which is not '
        "configured under extensions"]


def test_a_server_only_basicauth_cannot_be_an_exporters_authenticator():
    from relay.component import Host
    from relay.extensions import basicauth

    cfg, _ = decode(basicauth.Config, {"htpasswd": {"inline": "u:p"}})
    ext = basicauth.create(Settings(ComponentID.parse("basicauth/in"), None), cfg)
    asyncio.run(ext.start())
    with pytest.raises(ConfigError) as caught:
        remote_write.create(Settings(ID, SelfMetrics(), host=Host({ComponentID.parse("basicauth/in"): ext})),
                            config("http://127.0.0.1:9/api/v1/write", auth={"authenticator": "basicauth/in"}))
    assert str(caught.value) == (
        'exporters::prometheusremotewrite::auth::authenticator: extension "basicauth/in" has no credentials for an '
        "exporter to send (a basicauth extension sends client_auth)")


def test_an_authenticator_header_never_replaces_the_protocols():
    from relay.exporters.prometheusremotewrite.transport import with_auth

    headers = {"X-Tenant": "a", "Authorization": "configured", "Content-Type": "application/x-protobuf"}
    assert with_auth(headers, {"authorization": "Basic x", "content-type": "text/plain"}) == {
        "X-Tenant": "a", "Content-Type": "application/x-protobuf", "authorization": "Basic x"}
