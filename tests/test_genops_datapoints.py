"""The genops processor on metrics: attribution on every data point of every metric type."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from relay import attrs
from relay.component import ComponentID, Settings
from relay.config.decode import decode
from relay.processors import genops
from relay.telemetry import SelfMetrics
from tests.support import Recorder


def build(settings: dict | None = None):
    config, problems = decode(genops.Config, settings or {})
    assert problems == []
    telemetry = SelfMetrics()
    return genops.create(Settings(ComponentID("genops"), telemetry), config, Recorder()), telemetry


def every_kind(resource: dict, point_attributes: dict | None = None) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    for key, value in resource.items():
        attrs.put(rm.resource.attributes, key, value)
    metrics = rm.scope_metrics.add().metrics
    points = [metrics.add(name="g").gauge.data_points.add(as_double=1.0),
              metrics.add(name="s").sum.data_points.add(as_int=2),
              metrics.add(name="h").histogram.data_points.add(count=1, sum=3.0),
              metrics.add(name="e").exponential_histogram.data_points.add(count=1),
              metrics.add(name="q").summary.data_points.add(count=1, sum=1.0)]
    for point in points:
        for key, value in (point_attributes or {}).items():
            attrs.put(point.attributes, key, value)
    return request


def point_attributes(request) -> list[dict]:
    out = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in getattr(metric, metric.WhichOneof("data")).data_points:
                    out.append({kv.key: attrs.to_python(kv.value) for kv in point.attributes})
    return out


def test_every_point_of_every_metric_type_gets_team_and_project_from_the_resource():
    processor, _ = build()
    request = every_kind({"service.name": "chat", "genops.team": "search"}, {"route": "/q"})
    processor.process(request)
    assert point_attributes(request) == [{"route": "/q", "genops.team": "search",
                                          "genops.project": "unassigned"}] * 5


def test_the_point_comes_before_the_resource_then_rules_then_defaults():
    processor, _ = build({"rules": [{"attribute": "service.name", "value": "billing",
                                     "set": {"team": "payments", "project": "invoices"}}]})
    request = every_kind({"service.name": "billing", "genops.project": "ledger"}, {"genops.team": "own"})
    processor.process(request)
    assert point_attributes(request)[0] == {"genops.team": "own", "genops.project": "ledger"}
    request = every_kind({"service.name": "billing"})
    processor.process(request)
    assert point_attributes(request)[0] == {"genops.team": "payments", "genops.project": "invoices"}


def test_only_the_configured_fields_are_written():
    processor, _ = build({"metrics": {"attributes": ["team", "environment"]},
                          "defaults": {"team": "t", "project": "p"}})
    request = every_kind({"deployment.environment.name": "prod"})
    processor.process(request)
    assert point_attributes(request)[0] == {"genops.team": "t", "genops.environment": "prod"}


def test_values_are_capped_and_counted():
    processor, telemetry = build()
    request = every_kind({"genops.team": "x" * 10_000})
    processor.process(request)
    team = point_attributes(request)[0]["genops.team"]
    assert len(team.encode()) <= 256 and team.endswith("...[truncated]")
    assert telemetry.registry.get_sample_value("otelcol_processor_genops_truncated_values_total",
                                               {"processor": "genops"}) == 1


def test_more_distinct_points_than_the_cache_holds_are_all_attributed():
    processor, _ = build()
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    metric = rm.scope_metrics.add().metrics.add(name="calls")
    for index in range(10_000):
        attrs.put(metric.sum.data_points.add(as_int=1).attributes, "genops.project", f"p{index}")
    processor.process(request)
    points = point_attributes(request)
    assert len({p["genops.project"] for p in points}) == 10_000
    assert all(p["genops.team"] == "unassigned" for p in points)


def test_unknown_metrics_fields_are_config_errors():
    _, problems = decode(genops.Config, {"metrics": {"attributes": ["team", "squad"]}})
    assert [str(p) for p in problems] == ["metrics::attributes::1: unknown field (valid: team, project, "
                                          "customer_id, environment, feature, cost_center)"]


def test_the_native_and_python_paths_write_the_same_points(monkeypatch):
    """The spliced wire form (native) and the merged message (pure Python) are one request, and
    the bytes bound for exporters describe the message processors see."""
    from relay import points, received
    from tests.test_points import CASES, parsed

    if not points.NATIVE:
        pytest.skip("the native point walker was not built here")
    settings = {"metrics": {"attributes": ["team", "project", "environment"]},
                "defaults": {"team": "none", "environment": "prod"},
                "rules": [{"attribute": "gen_ai.request.model", "value": "x", "set": {"team": "models"}}]}
    out = {}
    for path in ("native", "python"):
        if path == "python":
            monkeypatch.setattr(points, "_points", None)
        processor, _ = build(settings)
        results = []
        for _, data in CASES:
            request = parsed(data)
            token = received.bind(request, data)
            try:
                processor.process(request)
                bound = received.raw_bytes(request)
            finally:
                received.unbind(token)
            assert bound is not None and parsed(bound) == request
            results.append(request)
        out[path] = results
    assert out["native"] == out["python"]
    written = [{kv.key: attrs.to_python(kv.value) for kv in point.attributes}
               for request in out["native"] for rm in request.resource_metrics for sm in rm.scope_metrics
               for metric in sm.metrics for point in points.data_points(metric)]
    assert written and [a for a in written if "genops.team" not in a or "genops.environment" not in a] == []
    assert any(a["genops.team"] == "models" for a in written)
