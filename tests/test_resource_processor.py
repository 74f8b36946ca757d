"""The resource processor: the shared actions, applied to the resource of every signal."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import yaml
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay import attrs, client
from relay.client import ClientInfo
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import ConfigError
from relay.pipeline.registry import default_registry
from relay.processors import resource
from relay.processors.helper import FunctionProcessor


def pairs(kvs):
    return [(kv.key, kv.value.WhichOneof("value"), attrs.to_python(kv.value)) for kv in kvs]


def fill(kvs, items):
    for key, value in items:
        attrs.put(kvs, key, value)


def process_with(actions_yaml: str):
    config, problems = decode(resource.Config, {"attributes": yaml.safe_load(actions_yaml)})
    assert problems == []
    return resource.process_function(config)


ACTIONS = """
- {key: service.name, value: genops-openrouter, action: upsert}
- {key: service.version, from_attribute: service_version, action: upsert}
- {key: team, value: platform, action: insert}
- {key: region, value: eu, action: update}
"""

# (starting resource attributes, resource attributes afterwards), per resource of one request.
RESOURCES = [
    ([("service.name", "checkout"), ("service_version", "1.2.3"), ("team", "payments")],
     [("service.name", "string_value", "genops-openrouter"), ("service_version", "string_value", "1.2.3"),
      ("team", "string_value", "payments"), ("service.version", "string_value", "1.2.3")]),
    ([("region", "us"), ("service.version", "9")],
     [("region", "string_value", "eu"), ("service.version", "string_value", "9"),
      ("service.name", "string_value", "genops-openrouter"), ("team", "string_value", "platform")]),
    (None,  # a resource that was never set
     [("service.name", "string_value", "genops-openrouter"), ("team", "string_value", "platform")]),
]


def traces():
    request = ExportTraceServiceRequest()
    for start, _ in RESOURCES:
        rs = request.resource_spans.add()
        if start is not None:
            fill(rs.resource.attributes, start)
        span = rs.scope_spans.add().spans.add(name="s")
        fill(span.attributes, [("service_version", "from-span")])
    return request, [(rs.resource, rs.scope_spans[0].spans[0].attributes) for rs in request.resource_spans]


def metrics():
    request = ExportMetricsServiceRequest()
    for start, _ in RESOURCES:
        rm = request.resource_metrics.add()
        if start is not None:
            fill(rm.resource.attributes, start)
        point = rm.scope_metrics.add().metrics.add(name="m").gauge.data_points.add(as_int=1)
        fill(point.attributes, [("service_version", "from-point")])
    return request, [(rm.resource, rm.scope_metrics[0].metrics[0].gauge.data_points[0].attributes)
                     for rm in request.resource_metrics]


def logs():
    request = ExportLogsServiceRequest()
    for start, _ in RESOURCES:
        rl = request.resource_logs.add()
        if start is not None:
            fill(rl.resource.attributes, start)
        record = rl.scope_logs.add().log_records.add()
        fill(record.attributes, [("service_version", "from-record")])
    return request, [(rl.resource, rl.scope_logs[0].log_records[0].attributes) for rl in request.resource_logs]


@pytest.mark.parametrize("build, item_value", [(traces, "from-span"), (metrics, "from-point"),
                                               (logs, "from-record")], ids=["traces", "metrics", "logs"])
def test_actions_apply_to_every_resource_of_every_signal(build, item_value):
    request, parts = build()
    assert not parts[2][0].attributes  # the third resource starts out unset
    assert process_with(ACTIONS)(request) is request
    assert [pairs(res.attributes) for res, _ in parts] == [expected for _, expected in RESOURCES]
    # from_attribute reads the resource's own attributes; the items' are neither read nor touched.
    assert [pairs(item) for _, item in parts] == [[("service_version", "string_value", item_value)]] * 3


def test_every_action_kind_on_a_resource():
    request, parts = traces()
    res = parts[0][0]
    del res.attributes[:]
    fill(res.attributes, [("k8s.pod.uid", "abc-123"), ("tmp.a", 1), ("tmp.b", 2), ("host.id", "h-1"),
                          ("cores", "8"), ("image", "ghcr.io/acme/api:1.4")])
    process = process_with("""
- {pattern: "^tmp\\\\.", action: delete}
- {key: host.id, action: hash}
- {key: cores, converted_type: int, action: convert}
- {key: image, pattern: "^(?P<registry>[^/]+)/.*:(?P<tag>[^:]+)$", action: extract}
- {key: k8s.pod.uid, action: DELETE}
""")
    process(request)
    assert pairs(res.attributes) == [
        ("host.id", "string_value", hashlib.sha256(b"h-1").hexdigest()), ("cores", "int_value", 8),
        ("image", "string_value", "ghcr.io/acme/api:1.4"), ("registry", "string_value", "ghcr.io"),
        ("tag", "string_value", "1.4")]


def test_from_context_on_resources():
    process = process_with("""
- {key: tenant, from_context: metadata.x-tenant, action: upsert}
- {key: peer, from_context: client.address, action: insert}
""")
    request, parts = logs()
    token = client.bind(ClientInfo.from_pairs([("x-tenant", "acme"), ("x-tenant", "beta")], "ipv4:10.0.0.7:5123"))
    try:
        process(request)
    finally:
        client.unbind(token)
    assert [pairs(res.attributes)[-2:] for res, _ in parts] == [
        [("tenant", "string_value", "acme;beta"), ("peer", "string_value", "10.0.0.7")]] * 3


@pytest.mark.parametrize("raw, problems", [
    ({}, ["attributes: at least one action is required"]),
    ({"attributes": []}, ["attributes: at least one action is required"]),
    ({"attributes": None}, ["attributes: expected a list, got null"]),
    ({"actions": [{"key": "k", "action": "delete"}]}, ["actions: unknown key (valid keys: attributes)"]),
    ({"attributes": [{"key": "k", "action": "delete"}], "include": {"match_type": "strict", "services": ["a"]}},
     ["include: unknown key (valid keys: attributes)"]),
    ({"attributes": [{"key": "a", "value": 1, "action": "upsert"},
                     {"key": "b", "from_attribute": "x", "value": 2, "action": "insert"},
                     {"key": "c", "action": "extract", "pattern": "(?P<x>"}]},
     ['attributes::1::from_attribute: cannot be combined with "value": give exactly one of "value", '
      '"from_attribute" or "from_context"',
      "attributes::2::pattern: invalid regular expression: missing ), unterminated subpattern at position 0"]),
])
def test_invalid_settings(raw, problems):
    _, got = decode(resource.Config, raw)
    assert [str(p) for p in got] == problems


def test_built_through_the_loader_and_chained():
    text = """
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:4317"}}}}
processors:
  resource/tag:
    attributes:
      - {key: deployment.environment, value: staging, action: UPSERT}
exporters: {debug: {}}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [resource/tag], exporters: [debug]}
    metrics: {receivers: [otlp], processors: [resource/tag], exporters: [debug]}
    logs: {receivers: [otlp], processors: [resource/tag], exporters: [debug]}
"""
    registry = default_registry()
    config = load(text, registry, env={})
    id_ = ComponentID("resource", "tag")
    received = []

    class Next:
        mutates_data = False

        async def consume(self, request):
            received.append(request)

    processor = config.factories["processors"][id_].create(Settings(id_, None), config.components["processors"][id_], Next())
    assert isinstance(processor, FunctionProcessor) and processor.mutates_data
    request, parts = metrics()
    asyncio.run(processor.consume(request))
    assert received == [request]
    assert [attrs.get(res.attributes, "deployment.environment") for res, _ in parts] == ["staging"] * 3


def test_loader_reports_resource_problems_with_their_paths():
    text = """
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:4317"}}}}
processors:
  resource:
    attributes:
      - {key: service.name, value: x, action: upsert}
      - {key: service.name, from_context: auth.subject, action: upsert}
exporters: {debug: {}}
service:
  pipelines:
    logs: {receivers: [otlp], processors: [resource], exporters: [debug]}
"""
    registry = default_registry()
    with pytest.raises(ConfigError) as caught:
        load(text, registry, env={})
    assert [str(p) for p in caught.value.problems] == [
        'processors::resource::attributes::1::from_context: "auth.*" is not supported: bearertokenauth, the '
        'one authenticator, attaches no auth data']
