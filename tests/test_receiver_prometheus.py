"""The prometheus receiver: exposition -> OTLP conversion, the scrape loop against real
prometheus_client endpoints on 127.0.0.1, failures, shutdown and the config."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE

from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.errors import RetryableError
from relay.receivers import prometheus
from relay.receivers.prometheus.convert import StartTimes, TargetLabels, convert, parse
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import Recorder, free_port

SCRAPE_NS = 1_700_000_000_123_000_000
RECEIVER = "prometheus/test"


# --- conversion ----------------------------------------------------------------------------------------

EXPOSITION = r'''# HELP http_requests_total Requests served, by "method" \\ code.\nSecond line.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="get",path="C:\\dir \"quoted\"\nnext"} 3
# HELP temperature_celsius Current temperature.
# TYPE temperature_celsius gauge
temperature_celsius{room="lab"} -3.5
# HELP latency_seconds Request latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{route="/a",le="0.1"} 2
latency_seconds_bucket{route="/a",le="1.0"} 5
latency_seconds_bucket{route="/a",le="+Inf"} 6
latency_seconds_sum{route="/a"} 7.25
latency_seconds_count{route="/a"} 6
# HELP payload_bytes Payload sizes.
# TYPE payload_bytes summary
payload_bytes{quantile="0.5"} 120
payload_bytes{quantile="0.99"} 900
payload_bytes_sum 4000
payload_bytes_count 20
# TYPE legacy untyped
legacy{kind="x"} 42
no_type_line 7
'''


def attrs(kvs) -> dict:
    return {kv.key: kv.value.string_value for kv in kvs}


def metrics_of(request) -> dict:
    """name -> Metric over every resource (each name appears once in these tests)."""
    found = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                assert metric.name not in found, f"{metric.name} appears twice"
                found[metric.name] = metric
    return found


def convert_text(text: str, target: TargetLabels | None = None, starts: StartTimes | None = None,
                 content_type: str = "", scrape_ns: int = SCRAPE_NS):
    target = target or TargetLabels("app", "10.1.2.3:8000")
    return convert(parse(text, content_type), target, scrape_ns, starts if starts is not None else StartTimes())


def test_counter_keeps_its_exposed_name_help_labels_escapes_and_timestamps():
    conversion = convert_text(EXPOSITION)
    counter = metrics_of(conversion.request)["http_requests_total"]
    assert counter.description == 'Requests served, by "method" \\ code.\nSecond line.'
    assert counter.WhichOneof("data") == "sum"
    assert counter.sum.is_monotonic is True
    assert counter.sum.aggregation_temporality == 2  # cumulative
    first, second = counter.sum.data_points
    assert first.as_double == 1027.0
    assert first.time_unix_nano == 1_395_066_363_000_000_000  # the sample's own timestamp, in ms
    assert first.start_time_unix_nano == first.time_unix_nano  # first seen now
    assert attrs(first.attributes) == {"method": "post", "code": "200"}
    assert second.as_double == 3.0
    assert second.time_unix_nano == SCRAPE_NS  # no timestamp: the scrape's time
    assert attrs(second.attributes) == {"method": "get", "path": 'C:\\dir "quoted"\nnext'}


def test_gauge_untyped_and_untyped_without_type_line_are_gauges():
    found = metrics_of(convert_text(EXPOSITION).request)
    temperature = found["temperature_celsius"]
    assert temperature.description == "Current temperature."
    (point,) = temperature.gauge.data_points
    assert (point.as_double, point.time_unix_nano, attrs(point.attributes)) == (-3.5, SCRAPE_NS, {"room": "lab"})
    assert point.start_time_unix_nano == 0
    for name, value, labels in (("legacy", 42.0, {"kind": "x"}), ("no_type_line", 7.0, {})):
        (point,) = found[name].gauge.data_points
        assert (point.as_double, attrs(point.attributes)) == (value, labels)


def test_histogram_buckets_are_decumulated_with_bounds_from_le():
    histogram = metrics_of(convert_text(EXPOSITION).request)["latency_seconds"]
    assert histogram.description == "Request latency."
    assert histogram.histogram.aggregation_temporality == 2
    (point,) = histogram.histogram.data_points
    assert list(point.explicit_bounds) == [0.1, 1.0]
    assert list(point.bucket_counts) == [2, 3, 1]
    assert point.count == 6
    assert point.HasField("sum") and point.sum == 7.25
    assert attrs(point.attributes) == {"route": "/a"}  # no "le"
    assert point.time_unix_nano == point.start_time_unix_nano == SCRAPE_NS


def test_summary_has_quantiles_sum_and_count():
    summary = metrics_of(convert_text(EXPOSITION).request)["payload_bytes"]
    (point,) = summary.summary.data_points
    assert [(q.quantile, q.value) for q in point.quantile_values] == [(0.5, 120.0), (0.99, 900.0)]
    assert (point.sum, point.count) == (4000.0, 20)
    assert attrs(point.attributes) == {}
    assert point.start_time_unix_nano == SCRAPE_NS


def test_every_sample_is_counted_and_only_the_series_are_converted():
    conversion = convert_text(EXPOSITION)
    assert conversion.samples == 2 + 1 + 5 + 4 + 1 + 1
    assert conversion.skipped == []
    assert Signal.METRICS.count(conversion.request) == 2 + 1 + 1 + 1 + 1 + 1


def test_resource_is_the_job_and_instance_and_target_labels_are_attributes():
    target = TargetLabels("openrouter-service", "openrouter-service:8000", "https", (("env", "prod"),))
    request = convert_text("# TYPE g gauge\ng{a=\"1\"} 1\n", target).request
    (rm,) = request.resource_metrics
    assert attrs(rm.resource.attributes) == {
        "service.name": "openrouter-service", "service.instance.id": "openrouter-service:8000",
        "server.address": "openrouter-service", "server.port": "8000", "url.scheme": "https"}
    assert rm.scope_metrics[0].scope.name == "genops-relay/prometheus"
    assert attrs(rm.scope_metrics[0].metrics[0].gauge.data_points[0].attributes) == {"a": "1", "env": "prod"}


def test_a_loopback_target_has_no_server_address_as_in_the_collector():
    request = convert_text("g 1\n", TargetLabels("app", "127.0.0.1:9090")).request
    assert attrs(request.resource_metrics[0].resource.attributes) == {
        "service.name": "app", "service.instance.id": "127.0.0.1:9090", "server.port": "9090",
        "url.scheme": "http"}


def test_scraped_labels_clashing_with_target_labels_are_kept_as_exported():
    text = 'g{job="inner",instance="x:1",env="dev",exported_env="old",empty=""} 1\n'
    target = TargetLabels("app", "10.0.0.1:80", labels=(("env", "prod"),))
    request = convert_text(text, target).request
    (rm,) = request.resource_metrics
    assert attrs(rm.resource.attributes)["service.name"] == "app"
    assert attrs(rm.resource.attributes)["service.instance.id"] == "10.0.0.1:80"
    assert attrs(rm.scope_metrics[0].metrics[0].gauge.data_points[0].attributes) == {
        "exported_job": "inner", "exported_instance": "x:1", "env": "prod",
        "exported_exported_env": "dev", "exported_env": "old"}


def test_honor_labels_lets_scraped_labels_win_job_and_instance_included():
    text = 'g{job="inner",env="dev"} 1\nh{other="y"} 2\n'
    target = TargetLabels("app", "10.0.0.1:80", labels=(("env", "prod"),), honor_labels=True)
    request = convert_text(text, target).request
    by_job = {attrs(rm.resource.attributes)["service.name"]: rm for rm in request.resource_metrics}
    assert set(by_job) == {"inner", "app"}
    inner = by_job["inner"].scope_metrics[0].metrics[0]
    assert (inner.name, attrs(inner.gauge.data_points[0].attributes)) == ("g", {"env": "dev"})
    outer = by_job["app"].scope_metrics[0].metrics[0]
    assert (outer.name, attrs(outer.gauge.data_points[0].attributes)) == ("h", {"other": "y", "env": "prod"})


def test_openmetrics_created_unit_and_nanosecond_timestamps():
    text = ("# TYPE data_bytes counter\n# UNIT data_bytes bytes\n# HELP data_bytes Data moved.\n"
            'data_bytes_total{dir="in"} 10 1700000000.5\ndata_bytes_created{dir="in"} 1600000000.25 1700000000.5\n'
            "# TYPE build info\nbuild_info{version=\"1.2\"} 1\n# EOF\n")
    found = metrics_of(convert_text(text, content_type=OPENMETRICS_TYPE).request)
    counter = found["data_bytes_total"]
    assert (counter.unit, counter.description) == ("bytes", "Data moved.")
    (point,) = counter.sum.data_points
    assert point.time_unix_nano == 1_700_000_000_500_000_000
    assert point.start_time_unix_nano == 1_600_000_000_250_000_000
    assert attrs(point.attributes) == {"dir": "in"}
    assert attrs(found["build_info"].gauge.data_points[0].attributes) == {"version": "1.2"}


def test_start_times_hold_across_scrapes_and_move_on_a_reset():
    starts = StartTimes()
    text = "# TYPE c_total counter\nc_total {}\n# TYPE h histogram\nh_bucket{{le=\"+Inf\"}} {}\nh_count {}\n"

    def scrape(value: int, at: int):
        found = metrics_of(convert_text(text.format(value, value, value), starts=starts, scrape_ns=at).request)
        return found["c_total"].sum.data_points[0], found["h"].histogram.data_points[0]

    t1, t2, t3, t4 = (SCRAPE_NS + i * 1_000_000_000 for i in range(4))
    assert [p.start_time_unix_nano for p in scrape(5, t1)] == [t1, t1]
    assert [p.start_time_unix_nano for p in scrape(9, t2)] == [t1, t1]
    # The count went down: the source restarted after the previous point.
    assert [p.start_time_unix_nano for p in scrape(2, t3)] == [t2, t2]
    assert [p.start_time_unix_nano for p in scrape(4, t4)] == [t2, t2]
    assert len(starts) == 2
    convert_text("g 1\n", starts=starts)
    assert len(starts) == 0  # series gone from the exposition are forgotten


def test_a_malformed_histogram_is_left_out_and_named_the_rest_converts():
    text = ("# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"2\"} 3\nh_bucket{le=\"+Inf\"} 5\nh_count 5\n"
            "# TYPE ok gauge\nok 1\n")
    conversion = convert_text(text)
    assert set(metrics_of(conversion.request)) == {"ok"}
    assert conversion.skipped == ["h{}: bucket counts are not non-negative and non-decreasing"]


def test_the_scrape_series_go_into_the_targets_resource_with_its_labels():
    target = TargetLabels("app", "10.0.0.1:80", labels=(("env", "prod"),))
    conversion = convert_text("g 1\n", target)
    conversion.add_scrape_series(SCRAPE_NS, True, 0.25)
    assert len(conversion.request.resource_metrics) == 1
    found = metrics_of(conversion.request)
    values = {name: found[name].gauge.data_points[0].as_double
              for name in ("up", "scrape_duration_seconds", "scrape_samples_scraped")}
    assert values == {"up": 1.0, "scrape_duration_seconds": 0.25, "scrape_samples_scraped": 1.0}
    assert attrs(found["up"].gauge.data_points[0].attributes) == {"env": "prod"}
    assert found["up"].gauge.data_points[0].time_unix_nano == SCRAPE_NS


@pytest.mark.parametrize("text", ['g{a="b} 1\n', "g one\n", "<html>oops</html>\n"])
def test_unparsable_text_raises(text):
    with pytest.raises(ValueError):
        parse(text)


# --- scraping real endpoints --------------------------------------------------------------------------

class Endpoint:
    """An aiohttp server on 127.0.0.1 serving a prometheus_client registry (or a chosen failure)."""

    def __init__(self, registry: CollectorRegistry | None = None, port: int = 0, ssl_context=None):
        self.registry = registry or CollectorRegistry()
        self.port = port
        self.ssl_context = ssl_context
        self.status = 200
        self.body: bytes | None = None
        self.hang: asyncio.Event | None = None
        self.accepts: list[str] = []
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.accepts.append(request.headers.get("Accept", ""))
        if self.hang is not None:
            await self.hang.wait()
        body = self.body if self.body is not None else generate_latest(self.registry)
        return web.Response(body=body, status=self.status,
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def __aenter__(self) -> Endpoint:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        if self.hang is not None:
            self.hang.set()
        await self._runner.cleanup()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def receiver_for(addresses: list[str], consumer, interval: str = "200ms", **job):
    config, problems = decode(prometheus.Config, {"config": {"scrape_configs": [{
        "job_name": "app", "scrape_interval": interval,
        "static_configs": [{"targets": addresses, "labels": {"env": "test"}}], **job}]}})
    assert problems == []
    telemetry = SelfMetrics(CollectorRegistry())
    return prometheus.create(Settings(ComponentID.parse(RECEIVER), telemetry), config, {Signal.METRICS: consumer}), telemetry


async def wait_until(condition, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def gauge_value(request, name: str) -> float | None:
    metric = metrics_of(request).get(name)
    return None if metric is None else metric.gauge.data_points[0].as_double


def sample(telemetry: SelfMetrics, name: str, **labels) -> float:
    return telemetry.registry.get_sample_value(name, labels) or 0.0


def test_scrapes_a_prometheus_client_endpoint_and_converts_known_values():
    registry = CollectorRegistry()
    requests = Counter("requests", "Requests handled", ["path"], registry=registry)
    temperature = Gauge("temperature", "Room temperature", registry=registry)
    latency = Histogram("latency_seconds", "Latency", buckets=(0.1, 1.0), registry=registry)
    sizes = Summary("payload_bytes", "Payload sizes", registry=registry)
    requests.labels("/a").inc(7)
    temperature.set(21.5)
    for value in (0.05, 0.5, 2.0):
        latency.observe(value)
    for value in (100, 300):
        sizes.observe(value)

    async def run():
        recorder = Recorder()
        async with Endpoint(registry) as endpoint:
            receiver, telemetry = receiver_for([endpoint.address], recorder)
            await receiver.start()
            try:
                await wait_until(lambda: recorder.requests, "the first scrape")
                requests.labels("/a").inc(3)
                await wait_until(lambda: any(
                    metrics_of(r)["requests_total"].sum.data_points[0].as_double == 10.0
                    for r in recorder.requests), "a scrape after the counter grew")
            finally:
                await receiver.shutdown()
        return recorder.requests, telemetry, endpoint

    requests_seen, telemetry, endpoint = asyncio.run(run())
    first = requests_seen[0]
    (rm,) = first.resource_metrics
    assert attrs(rm.resource.attributes) == {"service.name": "app", "service.instance.id": endpoint.address,
                                             "server.port": str(endpoint.port), "url.scheme": "http"}
    found = metrics_of(first)
    (counter,) = found["requests_total"].sum.data_points
    assert counter.as_double == 7.0
    assert attrs(counter.attributes) == {"path": "/a", "env": "test"}
    assert found["requests_total"].description == "Requests handled"
    assert gauge_value(first, "temperature") == 21.5
    (histogram,) = found["latency_seconds"].histogram.data_points
    assert (list(histogram.explicit_bounds), list(histogram.bucket_counts)) == ([0.1, 1.0], [1, 1, 1])
    assert (histogram.count, histogram.sum) == (3, pytest.approx(2.55))
    (summary,) = found["payload_bytes"].summary.data_points
    assert (summary.count, summary.sum) == (2, 400.0)
    assert gauge_value(first, "up") == 1.0
    assert gauge_value(first, "scrape_samples_scraped") > 10
    assert 0 < gauge_value(first, "scrape_duration_seconds") < 5

    grown = next(r for r in requests_seen if metrics_of(r)["requests_total"].sum.data_points[0].as_double == 10.0)
    # Same series, same start: only the value moved.
    assert (metrics_of(grown)["requests_total"].sum.data_points[0].start_time_unix_nano
            == counter.start_time_unix_nano)
    assert endpoint.accepts[0].startswith("text/plain;version=0.0.4")
    points = sum(Signal.METRICS.count(r) for r in requests_seen)
    assert sample(telemetry, "otelcol_receiver_accepted_metric_points_total",
                  receiver=RECEIVER, transport="http") == points


def test_a_refusing_target_is_up_0_counted_and_logged_once_until_it_recovers(component_log):
    port = free_port()

    async def run():
        recorder = Recorder()
        receiver, telemetry = receiver_for([f"127.0.0.1:{port}"], recorder)
        await receiver.start()
        try:
            await wait_until(lambda: len(recorder.requests) >= 3, "three failed scrapes")
            failed = list(recorder.requests)
            async with Endpoint(port=port):
                await wait_until(lambda: gauge_value(recorder.requests[-1], "up") == 1.0, "the recovery")
        finally:
            await receiver.shutdown()
        return failed, telemetry

    failed, telemetry = asyncio.run(run())
    for request in failed:
        assert gauge_value(request, "up") == 0.0
        assert gauge_value(request, "scrape_samples_scraped") == 0.0
        assert set(metrics_of(request)) == {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
    assert sample(telemetry, "otelcol_receiver_prometheus_failed_scrapes_total",
                  receiver=RECEIVER, job="app") >= 3
    messages = [r.getMessage() for r in component_log.records]
    assert messages.count("scrape failed") == 1
    assert messages.count("scrape succeeded again") == 1
    record = next(r for r in component_log.records if r.getMessage() == "scrape failed")
    assert record.fields["target"] == f"127.0.0.1:{port}" and record.fields["job"] == "app"
    assert record.fields["error"]


@pytest.mark.parametrize("setup, error_part", [
    (lambda e: setattr(e, "status", 500), "HTTP status 500"),
    (lambda e: setattr(e, "body", b"<html>not metrics</html>\n"), "cannot parse"),
    (lambda e: setattr(e, "hang", asyncio.Event()), "scrape timeout (0.1s)"),
])
def test_http_errors_garbage_and_timeouts_are_failed_scrapes(setup, error_part, component_log):
    async def run():
        recorder = Recorder()
        async with Endpoint() as endpoint:
            setup(endpoint)
            receiver, telemetry = receiver_for([endpoint.address], recorder, scrape_timeout="100ms")
            await receiver.start()
            try:
                await wait_until(lambda: recorder.requests, "a scrape")
            finally:
                await receiver.shutdown()
        return recorder.requests, telemetry

    requests_seen, telemetry = asyncio.run(run())
    assert gauge_value(requests_seen[0], "up") == 0.0
    assert sample(telemetry, "otelcol_receiver_prometheus_failed_scrapes_total", receiver=RECEIVER, job="app") >= 1
    (record,) = [r for r in component_log.records if r.getMessage() == "scrape failed"]
    assert error_part in record.fields["error"]


class Refusing:
    mutates_data = False

    def __init__(self):
        self.calls = 0

    async def consume(self, request) -> None:
        self.calls += 1
        raise RetryableError("exporter queue is full")


def test_a_refusing_pipeline_drops_the_scrape_counts_it_and_scraping_goes_on(component_log):
    async def run():
        consumer = Refusing()
        async with Endpoint() as endpoint:
            receiver, telemetry = receiver_for([endpoint.address], consumer)
            await receiver.start()
            try:
                await wait_until(lambda: consumer.calls >= 2, "two refused scrapes")
            finally:
                await receiver.shutdown()
        return telemetry

    telemetry = asyncio.run(run())
    assert sample(telemetry, "otelcol_receiver_refused_metric_points_total", receiver=RECEIVER,
                  transport="http", reason="RetryableError") >= 2 * 3  # at least the three scrape series
    assert sample(telemetry, "otelcol_receiver_accepted_metric_points_total",
                  receiver=RECEIVER, transport="http") == 0
    assert any(r.getMessage() == "pipeline refused scraped metrics; dropped" for r in component_log.records)


def test_shutdown_ends_the_wait_between_scrapes_and_a_scrape_in_flight():
    async def run():
        recorder = Recorder()
        async with Endpoint() as idle, Endpoint() as stuck:
            stuck.hang = asyncio.Event()
            receiver, _ = receiver_for([idle.address, stuck.address], recorder, interval="1m",
                                       scrape_timeout="50s")
            await receiver.start()
            await wait_until(lambda: recorder.requests and stuck.accepts, "the idle scrape and the stuck one")
            # A scrape stuck for up to 50 s must not hold shutdown: it ends at this deadline or fails.
            await asyncio.wait_for(receiver.shutdown(), 2.0)
            return recorder.requests

    requests_seen = asyncio.run(run())
    # The idle target was scraped once; the stuck one's scrape was cut short, not passed on as a failure.
    assert len(requests_seen) == 1 and gauge_value(requests_seen[0], "up") == 1.0


# --- configuration ------------------------------------------------------------------------------------

def targets_of(raw: dict) -> list:
    config, problems = decode(prometheus.Config, raw)
    assert problems == [], problems
    return config.targets()


def test_the_reference_config_resolves_with_prometheus_defaults():
    (target,) = targets_of({"config": {"scrape_configs": [{
        "job_name": "openrouter-service", "static_configs": [{"targets": ["openrouter-service:8000"]}],
        "scrape_interval": "30s", "metrics_path": "/metrics"}]}})
    assert (target.job, target.address, target.interval, target.timeout) == (
        "openrouter-service", "openrouter-service:8000", 30.0, 10.0)
    assert target.url == "http://openrouter-service:8000/metrics"
    assert (target.labels, target.honor_labels, target.params) == ((), False, ())


def test_intervals_and_timeouts_default_from_global_then_prometheus():
    jobs = [{"job_name": "plain", "static_configs": [{"targets": ["a:1"]}]},
            {"job_name": "fast", "scrape_interval": "5s", "static_configs": [{"targets": ["b:1"]}]},
            {"job_name": "own", "scrape_interval": "5s", "scrape_timeout": "2s",
             "scheme": "https", "params": {"module": ["x", "y"]},
             "static_configs": [{"targets": ["c:1", "c:1"], "labels": {"k": "v"}}]}]
    plain, fast, own = targets_of({"config": {"scrape_configs": jobs}})
    assert (plain.interval, plain.timeout) == (60.0, 10.0)  # Prometheus' defaults
    assert (fast.interval, fast.timeout) == (5.0, 5.0)  # the default timeout is capped at the interval
    assert (own.interval, own.timeout, own.url) == (5.0, 2.0, "https://c:1/metrics")
    assert own.params == (("module", "x"), ("module", "y")) and own.labels == (("k", "v"),)
    with_global = targets_of({"config": {"global": {"scrape_interval": "15s", "scrape_timeout": "3s"},
                                         "scrape_configs": jobs[:1]}})
    assert (with_global[0].interval, with_global[0].timeout) == (15.0, 3.0)


JOB = {"job_name": "app", "static_configs": [{"targets": ["a:1"]}]}


@pytest.mark.parametrize("raw, expected", [
    ({}, "config: required key is missing"),
    ({"config": None}, "config: expected a mapping with scrape_configs, got nothing"),
    ({"config": {}}, "config::scrape_configs: required key is missing"),
    ({"config": {"scrape_configs": []}}, "config::scrape_configs: at least one job is required"),
    ({"config": {"scrape_configs": [JOB, JOB]}}, 'config::scrape_configs::1::job_name: "app" is used by another job'),
    ({"config": {"scrape_configs": [{"static_configs": [{"targets": ["a:1"]}]}]}},
     "config::scrape_configs::0::job_name: required key is missing"),
    ({"config": {"scrape_configs": [{**JOB, "static_configs": [{"targets": ["a:1", "localhost"]}]}]}},
     'config::scrape_configs::0::static_configs::0::targets::1: "localhost" is not a host:port target'),
    ({"config": {"scrape_configs": [{**JOB, "static_configs": [{"targets": ["http://a:1/metrics"]}]}]}},
     ('config::scrape_configs::0::static_configs::0::targets::0: "http://a:1/metrics": give host:port only '
      "(scheme and metrics_path are settings of the job)")),
    ({"config": {"scrape_configs": [{"job_name": "app"}]}},
     "config::scrape_configs::0::static_configs: no targets to scrape: list them under static_configs"),
    ({"config": {"scrape_configs": [{**JOB, "scrape_interval": "5s", "scrape_timeout": "10s"}]}},
     "config::scrape_configs::0::scrape_timeout: must not be greater than scrape_interval (5s)"),
    ({"config": {"scrape_configs": [{**JOB, "scrape_interval": "0s"}]}},
     "config::scrape_configs::0::scrape_interval: must be positive"),
    ({"config": {"scrape_configs": [{**JOB, "scrape_interval": "soon"}]}},
     'config::scrape_configs::0::scrape_interval: invalid duration "soon" (use e.g. "5s", "200ms", "1m")'),
    ({"config": {"scrape_configs": [{**JOB, "scheme": "ftp"}]}},
     'config::scrape_configs::0::scheme: "ftp" is not one of: http, https'),
    ({"config": {"scrape_configs": [{**JOB, "metrics_path": "metrics"}]}},
     'config::scrape_configs::0::metrics_path: must start with "/"'),
    ({"config": {"scrape_configs": [{**JOB, "honor_labels": "yes"}]}},
     "config::scrape_configs::0::honor_labels: expected a boolean, got string"),
    ({"config": {"scrape_configs": [{**JOB, "static_configs": [{"targets": ["a:1"], "labels": {"__x": "1"}}]}]}},
     'config::scrape_configs::0::static_configs::0::labels::__x: label names starting with "__" are reserved'),
    ({"config": {"scrape_configs": [{**JOB, "static_configs": [{"targets": ["a:1"], "labels": {"a-b": "1"}}]}]}},
     "config::scrape_configs::0::static_configs::0::labels::a-b: is not a valid Prometheus label name"),
    ({"config": {"scrape_configs": [{**JOB, "relabel_configs": []}]}},
     ("config::scrape_configs::0::relabel_configs: unknown key (valid keys: honor_labels, job_name, metrics_path, "
      "params, scheme, scrape_interval, scrape_timeout, static_configs, tls_config)")),
    ({"config": {"global": {"scrape_interval": "5s"}, "scrape_configs": [JOB]}},
     "config::global::scrape_timeout: must not be greater than scrape_interval"),
    ({"config": {"global": {"query_log_file": "q.log"}, "scrape_configs": [JOB]}},
     "config::global::query_log_file: unknown key (valid keys: evaluation_interval, external_labels, "
     "rule_query_offset, scrape_interval, scrape_timeout)"),
    ({"config": {"global": {"external_labels": {"__cluster": "a"}}, "scrape_configs": [JOB]}},
     'config::global::external_labels::__cluster: is not a valid Prometheus label name (or starts with the '
     'reserved "__")'),
    ({"config": {"rule_files": ["x.yml"], "scrape_configs": [JOB]}},
     "config::rule_files: is not supported by the prometheus receiver"),
    ({"config": {"scrape_config": [JOB]}},
     "config::scrape_config: unknown key (valid keys: global, scrape_configs)"),
])
def test_config_problems_name_the_key(raw, expected):
    _, problems = decode(prometheus.Config, raw)
    assert expected in [str(p) for p in problems], [str(p) for p in problems]


def test_a_valid_config_has_no_problems_and_an_invalid_one_no_targets():
    config, problems = decode(prometheus.Config, {"config": {"scrape_configs": [JOB]}})
    assert problems == [] and len(config.targets()) == 1
    broken = prometheus.Config(config={"scrape_configs": []})
    with pytest.raises(ValueError):
        broken.targets()


def test_nan_values_pass_through():
    found = metrics_of(convert_text("g NaN\n").request)
    assert math.isnan(found["g"].gauge.data_points[0].as_double)


def test_an_https_target_is_scraped_with_the_jobs_tls_config(tmp_path):
    pytest.importorskip("cryptography")
    from tests.test_exporter_http import _pki, server_tls

    pki = _pki(tmp_path)
    registry = CollectorRegistry()
    Gauge("temperature", "Room temperature", registry=registry).set(19.0)

    async def run(tls_config: dict):
        recorder = Recorder()
        async with Endpoint(registry, ssl_context=server_tls(pki)) as endpoint:
            receiver, _ = receiver_for([endpoint.address], recorder, scheme="https", tls_config=tls_config)
            await receiver.start()
            try:
                await wait_until(lambda: recorder.requests, "the first scrape")
            finally:
                await receiver.shutdown()
        return recorder.requests[0]

    trusted = asyncio.run(run({"ca_file": str(pki["ca"]), "server_name": "localhost"}))
    assert gauge_value(trusted, "up") == 1.0 and gauge_value(trusted, "temperature") == 19.0
    untrusted = asyncio.run(run({}))  # the system roots do not know the test CA
    assert gauge_value(untrusted, "up") == 0.0
    skipped = asyncio.run(run({"insecure_skip_verify": True}))
    assert gauge_value(skipped, "up") == 1.0


@pytest.mark.parametrize("tls_config, problem", [
    ({"min_version": "TLS14"}, 'tls_config::min_version: "TLS14" is not one of: TLS10, TLS11, TLS12, TLS13'),
    ({"cert_file": "c.pem"}, "tls_config::key_file: cert_file and key_file must be given together"),
    ({"ca_file": "a.pem", "ca": "x"}, "tls_config::ca: give ca_file or ca, not both"),
])
def test_a_bad_tls_config_is_a_problem_in_prometheus_terms(tls_config, problem):
    _, problems = decode(prometheus.Config, {"config": {"scrape_configs": [{
        "job_name": "app", "scheme": "https", "static_configs": [{"targets": ["127.0.0.1:1"]}],
        "tls_config": tls_config}]}})
    assert [str(p).split("scrape_configs::0::", 1)[-1] for p in problems] == [problem]
