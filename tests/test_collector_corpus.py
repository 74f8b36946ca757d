"""Real collector configs from public repositories, cut to the relay's components, must validate.

Each file in tests/testdata/collector-configs is a config as its project wrote it, with a
first line naming where it came from. The test cuts it to the component types the relay
implements (tests/collector_configs/cut.py) and loads it with the loader that
``genops-relay validate`` uses, starting nothing. What is left is the settings real users
give the components the relay has: a file that fails shows a setting the relay does not
accept (a gap) or a mistake in the source, and is listed in EXPECTED_REJECTIONS with
which of the two it is. A listed file that starts to validate fails the test too, so the
list shows exactly what is still missing.

``pytest -s`` prints how many files validate.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from relay.config.load import load
from relay.errors import ConfigError
from relay.pipeline.registry import Registry, default_registry
from tests.collector_configs.cut import KINDS, cut, dump, supported_types, type_of

CORPUS = Path(__file__).parent / "testdata" / "collector-configs"
FILES = sorted(path.name for path in CORPUS.glob("*.yaml"))
SOURCE_LINE = re.compile(r"^# source: [A-Za-z0-9][\w.-]*/[\w.-]+ \S+ @ [0-9a-f]{40}$")
MIN_FILES = 30
MIN_PASS_RATE = 0.9

# What each file's environment variables are set to, as the project's own compose file
# or docs would set them (hosts, ports, keys): the same for every run, so that a
# rejection is about the settings, never about the machine's environment. Variables
# with a ":-default" are not listed, so their defaults apply.
ENVIRONMENT = {
    "AD_PROMETHEUS_PORT": "9464",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    "APPS_DOMAIN": "apps.example.com",
    "ELASTIC_OTLP_API_KEY": "example-api-key",
    "ELASTIC_OTLP_ENDPOINT": "https://example.apm.elastic-cloud.com:443",
    "ENVOY_PORT": "8080",
    "FRONTEND_PROXY_ADDR": "frontend-proxy:8080",
    "IMAGE_PROVIDER_HOST": "image-provider",
    "IMAGE_PROVIDER_PORT": "8081",
    "INTERNAL_TELEMETRY_NEW_RELIC_LICENSE_KEY": "example-license-key",
    "LANGSIGHT_API_KEY": "example-api-key",
    "LOG_AUTH": "ZXhhbXBsZTpleGFtcGxl",
    "LOG_EXPORTER_LOG_VERBOSITY": "detailed",
    "LOG_RESOURCE_ID": "113700000000",
    "METRIC_AUTH": "ZXhhbXBsZTpleGFtcGxl",
    "METRIC_RESOURCE_ID": "113700000001",
    "NEW_RELIC_API_KEY": "example-license-key",
    "OTEL_COLLECTOR_HOST": "otel-collector",
    "OTEL_COLLECTOR_PORT_GRPC": "4317",
    "OTEL_COLLECTOR_PORT_HTTP": "4318",
    "OTEL_COLLECTOR_TOKEN": "example-token",
    "OTEL_K8S_POD_NAME": "otel-collector-0",
    "OTLP_ENDPOINT": "ingest.us.signoz.cloud:443",
    "OTLP_INSECURE": "false",
    "OTLP_INSECURE_SKIP_VERIFY": "false",
    "POSTGRES_HOST": "postgresql",
    "POSTGRES_MONITORING_PASSWORD": "example-password",
    "POSTGRES_PORT": "5432",
    "PROMETHEUS_REMOTE_WRITE_ENDPOINT":
        "https://aps-workspaces.ap-northeast-1.amazonaws.com/workspaces/ws-example/api/v1/remote_write",
    "REDACTION_HMAC_KEY": "example-hmac-key",
    "SIGNOZ_INGESTION_KEY": "example-ingestion-key",
}

# Every file the relay rejects after the cut, and why: "error in the source: ..." for a
# mistake the collector would refuse as well, "gap: ..." for what the relay lacks.
EXPECTED_REJECTIONS: dict[str, str] = {
    "belldog-lambda-sigv4.yaml":
        "gap: the sigv4auth extension (prometheusremotewrite's auth.authenticator names it)",
    "cms-managed-care-review-jaeger.yaml":
        "error in the source: settings the collector dropped long ago: the otlp receiver's "
        "http cors_allowed_origins (a cors: block since v0.41.0) and the jaeger exporter's top-level insecure "
        "(under tls: since v0.36.0)",
    "genops-ai-observability.yaml":
        "error in the source: memory_limiter without check_interval, which the collector refuses too "
        "(\"'check_interval' must be greater than zero\")",
    "redhat-edge-kepler-non-k8s.yaml":
        "error in the source: the traces pipeline names receiver otlp, which is not configured",
}

_VARIABLE = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def _text(name: str) -> str:
    return (CORPUS / name).read_text(encoding="utf-8")


def _problems(name: str, registry: Registry) -> list[str]:
    """Why the relay rejects the cut file ``name``; empty when it validates."""
    try:
        load(dump(cut(_text(name), registry)), registry, ENVIRONMENT)
    except ConfigError as error:
        return [str(problem) for problem in error.problems]
    return []


@pytest.fixture(scope="module")
def registry() -> Registry:
    return default_registry()


@pytest.fixture(scope="module")
def outcomes(registry) -> dict[str, list[str]]:
    return {name: _problems(name, registry) for name in FILES}


def test_the_corpus_is_large_enough():
    assert len(FILES) >= MIN_FILES, f"{len(FILES)} files in {CORPUS.name}, the corpus needs at least {MIN_FILES}"


@pytest.mark.parametrize("name", FILES)
def test_the_first_line_names_the_source_and_commit(name):
    first = _text(name).split("\n", 1)[0]
    assert SOURCE_LINE.match(first), f"{name}: first line must be '# source: <owner>/<repo> <path> @ <commit>'"


@pytest.mark.parametrize("name", FILES)
def test_the_file_validates_unless_listed(name, outcomes):
    problems = outcomes[name]
    if name in EXPECTED_REJECTIONS:
        assert problems, f"{name} now validates: remove it from EXPECTED_REJECTIONS"
    else:
        assert not problems, f"{name} is rejected:\n  " + "\n  ".join(problems)


def test_enough_of_the_corpus_validates(outcomes):
    valid = sum(not problems for problems in outcomes.values())
    summary = f"collector corpus: {valid} of {len(outcomes)} configs validate after the cut"
    print(summary)
    assert valid >= MIN_PASS_RATE * len(outcomes), summary


def test_the_rejection_table_names_corpus_files_with_a_classed_reason():
    for name, reason in EXPECTED_REJECTIONS.items():
        assert name in FILES, f"EXPECTED_REJECTIONS names {name}, which is not in the corpus"
        assert reason.startswith(("error in the source: ", "gap: ")), f"{name}: unclassed reason {reason!r}"


# Read from the whole file, not the cut: a variable must not go unset because the relay
# gained the component that uses it.
@pytest.mark.parametrize("name", FILES)
def test_every_variable_the_file_needs_is_set(name):
    needed = {var for var, default in _VARIABLE.findall(_text(name)) if not default}
    assert needed <= ENVIRONMENT.keys(), f"{name}: add {sorted(needed - ENVIRONMENT.keys())} to ENVIRONMENT"


def test_every_listed_variable_is_used():
    used = {var for name in FILES for var, default in _VARIABLE.findall(_text(name)) if not default}
    assert ENVIRONMENT.keys() <= used, f"ENVIRONMENT lists unused {sorted(ENVIRONMENT.keys() - used)}"


@pytest.mark.parametrize("name", FILES)
def test_the_cut_is_deterministic_and_removes_only_unsupported_types(name, registry):
    text = _text(name)
    first, second = cut(text, registry), cut(text, registry)
    assert first == second and dump(first) == dump(second)

    supported = supported_types(registry)
    original = yaml.safe_load(text)
    for kind in KINDS:
        before = set(original.get(kind) or {})
        after = set(first.get(kind) or {})
        assert after <= before, f"{name}: the cut added {kind} {sorted(after - before)}"
        assert all(type_of(key) in supported[kind] for key in after), f"{name}: unsupported {kind} kept"
        lost = {key for key in before - after if type_of(key) in supported[kind]}
        if kind == "connectors":
            # A supported connector goes only when its other side went with a dropped pipeline.
            named = {n for spec in first["service"]["pipelines"].values() for side in ("receivers", "exporters")
                     for n in spec.get(side) or []}
            assert not lost & named, f"{name}: connectors {sorted(lost & named)} removed but still named"
        else:
            assert not lost, f"{name}: supported {kind} {sorted(lost)} removed"

    service = first["service"]
    for name_ in service.get("extensions") or []:
        assert type_of(name_) in supported["extensions"], f"{name}: unsupported extension {name_} kept"
    kept_pipelines = service["pipelines"]
    assert set(kept_pipelines) <= set(original["service"]["pipelines"])
    for pipeline_id, spec in kept_pipelines.items():
        source = original["service"]["pipelines"][pipeline_id]
        for side in ("receivers", "processors", "exporters"):
            names = spec.get(side) or []
            # Order kept, nothing added: the cut only takes out.
            assert names == [n for n in source.get(side) or [] if n in names], f"{name}: {pipeline_id} reordered"
        for side, kinds in (("receivers", ("receivers", "connectors")), ("processors", ("processors",)),
                            ("exporters", ("exporters", "connectors"))):
            for n in spec.get(side) or []:
                assert any(type_of(n) in supported[k] for k in kinds), f"{name}: {pipeline_id} keeps {n}"


def _tiny_registry() -> Registry:
    """A registry of a few real factories: cut() must read the types from whatever registry it is given."""
    full = default_registry()
    return Registry(receivers={"otlp": full.receivers["otlp"]}, processors={"batch": full.processors["batch"]},
                    exporters={"debug": full.exporters["debug"]},
                    connectors={"genops_metrics": full.connectors["genops_metrics"]},
                    extensions={"health_check": full.extensions["health_check"]})


TINY = """\
receivers:
  otlp: {protocols: {grpc: {endpoint: "0.0.0.0:4317"}}}
  kafka: {brokers: [kafka:9092]}
processors:
  batch: {timeout: 2s, no_such_setting: 1}
  tail_sampling: {decision_wait: 10s}
exporters:
  debug: {verbosity: detailed}
  datadog: {api: {key: k}}
connectors:
  genops_metrics: {}
  forward: {}
extensions:
  health_check: {}
  oauth2client: {}
service:
  extensions: [health_check, oauth2client]
  pipelines:
    traces:
      receivers: [otlp, kafka]
      processors: [tail_sampling, batch, undefined_processor]
      exporters: [debug, genops_metrics, datadog]
    metrics/genops:
      receivers: [genops_metrics]
      exporters: [datadog]
    logs:
      receivers: [kafka]
      exporters: [debug]
    logs/forwarded:
      receivers: [forward]
      exporters: [debug]
    metrics/empty:
      receivers: []
      exporters: [debug]
"""


def test_the_cut_follows_its_rules_on_a_small_config():
    result = cut(TINY, _tiny_registry())
    # Unsupported types leave their sections; a supported component keeps even an unknown setting.
    assert set(result["receivers"]) == {"otlp"}
    assert result["processors"] == {"batch": {"timeout": "2s", "no_such_setting": 1}}
    assert set(result["exporters"]) == {"debug"}
    assert result["extensions"] == {"health_check": {}}
    assert result["service"]["extensions"] == ["health_check"]
    pipelines = result["service"]["pipelines"]
    # A reference to a component the source never defined stays for the loader to report,
    # when its type is supported; an undefined "undefined_processor" is not a type, so it goes.
    assert pipelines["traces"]["processors"] == ["batch"]
    # metrics/genops lost its only exporter, so genops_metrics has nothing to feed and leaves
    # the traces pipeline and the connectors section.
    assert "metrics/genops" not in pipelines
    assert pipelines["traces"]["exporters"] == ["debug"]
    assert "genops_metrics" not in result["connectors"] and "forward" not in result["connectors"]
    # Pipelines the cut emptied go; one the source wrote empty stays, to be rejected as written.
    assert "logs" not in pipelines and "logs/forwarded" not in pipelines
    assert pipelines["metrics/empty"] == {"receivers": [], "exporters": ["debug"]}


def test_the_command_line_prints_the_cut_yaml():
    name = "otel-demo-2026.yaml"
    result = subprocess.run([sys.executable, "-m", "tests.collector_configs.cut", str(CORPUS / name)],
                            cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == cut(_text(name))
