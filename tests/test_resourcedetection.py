"""The resourcedetection processor: env parsing, the system detector, override, and a real pipeline.

Expected values are the collector's documented behaviour (processor/resourcedetectionprocessor
README, internal/env and internal/system): OTEL_RESOURCE_ATTRIBUTES is k=v,k2=v2 with values
query-unescaped; host.name and os.type are the only system attributes on by default;
hostname_sources defaults to [dns, os]; override defaults to true; the first detector wins.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay import attrs
from relay.component import ComponentID
from relay.config.decode import decode
from relay.config.load import load
from relay.errors import RelayError
from relay.pipeline.graph import Graph
from relay.pipeline.registry import default_registry
from relay.processors import resourcedetection
from relay.processors.resourcedetection import env, system
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import Recorder, free_port

ID = ComponentID("resourcedetection")


def configure(raw: dict) -> resourcedetection.Config:
    config, problems = decode(resourcedetection.Config, raw)
    assert problems == [], [str(p) for p in problems]
    return config


class Facts(system.HostFacts):
    """A host whose files live under ``root`` and whose name lookups answer as told."""

    def __init__(self, root, hostname="relay-7", fqdn: str | None = "relay-7.example.internal"):
        self.root = root
        self._hostname, self._fqdn = hostname, fqdn

    def hostname(self) -> str:
        if self._hostname is None:
            raise OSError("no hostname")
        return self._hostname

    def fqdn(self) -> str:
        if self._fqdn is None:
            raise OSError("no such host")
        return self._fqdn

    cname = fqdn

    def reverse_lookup(self) -> str:
        raise OSError("no PTR record")


@pytest.fixture
def host(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    (tmp_path / "etc/os-release").write_text('NAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
                                             'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
        "model name\t: Intel(R) Xeon(R)\nstepping\t: 7\ncache size\t: 36608 KB\n\nprocessor\t: 1\n"
        "vendor_id\t: Other\n")
    for name, flags, mac in (("lo", "0x9", "00:00:00:00:00:00"), ("eth0", "0x1003", "02:42:ac:11:00:02"),
                             ("eth1", "0x1002", "02:42:ac:11:00:03")):
        iface = tmp_path / "sys/class/net" / name
        iface.mkdir(parents=True)
        (iface / "flags").write_text(flags + "\n")
        (iface / "address").write_text(mac + "\n")
    return Facts(tmp_path)


def detected(raw: dict, environ=None, facts=None) -> dict:
    processor = resourcedetection.ResourceDetection(ID, configure(raw), Recorder(), environ=environ or {},
                                                    facts=facts)
    asyncio.run(processor.start())
    return processor.detected


# --- env -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (' example.org/test-1 =  test $ %3A \\" ,  Abc=Def  ', {"example.org/test-1": 'test $ : \\"', "Abc": "Def"}),
    ("single=key", {"single": "key"}),
    ("service.name=chat,deployment.environment=prod,", {"service.name": "chat", "deployment.environment": "prod"}),
    ("team=a%2Cb,note=two+words,empty=", {"team": "a,b", "note": "two words", "empty": ""}),
    ("k8s.pod.name=p%C3%A9", {"k8s.pod.name": "pé"}),
    ("a=1,a=2", {"a": "2"}),
])
def test_env_values_are_query_unescaped(text, expected):
    assert env.parse(text) == expected


@pytest.mark.parametrize("text, message", [
    ("invalid=url-%3-encoding", 'invalid resource format in attribute: "invalid=url-%3-encoding", '
                                'err: invalid URL escape "%3-"'),
    ("invalid-char-ü=test", 'invalid resource format: "invalid-char-ü=test"'),
    ("invalid-char=ü-test", 'invalid resource format: "invalid-char=ü-test"'),
    ("extra=chars, a", 'invalid resource format, invalid text: " a"'),
    ("key=value,key", 'invalid resource format, invalid text: "key"'),
    ("=value", 'invalid resource format, invalid text: "=value"'),
    ("k=" + "v" * 257, 'invalid resource format, invalid text: "k=' + "v" * 257 + '"'),
])
def test_malformed_env_values_are_errors(text, message):
    with pytest.raises(env.FormatError) as caught:
        env.parse(text)
    assert str(caught.value) == message


def test_env_reads_the_deprecated_variable_only_when_the_current_one_is_blank():
    assert env.detect({"OTEL_RESOURCE_ATTRIBUTES": "  ", "OTEL_RESOURCE": "a=1"}) == {"a": "1"}
    assert env.detect({"OTEL_RESOURCE_ATTRIBUTES": "b=2", "OTEL_RESOURCE": "a=1"}) == {"b": "2"}
    assert env.detect({}) == {}


def test_a_malformed_variable_stops_the_start():
    processor = resourcedetection.ResourceDetection(ID, configure({"detectors": ["env"]}), Recorder(),
                                                    environ={"OTEL_RESOURCE_ATTRIBUTES": "team"})
    with pytest.raises(RelayError, match='detector env failed: invalid resource format, invalid text: "team"'):
        asyncio.run(processor.start())


# --- system ----------------------------------------------------------------------------------

def test_system_defaults_are_host_name_from_dns_and_os_type(host):
    assert detected({"detectors": ["system"]}, facts=host) == {"host.name": "relay-7.example.internal",
                                                               "os.type": host.os_type()}


def test_hostname_sources_os_is_the_kernel_hostname():
    found = detected({"detectors": ["system"], "system": {"hostname_sources": ["os"]}})
    assert found["host.name"] == socket.gethostname()
    assert set(found) == {"host.name", "os.type"}


def test_the_next_hostname_source_answers_when_one_fails(tmp_path):
    facts = Facts(tmp_path, hostname="relay-7", fqdn=None)
    assert detected({"detectors": ["system"]}, facts=facts)["host.name"] == "relay-7"
    assert detected({"detectors": ["system"], "system": {"hostname_sources": ["lookup", "cname", "os"]}},
                    facts=facts)["host.name"] == "relay-7"


def test_no_hostname_from_any_source_stops_the_start(tmp_path):
    with pytest.raises(RelayError, match="detector system failed: all hostname sources failed to get hostname"):
        detected({"detectors": ["system"], "system": {"hostname_sources": ["dns", "lookup"]}},
                 facts=Facts(tmp_path, fqdn=None))


def test_attributes_are_enabled_and_disabled_one_by_one(host):
    every = {name: {"enabled": True} for name in resourcedetection.config.SYSTEM_ATTRIBUTES}
    every["os.type"] = {"enabled": False}
    found = detected({"detectors": ["system"], "system": {"hostname_sources": ["os"], "resource_attributes": every}},
                     facts=host)
    assert "os.type" not in found
    assert {k: v for k, v in found.items() if k not in ("host.ip", "host.arch", "os.description")} == {
        "host.name": "relay-7",
        "host.id": "3d1219c7c4c5404aaa1f6d2a48adfda4",
        "host.mac": ["02-42-AC-11-00-02"],  # up, not loopback; IEEE RA form
        "host.interface": ["eth0"],
        "os.name": "Debian GNU/Linux",
        "os.version": "12",
        "host.cpu.vendor.id": "GenuineIntel",
        "host.cpu.family": "6",
        "host.cpu.model.id": "85",
        "host.cpu.model.name": "Intel(R) Xeon(R)",
        "host.cpu.stepping": "7",
        "host.cpu.cache.l2.size": 36608,
    }  # os.build.id: the file has no BUILD_ID, so it is left out
    assert found["os.description"].startswith("Debian GNU/Linux 12 (bookworm) (")


@pytest.mark.parametrize("machine, arch", [("x86_64", "amd64"), ("aarch64", "arm64"), ("armv7l", "arm32"),
                                           ("i686", "x86"), ("ppc64le", "ppc64"), ("s390x", "s390x")])
def test_host_arch_uses_the_semantic_convention_values(monkeypatch, machine, arch):
    monkeypatch.setattr(system.platform, "machine", lambda: machine)
    assert system.HostFacts().host_arch() == arch


# --- merging ---------------------------------------------------------------------------------

def traces_with(resource: dict) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key, value in resource.items():
        attrs.put(rs.resource.attributes, key, value)
    rs.scope_spans.add().spans.add(name="s", trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    return request


def resource_of(request) -> dict:
    return {kv.key: attrs.to_python(kv.value) for kv in request.resource_spans[0].resource.attributes}


@pytest.mark.parametrize("override, expected", [
    (True, {"service.name": "chat", "host.name": "relay-7", "team": "platform", "os.type": "linux"}),
    (False, {"service.name": "chat", "host.name": "app-pod-1", "team": "platform", "os.type": "linux"}),
])
def test_override(host, override, expected, monkeypatch):
    monkeypatch.setattr(host, "os_type", lambda: "linux")
    processor = resourcedetection.ResourceDetection(
        ID, configure({"detectors": ["env", "system"], "override": override,
                       "system": {"hostname_sources": ["os"]}}),
        Recorder(), environ={"OTEL_RESOURCE_ATTRIBUTES": "team=platform"}, facts=host)
    asyncio.run(processor.start())
    request = traces_with({"service.name": "chat", "host.name": "app-pod-1"})
    asyncio.run(processor.consume(request))
    assert resource_of(processor.next.requests[0]) == expected


def test_override_is_the_default_and_the_first_detector_wins(host):
    assert configure({}).override is True and configure({}).detectors == ["env"]
    environ = {"OTEL_RESOURCE_ATTRIBUTES": "host.name=from-env"}
    assert detected({"detectors": ["env", "system"], "system": {"hostname_sources": ["os"]}},
                    environ, host)["host.name"] == "from-env"
    assert detected({"detectors": ["system", "env"], "system": {"hostname_sources": ["os"]}},
                    environ, host)["host.name"] == "relay-7"


def test_the_deprecated_attributes_list_keeps_only_those_detected(host):
    found = detected({"detectors": ["env", "system"], "attributes": ["host.name", "b"],
                      "system": {"hostname_sources": ["os"]}}, {"OTEL_RESOURCE_ATTRIBUTES": "a=1,b=2"}, host)
    assert found == {"host.name": "relay-7", "b": "2"}


def test_network_detectors_are_accepted_logged_once_and_add_nothing(component_log):
    found = detected({"detectors": ["env", "gcp", "ec2", "docker"], "ec2": {"tags": ["^team$"]}},
                     {"OTEL_RESOURCE_ATTRIBUTES": "a=1"})
    assert found == {"a": "1"}
    lines = [r.getMessage() for r in component_log.records if "has no effect" in r.getMessage()]
    assert lines == ["accepted, has no effect here: detector gcp (needs network)",
                     "accepted, has no effect here: detector ec2 (needs network)",
                     "accepted, has no effect here: detector docker (needs the Docker daemon)"]


@pytest.mark.parametrize("raw, problems", [
    ({"detectors": ["env", "cloud"]}, ['detectors::1: unknown detector "cloud" (known: ']),
    ({"detectors": []}, ["detectors: at least one detector is required"]),
    ({"detectors": ["env", "env"]}, ['detectors: "env" is listed twice']),
    ({"timeout": "0s"}, ["timeout: must be positive"]),
    ({"system": {"hostname_sources": ["dns", "hosts"]}},
     ['system::hostname_sources::1: "hosts" is not one of: dns, os, cname, lookup']),
    ({"system": {"resource_attributes": {"host.nam": {"enabled": True}}}},
     ["system::resource_attributes::host.nam: unknown attribute (known: host.arch, "]),
    ({"refresh": "1m"}, ["refresh: unknown key (valid keys: "]),
])
def test_invalid_settings_name_their_key(raw, problems):
    _, got = decode(resourcedetection.Config, raw)
    assert len(got) == len(problems) and all(str(p).startswith(e) for p, e in zip(got, problems)), got


# --- through a pipeline ----------------------------------------------------------------------

def test_every_signal_through_a_running_relay(sink, monkeypatch):
    """A real OTLP/gRPC receiver and exporter around the processor; the resources arrive enriched."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,service.name=relay")
    port = free_port()
    text = yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}},
        "processors": {"resourcedetection": {"detectors": ["env", "system", "eks"], "override": False,
                                             "system": {"hostname_sources": ["os"]}}},
        "exporters": {"otlp": {"endpoint": sink.endpoint, "tls": {"insecure": True}}},
        "service": {"pipelines": {signal: {"receivers": ["otlp"], "processors": ["resourcedetection"],
                                           "exporters": ["otlp"]} for signal in ("traces", "metrics", "logs")}},
    })
    config = load(text, default_registry(), env={})
    requests = {Signal.TRACES: traces_with({"service.name": "chat"}), Signal.METRICS: ExportMetricsServiceRequest(),
                Signal.LOGS: ExportLogsServiceRequest()}
    rm = requests[Signal.METRICS].resource_metrics.add()
    rm.scope_metrics.add().metrics.add(name="m").gauge.data_points.add(as_int=1)
    requests[Signal.LOGS].resource_logs.add().scope_logs.add().log_records.add().body.string_value = "x"

    async def run():
        graph = Graph(config, SelfMetrics())
        await graph.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                for signal, request in requests.items():
                    call = channel.unary_unary(signal.method, request_serializer=lambda r: r.SerializeToString(),
                                               response_deserializer=signal.response_type.FromString)
                    await call(request, timeout=10)
            for signal in requests:
                assert await asyncio.to_thread(sink.wait_for, signal, 1)
        finally:
            await graph.shutdown(5.0)

    asyncio.run(run())
    for signal in requests:
        resource = signal.resources(sink.requests[signal][0])[0].resource
        got = {kv.key: attrs.to_python(kv.value) for kv in resource.attributes}
        # override: false keeps the span's own service.name; the rest is filled in.
        assert got.get("service.name") == ("chat" if signal is Signal.TRACES else "relay")
        assert got["deployment.environment.name"] == "staging"
        assert got["host.name"] == socket.gethostname()
        assert "os.type" in got


def test_detection_past_the_timeout_stops_the_start(tmp_path):
    release = threading.Event()

    class Hanging(Facts):
        def fqdn(self) -> str:
            release.wait(10)  # a resolver that does not answer; let go when the test ends
            return "late.example"

    try:
        with pytest.raises(RelayError, match=r"detector system took longer than the timeout \(0.05s\)"):
            detected({"detectors": ["system"], "timeout": "50ms"}, facts=Hanging(tmp_path))
    finally:
        release.set()


def test_registered_under_both_names():
    registry = default_registry()
    assert registry.processors["resourcedetection"] is registry.processors["resource_detection"]
