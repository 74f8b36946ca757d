"""The zpages extension, served on a free port, describing a real loaded config and its self-metrics."""

from __future__ import annotations

import asyncio
import html
import json
import os
import platform

import aiohttp
from prometheus_client import CollectorRegistry

from relay.component import ComponentID, Host, Settings
from relay.config.decode import decode
from relay.config.load import load
from relay.extensions import zpages
from relay.pipeline.registry import default_registry
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import free_port

# Legal ids full of HTML: the collector's names allow punctuation such as & " ' and #, but no
# symbols, so < and > cannot be in an id.
ODD = 'debug/&"x"#'
ODD_PIPELINE = 'logs/"b"&'



def config_yaml(port: int) -> str:
    return f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  batch:
exporters:
  otlp:
    endpoint: 127.0.0.1:1
    tls:
      insecure: true
  '{ODD}':
extensions:
  zpages:
    endpoint: 127.0.0.1:{port}
  pprof:
  health_check:
service:
  extensions: [zpages, pprof, health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp, '{ODD}']
    '{ODD_PIPELINE}':
      receivers: [otlp]
      exporters: [otlp]
  telemetry:
    metrics:
      level: none
"""


def build_host() -> tuple[Host, zpages.ZPages]:
    registry = default_registry()
    config = load(config_yaml(free_port()), registry, env={})
    telemetry = SelfMetrics(CollectorRegistry())
    telemetry.receiver_accepted[Signal.TRACES].labels("otlp", "grpc").inc(5)
    telemetry.receiver_refused[Signal.LOGS].labels("otlp", "grpc", "QueueFullError").inc(2)
    # The exporter shares the receiver's id "otlp": only the exporter= label may show on it.
    telemetry.exporter_sent[Signal.TRACES].labels("otlp").inc(7)
    telemetry.exporter_sent[Signal.TRACES].labels(ODD).inc(1)
    host = Host({}, config, telemetry)
    # A real exporter, not started: it registers its sending queue's size and capacity gauges.
    exporter_id = ComponentID("otlp")
    config.factories["exporters"][exporter_id].create(Settings(exporter_id, telemetry, host=host), config.components["exporters"][exporter_id])
    ext_id = ComponentID("zpages")
    ext = zpages.create(Settings(ext_id, telemetry, host=host), config.components["extensions"][ext_id])
    host.extensions[ext_id] = ext
    return host, ext


def fetch(*requests: tuple[str, dict]) -> list[tuple[int, str, str]]:
    """(status, content type, body) of each GET (path, headers) against a started zpages."""
    _, ext = build_host()

    async def run():
        await ext.start()
        try:
            async with aiohttp.ClientSession() as session:
                out = []
                for path, headers in requests:
                    async with session.get(f"http://127.0.0.1:{ext.port}{path}", headers=headers) as answer:
                        out.append((answer.status, answer.content_type, await answer.text()))
                return out
        finally:
            await ext.shutdown()

    return asyncio.run(run())


def components(pipeline: dict) -> dict[tuple[str, str], dict]:
    return {(role, c["id"]): c for role in ("receivers", "processors", "exporters") for c in pipeline[role]}


def test_config_defaults_and_endpoint_validation():
    assert zpages.Config().endpoint == "localhost:55679"
    _, problems = decode(zpages.Config, {"endpoint": "localhost"}, ("extensions", "zpages"))
    assert [str(p) for p in problems] == ['extensions::zpages::endpoint: "localhost" is not a host:port endpoint']


def test_servicez_shows_the_relay_its_pipelines_and_extensions():
    (status, kind, page), (jstatus, jkind, body) = fetch(("/debug/servicez", {}),
                                                         ("/debug/servicez?format=json", {}))
    assert (status, kind) == (200, "text/html")
    assert (jstatus, jkind) == (200, "application/json")
    data = json.loads(body)
    assert data["version"] and data["pid"] == os.getpid()
    assert data["python"].startswith(platform.python_version())
    assert data["start_time"].endswith("Z") and 0 <= data["uptime_seconds"] < 60
    assert data["pipelines"] == [
        {"id": "traces", "signal": "traces", "receivers": ["otlp"], "processors": ["batch"],
         "exporters": ["otlp", ODD]},
        {"id": ODD_PIPELINE, "signal": "logs", "receivers": ["otlp"], "processors": [], "exporters": ["otlp"]},
    ]
    assert data["extensions"] == ["zpages", "pprof", "health_check"]
    assert set(data["pages"]) == {"/debug/servicez", "/debug/pipelinez", "/debug/extensionz", "/debug/featurez"}
    for text in (data["version"], str(os.getpid()), "health_check", "batch"):
        assert text in page
    for link in data["pages"]:
        assert f'href="{link}"' in page


def test_pipelinez_shows_each_components_counters_by_kind():
    [(status, _, body)] = fetch(("/debug/pipelinez?format=json", {}))
    assert status == 200
    traces, logs = json.loads(body)["pipelines"]
    found = components(traces)
    receiver = found[("receivers", "otlp")]
    assert receiver["kind"] == "receiver"
    assert {"name": "otelcol_receiver_accepted_spans_total", "labels": {"transport": "grpc"}, "value": 5.0} \
        in receiver["metrics"]
    # Only samples labelled receiver="otlp": the exporter "otlp"'s are not the receiver's.
    assert all(not m["name"].startswith("otelcol_exporter") for m in receiver["metrics"])
    exporter = found[("exporters", "otlp")]
    assert exporter["kind"] == "exporter"
    assert {"name": "otelcol_exporter_sent_spans_total", "labels": {}, "value": 7.0} in exporter["metrics"]
    assert all(not m["name"].startswith("otelcol_receiver") for m in exporter["metrics"])
    assert exporter["queue"] == {"size": 0.0, "capacity": 1000.0}
    assert found[("exporters", ODD)]["metrics"] == [
        {"name": "otelcol_exporter_sent_spans_total", "labels": {}, "value": 1.0}]
    assert "queue" not in found[("exporters", ODD)]  # never built, so no queue gauges
    assert found[("processors", "batch")] == {"id": "batch", "type": "batch", "kind": "processor", "metrics": []}
    # Each pipeline shows its own signal's counters: the logs refusals are not in traces, and back.
    assert all("log_records" not in m["name"] for m in receiver["metrics"])
    assert components(logs)[("receivers", "otlp")]["metrics"] == [
        {"name": "otelcol_receiver_refused_log_records_total",
         "labels": {"transport": "grpc", "reason": "QueueFullError"}, "value": 2.0}]


def test_pipelinez_html_shows_the_values_and_escapes_everything():
    [(status, kind, page)] = fetch(("/debug/pipelinez", {}))
    assert (status, kind) == (200, "text/html")
    assert '<code>otelcol_receiver_accepted_spans_total{transport=&quot;grpc&quot;}</code> 5' in page
    assert "<code>otelcol_exporter_sent_spans_total</code> 7" in page
    assert "queue: 0 / 1000 (size / capacity)" in page
    # Ids are shown, escaped: no markup from the config reaches the page.
    assert html.escape(ODD) in page and html.escape(ODD_PIPELINE) in page
    assert '&"x"' not in page and '"b"&' not in page


def test_extensionz_featurez_and_json_by_accept_header():
    answers = fetch(("/debug/extensionz", {"Accept": "application/json"}),
                    ("/debug/extensionz", {"Accept": "text/html,application/json;q=0.9"}),
                    ("/debug/featurez", {}),
                    ("/debug/featurez?format=json", {}))
    (status, kind, body), (_, browser_kind, page), (fstatus, _, fpage), (_, _, fbody) = answers
    assert (status, kind) == (200, "application/json")
    assert json.loads(body) == {"extensions": [{"id": "zpages", "type": "zpages"}, {"id": "pprof", "type": "pprof"},
                                               {"id": "health_check", "type": "health_check"}]}
    assert browser_kind == "text/html" and "<td>pprof</td>" in page
    assert fstatus == 200 and "No feature gates" in fpage
    assert json.loads(fbody) == {"gates": []}


def test_unknown_paths_are_404_and_a_bad_format_is_400():
    answers = fetch(("/", {}), ("/debug/tracez", {}), ("/debug/servicez/x", {}),
                    ("/debug/servicez?format=xml", {}))
    assert [status for status, _, _ in answers] == [404, 404, 404, 400]
    assert 'format must be "json" or "html"' in answers[3][2]


def test_pages_without_a_host_are_empty_not_broken():
    ext = zpages.create(Settings(ComponentID("zpages"), None), zpages.Config("127.0.0.1:0"))
    assert ext.pipelinez() == {"pipelines": []}
    assert ext.extensionz() == {"extensions": []}
    assert ext.servicez()["pipelines"] == []
