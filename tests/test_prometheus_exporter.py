"""The prometheus exporter: temporality, expiry, target_info, limits, and real scrapes.

Time is driven, never slept: the store's clock and the sweeper's sleep are injected.
The naming and label tables are in test_prometheus_naming.py.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from relay import attrs
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.exporters import debug, prometheus
from relay.exporters.prometheus.transport import PrometheusTransport
from relay.pipeline.registry import Registry
from relay.receivers import otlp
from relay.signals import Signal
from relay.telemetry import SelfMetrics

CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
UNSPECIFIED = metrics_pb2.AGGREGATION_TEMPORALITY_UNSPECIFIED
NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
SCOPE = {"otel_scope_name": "genops", "otel_scope_version": "1.0", "otel_scope_schema_url": ""}
SERVICE = {"service.name": "app", "service.instance.id": "i-1"}
JOB = {"job": "app", "instance": "i-1"}
S = 1_000_000_000


# --- builders --------------------------------------------------------------------------------

def number(value, t: int, start: int = 0, flags: int = 0, **attributes):
    point = metrics_pb2.NumberDataPoint(time_unix_nano=t, start_time_unix_nano=start, flags=flags)
    if isinstance(value, int):
        point.as_int = value
    else:
        point.as_double = value
    for key, item in attributes.items():
        attrs.put(point.attributes, key, item)
    return point


def hist(counts, bounds, total: float, t: int, start: int = 0, **attributes):
    point = metrics_pb2.HistogramDataPoint(time_unix_nano=t, start_time_unix_nano=start, count=sum(counts),
                                           sum=total, bucket_counts=counts, explicit_bounds=bounds)
    for key, item in attributes.items():
        attrs.put(point.attributes, key, item)
    return point


def metric(name: str, kind: str, *points, unit: str = "", monotonic: bool = True,
           temporality: int = CUMULATIVE, description: str = "") -> metrics_pb2.Metric:
    """``kind`` is sum, gauge, histogram, summary or exponential_histogram."""
    out = metrics_pb2.Metric(name=name, unit=unit, description=description)
    data = getattr(out, kind)
    data.SetInParent()
    if kind == "sum":
        data.is_monotonic = monotonic
    if kind in ("sum", "histogram", "exponential_histogram"):
        data.aggregation_temporality = temporality
    data.data_points.extend(points)
    return out


def request(*metrics, resource: dict | None = None, scope_attributes: dict | None = None,
            schema_url: str = "") -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for key, value in (SERVICE if resource is None else resource).items():
        attrs.put(rm.resource.attributes, key, value)
    sm = rm.scope_metrics.add(schema_url=schema_url)
    sm.scope.name, sm.scope.version = "genops", "1.0"
    for key, value in (scope_attributes or {}).items():
        attrs.put(sm.scope.attributes, key, value)
    sm.metrics.extend(metrics)
    return req


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(**settings) -> prometheus.Config:
    cfg, problems = decode(prometheus.Config, {"endpoint": "127.0.0.1:0", **settings})
    assert problems == []
    return cfg


def make(clock: Clock | None = None, telemetry: SelfMetrics | None = None, **settings) -> PrometheusTransport:
    return PrometheusTransport(ComponentID.parse("prometheus"), config(**settings), telemetry or SelfMetrics(),
                               now=clock or Clock())


def send(transport: PrometheusTransport, *requests) -> None:
    async def go():
        for req in requests:
            await transport.send(req)
    asyncio.run(go())


def scrape(transport: PrometheusTransport, target_info: bool = False) -> dict:
    """{(sample name, frozenset of labels): value} from a text-format scrape; target_info
    (which the default resource produces) only when asked for."""
    body = generate_latest(transport.registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value for f in parse_text(body) for s in f.samples
            if target_info or not s.name.endswith("target_info")}


def value(transport: PrometheusTransport, name: str, **labels):
    """The one sample named ``name`` whose labels include ``labels`` (None if there is none)."""
    found = [v for (n, ls), v in scrape(transport).items() if n == name and set(labels.items()) <= ls]
    assert len(found) <= 1, found
    return found[0] if found else None


def dropped(telemetry: SelfMetrics, reason: str) -> float:
    return telemetry.registry.get_sample_value(
        "otelcol_exporter_prometheus_dropped_points_total", {"exporter": "prometheus", "reason": reason}) or 0


def labels(**extra) -> frozenset:
    return frozenset({**SCOPE, **JOB, **extra}.items())


# --- config ----------------------------------------------------------------------------------

def test_config_defaults_are_the_collectors():
    cfg = config()
    assert (cfg.namespace, cfg.const_labels, cfg.send_timestamps, cfg.metric_expiration,
            cfg.enable_open_metrics, cfg.resource_to_telemetry_conversion.enabled, cfg.add_metric_suffixes,
            cfg.max_series) == ("", {}, False, 300.0, False, False, True, 20000)


def test_config_of_the_reference_guide_decodes():
    cfg = config(endpoint="0.0.0.0:8889", namespace="genops_openrouter", const_labels={"service": "openrouter"},
                 metric_expiration="1m30s", resource_to_telemetry_conversion={"enabled": True})
    assert (cfg.endpoint, cfg.namespace, cfg.const_labels) == ("0.0.0.0:8889", "genops_openrouter",
                                                               {"service": "openrouter"})
    assert cfg.metric_expiration == 90.0 and cfg.resource_to_telemetry_conversion.enabled


@pytest.mark.parametrize("raw, expected", [
    ({}, ["endpoint: required key is missing"]),
    ({"endpoint": "localhost"}, ['endpoint: "localhost" is not a host:port endpoint']),
    ({"endpoint": "127.0.0.1:0", "path": "/m"},
     [("path: unknown key (valid keys: add_metric_suffixes, const_labels, enable_open_metrics, endpoint, "
       "max_series, metric_expiration, namespace, resource_to_telemetry_conversion, send_timestamps)")]),
    ({"endpoint": "127.0.0.1:0", "const_labels": {"service.name": "x", "__meta": "y", "ok": "z"}},
     ["const_labels::service.name: is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
      "const_labels::__meta: is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"]),
    ({"endpoint": "127.0.0.1:0", "metric_expiration": "0s"}, ["metric_expiration: must be positive"]),
    ({"endpoint": "127.0.0.1:0", "metric_expiration": "soon"},
     ['metric_expiration: invalid duration "soon" (use e.g. "5s", "200ms", "1m")']),
    ({"endpoint": "127.0.0.1:0", "max_series": 0}, ["max_series: must be at least 1"]),
    ({"endpoint": "127.0.0.1:0", "resource_to_telemetry_conversion": {"enable": True}},
     ["resource_to_telemetry_conversion::enable: unknown key (valid keys: enabled)"]),
])
def test_invalid_config_names_the_key(raw, expected):
    _, problems = decode(prometheus.Config, raw)
    assert [str(p) for p in problems] == expected


def test_a_relay_config_loads_with_the_exporter_in_a_metrics_pipeline():
    registry = Registry().add("receivers", otlp).add("exporters", prometheus).add("exporters", debug)
    text = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
exporters:
  prometheus:
    endpoint: 127.0.0.1:0
    namespace: genops_openrouter
    const_labels:
      service: openrouter
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
"""
    loaded = load(text, registry, env={})
    (pipeline,) = loaded.pipelines
    assert pipeline.signal is Signal.METRICS and pipeline.exporters == [ComponentID("prometheus")]
    assert loaded.components["exporters"][ComponentID("prometheus")].namespace == "genops_openrouter"
    assert prometheus.SIGNALS == (Signal.METRICS,)


# --- types and temporality -------------------------------------------------------------------

def test_cumulative_sum_keeps_the_latest_point_and_ignores_older_ones():
    telemetry = SelfMetrics()
    transport = make(telemetry=telemetry)
    send(transport, request(metric("requests", "sum", number(5, t=10 * S, start=S, team="a"))))
    send(transport, request(metric("requests", "sum", number(9, t=20 * S, start=S, team="a"))))
    send(transport, request(metric("requests", "sum", number(7, t=15 * S, start=S, team="a"))))
    assert scrape(transport) == {("requests_total", labels(team="a")): 9.0}
    assert dropped(telemetry, "out_of_order") == 1
    # An equal timestamp is not older: it replaces (a producer correcting its last report).
    send(transport, request(metric("requests", "sum", number(11, t=20 * S, start=S, team="a"))))
    assert value(transport, "requests_total", team="a") == 11.0


def test_gauge_keeps_the_latest_point():
    transport = make()
    send(transport, request(metric("queue.depth", "gauge", number(3.5, t=10 * S), number(2.0, t=5 * S))))
    assert scrape(transport) == {("queue_depth", labels()): 3.5}


def test_delta_monotonic_sums_accumulate_across_requests():
    telemetry = SelfMetrics()
    transport = make(telemetry=telemetry)

    def delta(amount, start, end, team="a"):
        return request(metric("tokens", "sum", number(amount, t=end * S, start=start * S, team=team),
                              temporality=DELTA))

    send(transport, delta(5, 0, 10), delta(7, 10, 20))          # aligned: start == previous end
    assert value(transport, "tokens_total", team="a") == 12.0
    send(transport, delta(3, 30, 40))                            # a gap (an idle interval) still adds
    assert value(transport, "tokens_total", team="a") == 15.0
    send(transport, delta(3, 30, 40))                            # the same interval resent: overlap
    send(transport, delta(4, 5, 50))                             # starts inside what was counted
    send(transport, delta(9, 0, 35))                             # older than the last point
    assert value(transport, "tokens_total", team="a") == 15.0
    assert (dropped(telemetry, "delta_overlap"), dropped(telemetry, "out_of_order")) == (2, 1)
    send(transport, delta(1.5, 40, 50), delta(2, 0, 10, team="b"))  # a double adds to an int total
    assert value(transport, "tokens_total", team="a") == 16.5
    assert value(transport, "tokens_total", team="b") == 2.0


def test_delta_histograms_accumulate_bucket_by_bucket():
    transport = make()

    def delta(counts, total, start, end, bounds=(0.5, 1.0)):
        return request(metric("request.duration", "histogram", hist(counts, bounds, total, t=end * S,
                                                                    start=start * S), unit="s", temporality=DELTA))

    send(transport, delta([1, 0, 2], 7.0, 0, 10), delta([0, 3, 1], 4.5, 10, 20))
    got = scrape(transport)
    name = "request_duration_seconds"
    assert {le: got[(f"{name}_bucket", labels(le=le))] for le in ("0.5", "1", "+Inf")} == \
        {"0.5": 1.0, "1": 4.0, "+Inf": 7.0}
    assert (got[(f"{name}_sum", labels())], got[(f"{name}_count", labels())]) == (11.5, 7.0)
    # New bucket bounds cannot be added to the old ones: the total starts over with them.
    send(transport, delta([2, 2], 1.0, 20, 30, bounds=(0.25,)))
    got = scrape(transport)
    assert {k[1]: v for k, v in got.items() if k[0] == f"{name}_bucket"} == \
        {labels(le="0.25"): 2.0, labels(le="+Inf"): 4.0}
    assert got[(f"{name}_count", labels())] == 4.0


def test_cumulative_histogram_exposes_cumulative_buckets():
    transport = make()
    send(transport, request(metric("payload", "histogram", hist([1, 2, 3, 4], [10, 100, 1000000], 5000.0,
                                                                   t=S), unit="By")))
    got = scrape(transport)
    assert {dict(ls)["le"]: v for (n, ls), v in got.items() if n == "payload_bytes_bucket"} == \
        {"10": 1.0, "100": 3.0, "1e+06": 6.0, "+Inf": 10.0}
    assert (got[("payload_bytes_sum", labels())], got[("payload_bytes_count", labels())]) == (5000.0, 10.0)


def test_summary_is_exposed_with_quantiles():
    transport = make()
    point = metrics_pb2.SummaryDataPoint(time_unix_nano=S, count=4, sum=2.0)
    point.quantile_values.add(quantile=0.5, value=0.4)
    point.quantile_values.add(quantile=0.99, value=1.2)
    send(transport, request(metric("gc.pause", "summary", point, unit="s")))
    assert scrape(transport) == {
        ("gc_pause_seconds", labels(quantile="0.5")): 0.4, ("gc_pause_seconds", labels(quantile="0.99")): 1.2,
        ("gc_pause_seconds_sum", labels()): 2.0, ("gc_pause_seconds_count", labels()): 4.0}


@pytest.mark.parametrize("bad, reason", [pytest.param(*case, id=case[1] + str(i)) for i, case in enumerate([
    (metric("inflight", "sum", number(1, t=S), number(2, t=S, k="v"), monotonic=False, temporality=DELTA),
     "delta_non_monotonic"),
    (metric("calls", "sum", number(1, t=S), number(2, t=S, k="v"), temporality=UNSPECIFIED),
     "unspecified_temporality"),
    (metric("latency", "histogram", hist([1], [], 1.0, t=S), hist([1], [], 1.0, t=S, k="v"),
            temporality=UNSPECIFIED), "unspecified_temporality"),
    (metric("latency", "exponential_histogram",
            metrics_pb2.ExponentialHistogramDataPoint(time_unix_nano=S, count=1),
            metrics_pb2.ExponentialHistogramDataPoint(time_unix_nano=S, count=2)), "unsupported_type"),
])])
def test_what_prometheus_cannot_show_is_dropped_and_counted(bad, reason):
    telemetry = SelfMetrics()
    transport = make(telemetry=telemetry)
    send(transport, request(bad, metric("ok", "gauge", number(1, t=S))))
    assert scrape(transport) == {("ok", labels()): 1.0}
    assert dropped(telemetry, reason) == 2
    body = generate_latest(telemetry.registry).decode()
    assert f'otelcol_exporter_prometheus_dropped_points_total{{exporter="prometheus",reason="{reason}"}} 2.0' in body


def test_invalid_histogram_points_are_dropped_and_counted():
    telemetry = SelfMetrics()
    transport = make(telemetry=telemetry)
    wrong_length = hist([1, 2], [1.0, 2.0], 1.0, t=S, k="a")
    unsorted = hist([1, 2, 3], [2.0, 1.0], 1.0, t=S, k="b")
    send(transport, request(metric("h", "histogram", wrong_length, unsorted)))
    assert scrape(transport) == {} and dropped(telemetry, "invalid_point") == 2


def test_no_recorded_value_flag_deletes_the_series():
    transport = make()
    send(transport, request(metric("up", "gauge", number(1, t=S, target="a"), number(1, t=S, target="b"))))
    send(transport, request(metric("up", "gauge", number(0, t=2 * S, flags=NO_RECORDED_VALUE, target="a"))))
    assert scrape(transport) == {("up", labels(target="b")): 1.0}
    assert transport.store.series_count == 1


def test_a_name_taken_by_another_type_is_dropped_and_counted():
    telemetry = SelfMetrics()
    transport = make(telemetry=telemetry)
    # A gauge "x.total" and a counter "x" both become x_total; a gauge "h_count" would
    # clash with the histogram h's own _count samples.
    send(transport, request(metric("x", "sum", number(1, t=S)), metric("x.total", "gauge", number(5, t=S)),
                            metric("h", "histogram", hist([1], [], 1.0, t=S)),
                            metric("h.count", "gauge", number(3, t=S))))
    assert sorted(name for name, _ in scrape(transport)) == ["h_bucket", "h_count", "h_sum", "x_total"]
    assert value(transport, "x_total") == 1.0 and value(transport, "h_count") == 1.0
    assert dropped(telemetry, "type_conflict") == 2


def test_first_description_is_the_help_text():
    transport = make()
    send(transport, request(metric("a", "gauge", number(1, t=S), description="first"),
                            metric("a", "gauge", number(1, t=S, k="v"), description="second")))
    body = generate_latest(transport.registry).decode()
    assert "# HELP a first\n" in body and "second" not in body


# --- expiry ----------------------------------------------------------------------------------

def test_series_expire_without_any_scrape():
    clock, telemetry = Clock(), SelfMetrics()
    transport = make(clock, telemetry, metric_expiration="10s")
    send(transport, request(metric("a", "gauge", number(1, t=S)), metric("b", "sum", number(1, t=S))))
    clock.now += 6
    send(transport, request(metric("b", "sum", number(2, t=2 * S))))
    clock.now += 4                                # a: exactly 10s old, not yet past it
    assert transport.sweep() == 0 and transport.store.series_count == 2
    clock.now += 0.5
    assert transport.sweep() == 1
    assert set(transport.store.families) == {"b_total"} and transport.store.series_count == 1
    clock.now += 6
    assert transport.sweep() == 1
    # Nothing is left behind: no family, no claimed name but target_info's own.
    assert transport.store.families == {} and transport.store.series_count == 0
    assert transport.store._claimed == {"target_info": "target_info"}
    assert telemetry.registry.get_sample_value("otelcol_exporter_prometheus_expired_series_total",
                                               {"exporter": "prometheus"}) == 2


def test_a_scrape_sweeps_first():
    clock = Clock()
    transport = make(clock, metric_expiration="1m")
    send(transport, request(metric("a", "gauge", number(1, t=S))))
    clock.now += 61
    assert scrape(transport, target_info=True) == {} and transport.store.series_count == 0


class ManualSleep:
    """The sweeper's sleep: records each interval asked for and returns only when ticked,
    moving the clock on by that interval."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.asked: list[float] = []
        self._gate: asyncio.Future | None = None

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self._gate = asyncio.get_running_loop().create_future()
        await self._gate
        self.clock.now += seconds

    def tick(self) -> None:
        self._gate.set_result(None)


async def until(condition) -> None:
    """Lets other tasks run until ``condition()`` holds; fails if it never does."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_the_periodic_sweep_expires_series_while_nothing_scrapes():
    clock, telemetry = Clock(), SelfMetrics()
    sleep = ManualSleep(clock)
    transport = PrometheusTransport(ComponentID.parse("prometheus"), config(metric_expiration="10s"), telemetry,
                                    now=clock, sleep=sleep)
    exporter = prometheus.Exporter(ComponentID.parse("prometheus"), transport, telemetry, timeout=0)

    async def scenario():
        await exporter.start()
        try:
            await exporter.consume(request(metric("a", "gauge", number(1, t=S))))
            await until(lambda: len(sleep.asked) == 1)
            counts = []
            for sleeps in (2, 3, 4):                 # swept at 5s, 10s (not past 10s yet), 15s
                sleep.tick()
                # Asking to sleep again means the sweep after this tick has run.
                await until(lambda sleeps=sleeps: len(sleep.asked) == sleeps)
                counts.append(transport.store.series_count)
            assert counts == [1, 1, 0]
            task = transport._sweeper
        finally:
            await exporter.shutdown()
        return task

    task = asyncio.run(scenario())
    assert sleep.asked[:4] == [5.0, 5.0, 5.0, 5.0]
    assert transport.store.series_count == 0 and transport.store.families == {}
    assert task.cancelled() and transport._sweeper is None
    assert telemetry.registry.get_sample_value("otelcol_exporter_prometheus_expired_series_total",
                                               {"exporter": "prometheus"}) == 1


@pytest.mark.parametrize("expiration, interval", [("10s", 5.0), ("5m", 30.0), ("1h", 30.0)])
def test_sweep_interval_is_half_the_expiration_at_most_30s(expiration, interval):
    assert make(metric_expiration=expiration).sweep_interval == interval


# --- target_info, job/instance, const labels, resource and scope labels ----------------------

def targets(transport) -> list[dict]:
    return [dict(ls) for (name, ls), v in scrape(transport, target_info=True).items()
            if name.endswith("target_info") and v == 1.0]


def test_target_info_carries_the_resource_minus_job_and_instance_keys():
    transport = make(namespace="genops_openrouter", const_labels={"service": "openrouter"})
    resource = {"service.name": "api", "service.namespace": "llm", "service.instance.id": "pod-1",
                "service.version": "2.1", "host.name": "node-a", "k8s.pod.uid": 7}
    send(transport, request(metric("requests", "sum", number(1, t=S)), resource=resource))
    got = scrape(transport, target_info=True)
    # No const labels on target_info, and service.version stays: only the keys that
    # became job and instance are left out.
    assert got[("genops_openrouter_target_info", frozenset({
        "job": "llm/api", "instance": "pod-1", "service_version": "2.1", "host_name": "node-a",
        "k8s_pod_uid": "7"}.items()))] == 1.0
    assert got[("genops_openrouter_requests_total", frozenset({
        **SCOPE, "job": "llm/api", "instance": "pod-1", "service": "openrouter"}.items()))] == 1.0
    assert len(got) == 2


@pytest.mark.parametrize("resource, job", [
    ({"service.name": "api"}, {"job": "api"}),
    ({"service.instance.id": "pod-1"}, {"instance": "pod-1"}),
    ({"host.name": "node-a"}, {}),
])
def test_no_target_info_without_both_job_and_instance(resource, job):
    transport = make()
    send(transport, request(metric("up", "gauge", number(1, t=S)), resource=resource))
    assert scrape(transport, target_info=True) == {("up", frozenset({**SCOPE, **job}.items())): 1.0}


def test_target_info_is_deduplicated_by_job_and_instance():
    transport = make()
    first = request(metric("a", "gauge", number(1, t=S)), resource={**SERVICE, "host.name": "x"})
    second = request(metric("b", "gauge", number(1, t=S)), resource={**SERVICE, "host.name": "y"})
    other = request(metric("a", "gauge", number(1, t=S)),
                    resource={**SERVICE, "service.instance.id": "i-2", "host.name": "z"})
    send(transport, first, second, other)
    # One line per job and instance: the first resource seen among the live series.
    assert sorted((t["instance"], t["host_name"]) for t in targets(transport)) == [("i-1", "x"), ("i-2", "z")]


def test_target_info_goes_with_the_last_series_of_its_resource():
    clock = Clock()
    transport = make(clock, metric_expiration="10s")
    send(transport, request(metric("a", "gauge", number(1, t=S))))
    assert targets(transport) == [{"job": "app", "instance": "i-1"}]
    clock.now += 11
    assert targets(transport) == [] and scrape(transport) == {}


def test_resource_to_telemetry_conversion_copies_resource_attributes_into_labels():
    resource = {**SERVICE, "deployment.environment": "prod", "team": "from-resource"}
    point = number(1, t=S, team="from-point", route="/chat")
    plain, converted = make(), make(resource_to_telemetry_conversion={"enabled": True})
    for transport in (plain, converted):
        send(transport, request(metric("requests", "sum", point), resource=resource))
    assert scrape(plain) == {("requests_total", labels(team="from-point", route="/chat")): 1.0}
    # Resource attributes overwrite point attributes of the same key, as in the collector.
    assert scrape(converted) == {("requests_total", labels(
        team="from-resource", route="/chat", deployment_environment="prod", service_name="app",
        service_instance_id="i-1")): 1.0}
    assert targets(converted) == [{"job": "app", "instance": "i-1", "deployment_environment": "prod",
                                   "team": "from-resource"}]


def test_scope_labels_and_their_precedence_over_attributes():
    transport = make(const_labels={"service": "openrouter"})
    point = number(1, t=S, otel_scope_name="spoofed", job="spoofed", service="spoofed", kept="yes")
    send(transport, request(metric("a", "gauge", point), scope_attributes={"library.mode": "fast"},
                            schema_url="https://opentelemetry.io/schemas/1.26.0"))
    assert scrape(transport) == {("a", frozenset({
        "otel_scope_name": "genops", "otel_scope_version": "1.0",
        "otel_scope_schema_url": "https://opentelemetry.io/schemas/1.26.0", "otel_scope_library_mode": "fast",
        "job": "app", "instance": "i-1", "service": "openrouter", "kept": "yes"}.items())): 1.0}


def test_attribute_keys_that_sanitize_alike_join_their_values():
    transport = make()
    send(transport, request(metric("a", "gauge", number(1, t=S, **{"http.method": "GET", "http_method": "get"}))))
    # Values in key order ("." sorts before "_"), as the collector joins them for target_info.
    assert scrape(transport) == {("a", labels(http_method="GET;get")): 1.0}


# --- the series cap --------------------------------------------------------------------------

def test_max_series_drops_new_series_and_counts_them():
    clock, telemetry = Clock(), SelfMetrics()
    transport = make(clock, telemetry, max_series=2, metric_expiration="10s")
    send(transport, request(metric("calls", "sum", number(1, t=S, customer="a"), number(1, t=S, customer="b"),
                                   number(1, t=S, customer="c"), number(1, t=S, customer="d"))))
    assert dropped(telemetry, "series_limit") == 2 and transport.store.series_count == 2
    clock.now += 5
    # Known series still update; new ones still do not fit.
    send(transport, request(metric("calls", "sum", number(5, t=2 * S, customer="a"),
                                   number(1, t=2 * S, customer="e"))))
    assert {dict(ls)["customer"]: v for (_, ls), v in scrape(transport).items()} == {"a": 5.0, "b": 1.0}
    assert dropped(telemetry, "series_limit") == 3
    clock.now += 6                                  # b expires, a (updated at +5) does not
    send(transport, request(metric("calls", "sum", number(1, t=3 * S, customer="e"))))
    assert dropped(telemetry, "series_limit") == 4  # nothing swept yet: still full
    transport.sweep()
    send(transport, request(metric("calls", "sum", number(1, t=3 * S, customer="e"))))
    assert {dict(ls)["customer"] for (_, ls) in scrape(transport)} == {"a", "e"}
    assert dropped(telemetry, "series_limit") == 4


# --- scraping over HTTP ----------------------------------------------------------------------

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CONTRACT_CONFIG = {"namespace": "genops_openrouter", "const_labels": {"service": "openrouter"}}
ATTRIBUTION = {"genops.team": "search", "genops.project": "rag", "genops.model": "openai/gpt-4o",
               "genops.openrouter.actual_provider": "azure"}


def contract_request() -> ExportMetricsServiceRequest:
    """What a span-to-metrics step sends for the metrics contract of DESIGN.md."""
    def point(value, **extra):
        p = number(value, t=20 * S, start=10 * S)
        for key, item in {**ATTRIBUTION, **extra}.items():
            attrs.put(p.attributes, key, item)
        return p

    duration = hist([1, 2, 0], [0.5, 2.5], 3.25, t=20 * S, start=10 * S)
    for key, item in ATTRIBUTION.items():
        attrs.put(duration.attributes, key, item)
    return request(
        metric("requests", "sum", point(3, **{"http.status_code": "200"}), unit="{request}"),
        metric("cost", "sum", point(0.0125), unit="{USD}"),
        metric("request.duration", "histogram", duration, unit="s"),
        metric("tokens", "sum", point(1200, token_type="input"), point(300, token_type="output"), unit="{token}"),
        metric("errors", "sum", point(1, error_type="rate_limit"), unit="{error}"),
        metric("provider.switches", "sum", point(1, **{"genops.openrouter.predicted_provider": "openai"}),
               unit="{switch}"),
        resource={"service.name": "openrouter-service", "service.instance.id": "pod-7"})


def serve(scenario, telemetry: SelfMetrics | None = None, **settings):
    """Runs ``scenario(port)`` against a started exporter that has received the contract request."""
    cfg = config(**settings)
    telemetry = telemetry or SelfMetrics()
    exporter = prometheus.create(Settings(ComponentID.parse("prometheus"), telemetry), cfg)

    async def run():
        await exporter.start()
        try:
            await exporter.consume(contract_request())
            return await scenario(exporter.transport.port)
        finally:
            await exporter.shutdown()
    return asyncio.run(run())


async def get(port: int, accept: str | None = None, path: str = "/metrics") -> tuple[int, str, str]:
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as response:
        return response.status, response.headers["Content-Type"], await response.text()


def families(body: str, parser) -> dict:
    """{family name: (type, {(sample name, frozenset of labels): value})}."""
    return {f.name: (f.type, {(s.name, frozenset(s.labels.items())): s.value for s in f.samples})
            for f in parser(body)}


CONTRACT_LABELS = {"otel_scope_name": "genops", "otel_scope_version": "1.0", "otel_scope_schema_url": "",
                   "job": "openrouter-service", "instance": "pod-7", "service": "openrouter",
                   "genops_team": "search", "genops_project": "rag", "genops_model": "openai/gpt-4o",
                   "genops_openrouter_actual_provider": "azure"}


def contract_samples(prefix: str = "genops_openrouter_") -> dict:
    def key(name, **extra):
        return prefix + name, frozenset({**CONTRACT_LABELS, **extra}.items())

    return {
        "requests": ("counter", {key("requests_total", http_status_code="200"): 3.0}),
        "cost": ("counter", {key("cost_total"): 0.0125}),
        "request_duration_seconds": ("histogram", {
            key("request_duration_seconds_bucket", le="0.5"): 1.0,
            key("request_duration_seconds_bucket", le="2.5"): 3.0,
            key("request_duration_seconds_bucket", le="+Inf"): 3.0,
            key("request_duration_seconds_sum"): 3.25, key("request_duration_seconds_count"): 3.0}),
        "tokens": ("counter", {key("tokens_total", token_type="input"): 1200.0,
                               key("tokens_total", token_type="output"): 300.0}),
        "errors": ("counter", {key("errors_total", error_type="rate_limit"): 1.0}),
        "provider_switches": ("counter", {
            key("provider_switches_total", genops_openrouter_predicted_provider="openai"): 1.0}),
        "target_info": ("gauge", {(prefix + "target_info",
                                   frozenset({"job": "openrouter-service", "instance": "pod-7"}.items())): 1.0}),
    }


def test_scrape_text_format_serves_the_metrics_contract():
    async def scenario(port):
        return await get(port), await get(port, OPENMETRICS), await get(port, path="/other")

    (status, content_type, body), (_, om_asked_type, om_asked_body), (missing, _, _) = serve(
        scenario, **CONTRACT_CONFIG)
    assert (status, content_type, missing) == (200, TEXT_TYPE, 404)
    # OpenMetrics was not enabled: the Accept header does not change the answer.
    assert (om_asked_type, om_asked_body) == (TEXT_TYPE, body)
    assert "_created" not in body and "# EOF" not in body
    got = families(body, parse_text)
    expected = contract_samples()
    assert {name.removeprefix("genops_openrouter_"): fam for name, fam in got.items()} == expected
    assert "# TYPE genops_openrouter_requests_total counter\n" in body
    assert "# HELP genops_openrouter_target_info Target metadata\n" in body


def test_scrape_openmetrics_when_enabled_and_asked_for():
    async def scenario(port):
        return await get(port, OPENMETRICS), await get(port)

    (status, content_type, body), (_, plain_type, plain_body) = serve(
        scenario, enable_open_metrics=True, **CONTRACT_CONFIG)
    assert status == 200 and content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith("# EOF\n") and "# TYPE genops_openrouter_requests counter\n" in body
    got = families(body, parse_openmetrics)
    assert {name.removeprefix("genops_openrouter_"): fam for name, fam in got.items()} == contract_samples()
    # Without the Accept header the same exporter answers in the text format.
    assert plain_type == TEXT_TYPE and not plain_body.endswith("# EOF\n")
    assert families(plain_body, parse_text).keys() == got.keys()


def test_send_timestamps_writes_each_points_time_in_milliseconds():
    async def scenario(port):
        return (await get(port))[2], (await get(port, OPENMETRICS))[2]

    text, openmetrics = serve(scenario, send_timestamps=True, enable_open_metrics=True)
    stamps = {s.name: s.timestamp for f in parse_text(text) for s in f.samples}
    assert stamps["requests_total"] == 20.0 and stamps["target_info"] is None
    assert 'requests_total{' in text and "} 3.0 20000\n" in text
    om_stamps = {s.name: s.timestamp for f in parse_openmetrics(openmetrics) for s in f.samples}
    assert float(om_stamps["request_duration_seconds_count"]) == 20.0


def test_millisecond_timestamps_are_not_truncated_to_the_one_before():
    transport = make(send_timestamps=True)
    times = [1_700_000_000_123_000_000 + i * 1_000_000 for i in range(200)]
    send(transport, request(metric("g", "gauge", *[number(1, t=t, i=str(n)) for n, t in enumerate(times)])))
    lines = [line for line in generate_latest(transport.registry).decode().splitlines() if line.startswith("g{")]
    assert sorted(int(line.rsplit(" ", 1)[1]) for line in lines) == [t // 1_000_000 for t in times]


def test_sent_points_are_counted_by_the_exporter():
    telemetry = SelfMetrics()

    async def scenario(port):
        return await get(port)

    serve(scenario, telemetry=telemetry)
    assert telemetry.registry.get_sample_value("otelcol_exporter_sent_metric_points_total",
                                               {"exporter": "prometheus"}) == 7


def test_label_values_are_capped_so_one_client_cannot_grow_a_scrape_by_megabytes():
    from relay.genai.bounds import MARKER

    telemetry = SelfMetrics()
    transport = make(telemetry=telemetry)
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="calls")
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = 2
    for index in range(3):
        point = metric.sum.data_points.add(as_int=1, time_unix_nano=1)
        attrs.put(point.attributes, "model", f"{index}" + "m" * 1_000_000)
    send(transport, request)
    text = generate_latest(transport.registry).decode()
    assert len(text) < 10_000
    assert text.count(MARKER) == 3
    assert telemetry.registry.get_sample_value("otelcol_exporter_prometheus_truncated_values_total",
                                               {"exporter": "prometheus"}) == 3
