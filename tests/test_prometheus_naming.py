"""Naming conformance: OTLP metric and attribute names as the collector's prometheus
exporter exposes them. Each row goes through the store and both encoders and is read
back with prometheus_client's parsers, so the table holds the names a scrape shows."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from relay import attrs
from relay.prometheus import naming
from tests.test_prometheus_exporter import (
    CUMULATIVE,
    DELTA,
    OPENMETRICS,
    SCOPE,
    S,
    hist,
    make,
    metric,
    number,
    request,
    scrape,
    send,
)

H = ("_bucket", "_sum", "_count")


def _sum(mono, temporality=CUMULATIVE):
    return "sum", mono, temporality


GAUGE, HISTOGRAM, SUMMARY = ("gauge", None, None), ("histogram", None, CUMULATIVE), ("summary", None, None)
COUNTER, DELTA_COUNTER, UPDOWN = _sum(True), _sum(True, DELTA), _sum(False)

# (OTLP name, unit, (data, monotonic, temporality), namespace) -> (exposed type, exposed sample names)
NAMES = [
    # The metrics contract (DESIGN.md) with the reference namespace.
    ("requests", "{request}", COUNTER, "genops_openrouter", "counter", ["genops_openrouter_requests_total"]),
    ("cost", "{USD}", COUNTER, "genops_openrouter", "counter", ["genops_openrouter_cost_total"]),
    ("request.duration", "s", HISTOGRAM, "genops_openrouter", "histogram",
     ["genops_openrouter_request_duration_seconds" + s for s in H]),
    ("provider.switches", "{switch}", COUNTER, "genops_openrouter", "counter",
     ["genops_openrouter_provider_switches_total"]),
    ("tokens", "{token}", DELTA_COUNTER, "genops_openrouter", "counter", ["genops_openrouter_tokens_total"]),
    # An unknown unit is kept; every "total" token moves to the end.
    ("genops.cost.total", "USD", COUNTER, "genops", "counter", ["genops_genops_cost_USD_total"]),
    ("genops.cost.total", "{USD}", COUNTER, "genops", "counter", ["genops_genops_cost_total"]),
    ("http.total.requests", "", COUNTER, "", "counter", ["http_requests_total"]),
    # Nothing left before "_total": a counter family cannot be written without a name,
    # so this one is exposed untyped.
    ("total.total", "", COUNTER, "", "unknown", ["total"]),
    # Units.
    ("memory.usage", "%", GAUGE, "", "gauge", ["memory_usage_percent"]),
    ("network.io", "By", COUNTER, "", "counter", ["network_io_bytes_total"]),
    ("rpc.latency", "ms", HISTOGRAM, "", "histogram", ["rpc_latency_milliseconds" + s for s in H]),
    ("disk.throughput", "By/s", GAUGE, "", "gauge", ["disk_throughput_bytes_per_second"]),
    ("fuel", "a/b", GAUGE, "", "gauge", ["fuel_a_per_b"]),
    ("requests", "{request}/s", GAUGE, "", "gauge", ["requests_per_second"]),
    ("http.server.duration.seconds", "s", HISTOGRAM, "", "histogram", ["http_server_duration_seconds" + s for s in H]),
    ("jvm.gc.pause", "s", SUMMARY, "", "summary", ["jvm_gc_pause_seconds", "jvm_gc_pause_seconds_count",
                                                  "jvm_gc_pause_seconds_sum"]),
    ("temperature", "Cel", GAUGE, "", "gauge", ["temperature_celsius"]),
    # Unit "1": "_ratio" on gauges only, never twice.
    ("cpu.utilization", "1", GAUGE, "", "gauge", ["cpu_utilization_ratio"]),
    ("cpu.ratio", "1", GAUGE, "", "gauge", ["cpu_ratio"]),
    ("cpu.utilization", "1", UPDOWN, "", "gauge", ["cpu_utilization"]),
    ("hits", "1", COUNTER, "", "counter", ["hits_total"]),
    # Non-monotonic sums are gauges: no "_total" added, none taken away.
    ("queue.depth", "{item}", UPDOWN, "", "gauge", ["queue_depth"]),
    ("active.total", "", UPDOWN, "", "gauge", ["active_total"]),
    # Characters outside [a-zA-Z0-9:], runs of them, leading digits.
    ("2xx.responses", "", COUNTER, "", "counter", ["_2xx_responses_total"]),
    ("2xx.responses", "", COUNTER, "relay", "counter", ["relay_2xx_responses_total"]),
    ("foo..bar__baz-qux", "", GAUGE, "", "gauge", ["foo_bar_baz_qux"]),
    ("ns:sub.metric", "", GAUGE, "", "gauge", ["ns:sub_metric"]),
    ("queue size (items)", "", GAUGE, "ns", "gauge", ["ns_queue_size_items"]),
]


def _one_point(data: str, temporality):
    if data == "histogram":
        return hist([1, 1], [1.0], 1.5, t=S, start=S if temporality == DELTA else 0)
    if data == "summary":
        point = metrics_pb2.SummaryDataPoint(time_unix_nano=S, count=1, sum=1.0)
        point.quantile_values.add(quantile=0.5, value=1.0)
        return point
    return number(1, t=S, start=0)


@pytest.mark.parametrize("name, unit, shape, namespace, exposed_type, samples", NAMES,
                         ids=[f"{r[0]}[{r[1]}]{r[2][0]}{'' if r[2][1] is None else '+' if r[2][1] else '-'}"
                              f"{'/' + r[3] if r[3] else ''}" for r in NAMES])
def test_exposed_names(name, unit, shape, namespace, exposed_type, samples):
    data, monotonic, temporality = shape
    transport = make(namespace=namespace, enable_open_metrics=True)
    send(transport, request(metric(name, data, _one_point(data, temporality), unit=unit,
                                   monotonic=bool(monotonic), temporality=temporality or CUMULATIVE),
                            resource={}))
    text = generate_latest(transport.registry).decode()
    (family,) = parse_text(text)
    assert family.type == exposed_type
    assert sorted({s.name for s in family.samples}) == sorted(samples)
    # The OpenMetrics parser is strict about names and suffixes per type: it accepts these.
    encoder, _ = transport._encoder(OPENMETRICS)  # the encoder a scrape would use
    (om_family,) = parse_openmetrics(encoder(transport.registry).decode())
    assert (om_family.type, sorted({s.name for s in om_family.samples})) == (exposed_type, sorted(samples))


@pytest.mark.parametrize("name, unit, shape, namespace, expected", [
    ("requests", "{request}", COUNTER, "genops_openrouter", "genops_openrouter_requests"),
    ("request.duration", "s", HISTOGRAM, "", "request.duration"),
    ("2xx.responses", "", COUNTER, "", "_2xx_responses"),
    ("foo..bar", "", GAUGE, "ns.x", "ns_x_foo_bar"),
])
def test_without_suffixes_only_characters_change(name, unit, shape, namespace, expected):
    kind = {"sum": naming.COUNTER, "gauge": naming.GAUGE, "histogram": naming.HISTOGRAM}[shape[0]]
    assert naming.metric_name(name, unit, kind, namespace, suffixes=False) == expected.replace(".", "_")


def test_counters_without_suffixes_are_exposed_untyped_under_their_own_name():
    transport = make(add_metric_suffixes=False, namespace="genops_openrouter")
    send(transport, request(metric("requests", "sum", number(4, t=S), unit="{request}"), resource={}))
    text = generate_latest(transport.registry).decode()
    assert "# TYPE genops_openrouter_requests untyped\ngenops_openrouter_requests{" in text
    assert "_total" not in text


# attribute key -> label name ("" : the attribute is left out)
LABELS = [
    ("http.status_code", "http_status_code"),
    ("genops.openrouter.actual_provider", "genops_openrouter_actual_provider"),
    ("k8s.pod.name", "k8s_pod_name"),
    ("My-Label", "My_Label"),
    ("a..b", "a_b"),
    ("a__b", "a_b"),                    # repeated underscores collapse, written ones too
    ("a._-b", "a_b"),
    ("2xx", "key_2xx"),                 # a leading digit
    ("_private", "key_private"),        # a single leading underscore
    (".hidden", "key_hidden"),
    ("__name__", "key_name_"),          # never a reserved "__" label (the collector keeps these)
    ("__a.b__", "key_a_b_"),
    ("__private", "key_private"),
    ("ünïcode", "key_n_code"),
    ("ns:key", "ns_key"),               # ":" is allowed in metric names, not in labels
    ("_", "key_"),
    ("____", "key_"),
    ("", ""),
]


@pytest.mark.parametrize("key, expected", LABELS, ids=[repr(k) for k, _ in LABELS])
def test_attribute_keys_as_label_names(key, expected):
    assert naming.label_name(key) == expected
    transport = make()
    send(transport, request(metric("g", "gauge", number(1, t=S, **{key: "v"})), resource={}))
    ((_, got),) = scrape(transport)
    assert dict(got) == ({**SCOPE, expected: "v"} if expected else SCOPE)


def _any(item) -> AnyValue:
    value = AnyValue()
    attrs.fill(value, item)
    return value


@pytest.mark.parametrize("value, expected", [
    (_any("gpt-4o"), "gpt-4o"),
    (_any(200), "200"),
    (_any(-3), "-3"),
    (_any(True), "true"),
    (_any(1.5), "1.5"),
    (_any(2.0), "2"),
    (_any(1e20), "100000000000000000000"),
    (_any(1.5e-7), "0.00000015"),
    (_any(float("inf")), "+Inf"),
    (_any(b"\x00\xff"), "AP8="),
    (_any(["a", 1, True]), '["a",1,true]'),
    (_any({"b": "x", "a": 1}), '{"a":1,"b":"x"}'),
    (AnyValue(), ""),
])
def test_attribute_values_as_label_values(value, expected):
    assert naming.value_string(value) == expected


@pytest.mark.parametrize("bound, expected", [
    (1.0, "1"), (0.0, "0"), (0.005, "0.005"), (2.5, "2.5"), (10.0, "10"), (100000.0, "100000"),
    (1e6, "1e+06"), (1234567.0, "1.234567e+06"), (0.0001, "0.0001"), (1e-05, "1e-05"), (-1.0, "-1"),
    (float("inf"), "+Inf"),
])
def test_bucket_bounds_are_written_as_the_go_client_writes_them(bound, expected):
    assert naming.go_float_g(bound) == expected


def test_target_info_name_uses_the_label_rules_for_the_namespace():
    assert naming.target_info_name("") == "target_info"
    assert naming.target_info_name("genops_openrouter") == "genops_openrouter_target_info"
    assert naming.target_info_name("a__b:c") == "a_b_c_target_info"
