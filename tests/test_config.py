"""Config loading: every problem reported at once, by key path; env expansion; defaults.

Every ``load()`` here is given ``env=`` explicitly, so nothing depends on the
environment the tests happen to run in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from relay.component import ComponentID, Factory
from relay.config import Duration, load, load_file, parse_duration
from relay.defaults import DEFAULT_CONFIG
from relay.errors import ConfigError, Problem
from relay.exporters import otlp_grpc
from relay.pipeline.registry import Registry, default_registry
from relay.signals import Signal
from tests.support import reference_config

# The "Core Configuration" block of the production monitoring guide, verbatim.
REFERENCE_COLLECTOR_CONFIG = reference_config()

REFERENCE_ENV = {"HONEYCOMB_API_KEY": "hc-key", "DATADOG_API_KEY": "dd-key"}

# A minimal valid config; the table below breaks it one way at a time.
BASE = """\
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"""

# What the registry holds, aliases included: the message lists every type a config may name.
AVAILABLE_EXPORTERS = f"(available: {', '.join(sorted(default_registry().types('exporters')))})"
AVAILABLE_PROCESSORS = f"(available: {', '.join(sorted(default_registry().types('processors')))})"
# The datadog exporter is not carried: its error names the route the README describes instead.
DATADOG_ROUTE = ("send to Datadog through the Datadog Agent's OTLP intake with an otlp exporter, "
                 'as the README section "Datadog" shows')
OTLP_EXPORTER_KEYS = "(valid keys: auth, compression, endpoint, headers, max_request_size, retry_on_failure, sending_queue, timeout, tls)"


def with_exporter(body: str, pipeline_exporters: str = "[debug]") -> str:
    """BASE with one more exporter section entry (``body`` is its indented YAML)."""
    return BASE.replace("  debug:\n", "  debug:\n" + body).replace("[debug]", pipeline_exporters)


def problems_of(text: str, env: dict | None = None, registry: Registry | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text, registry or default_registry(), env={} if env is None else env)
    error = caught.value
    got = [str(p) for p in error.problems]
    assert all(isinstance(p, Problem) for p in error.problems)
    # The exception's text is every problem, one per line.
    assert str(error) == "\n".join(got)
    return got


def assert_problems(got: list[str], expected: list) -> None:
    """``expected`` items are exact strings or compiled patterns (full match), in order."""
    assert len(got) == len(expected), got
    for text, want in zip(got, expected):
        if isinstance(want, re.Pattern):
            assert want.fullmatch(text), (text, want.pattern)
        else:
            assert text == want


INVALID = [
    pytest.param(
        BASE + "processor:\n  batch:\n",
        ["processor: unknown section (valid: receivers, processors, exporters, connectors, extensions, service)"],
        id="unknown-top-level-section"),
    pytest.param(
        with_exporter("  otlp:\n    endpoitn: collector:4317\n"),
        [f"exporters::otlp::endpoitn: unknown key {OTLP_EXPORTER_KEYS}",
         "exporters::otlp::endpoint: required key is missing"],
        id="unknown-key-lists-valid-keys"),
    pytest.param(
        BASE.replace("      grpc:\n", '      grpc:\n        max_recv_msg_size_mib: "big"\n'),
        ["receivers::otlp::protocols::grpc::max_recv_msg_size_mib: expected an integer, got string"],
        id="string-where-int-expected"),
    pytest.param(
        BASE.replace("      receivers: [otlp]\n", "      receivers:\n        otlp: {}\n"),
        ["service::pipelines::traces::receivers: expected a list, got mapping"],
        id="mapping-where-list-expected"),
    pytest.param(
        with_exporter('  otlp:\n    endpoint: collector:4317\n    tls:\n      insecure: "yes"\n'),
        ["exporters::otlp::tls::insecure: expected a boolean, got string"],
        id="string-where-bool-expected"),
    pytest.param(
        with_exporter("  otlp:\n    endpoint: true\n"),
        ["exporters::otlp::endpoint: expected a string, got boolean"],
        id="bool-where-string-expected"),
    pytest.param(
        with_exporter("  otlp:\n    endpoint: collector:4317\n    timeout: 5 parsecs\n"),
        ['exporters::otlp::timeout: invalid duration "5 parsecs" (use e.g. "5s", "200ms", "1m")'],
        id="invalid-duration"),
    pytest.param(
        with_exporter("  otlp:\n    endpoint: collector:4317\n    compression: zstd\n"),
        ['exporters::otlp::compression: "zstd" is not one of: gzip, none, ""'],
        id="invalid-enum"),
    pytest.param(
        BASE.replace("debug:\nservice", "debug:\n    verbosity: loud\nservice"),
        ['exporters::debug::verbosity: "loud" is not one of: basic, normal, detailed'],
        id="invalid-enum-debug-verbosity"),
    pytest.param(
        BASE.replace("receivers: [otlp]", "receivers: [otlp/missing]"),
        ['service::pipelines::traces::receivers::0: references receiver "otlp/missing", '
         "which is not configured under receivers"],
        id="undefined-receiver"),
    pytest.param(
        BASE.replace("exporters: [debug]", "exporters: [debug, otlp/honeycomb]"),
        ['service::pipelines::traces::exporters::1: references exporter "otlp/honeycomb", '
         "which is not configured under exporters"],
        id="undefined-exporter"),
    pytest.param(
        BASE.replace("      exporters: [debug]", "      processors: [batch]\n      exporters: [debug]"),
        ['service::pipelines::traces::processors::0: references processor "batch", '
         "which is not configured under processors"],
        id="undefined-processor"),
    pytest.param(
        BASE.replace("    traces:", "    spans:"),
        ['service::pipelines::spans: unknown signal "spans" (pipelines are named traces, metrics, logs or profiles, '
         'optionally with "/name")'],
        id="unknown-signal"),
    pytest.param(
        with_exporter("  datadog:\n    api:\n      key: abc\n"),
        [f'exporters::datadog: unsupported exporter type "datadog" {AVAILABLE_EXPORTERS}; {DATADOG_ROUTE}'],
        id="unknown-component-type-lists-available"),
    pytest.param(
        BASE.replace("  otlp:\n    protocols", "  kafka:\n    protocols").replace("[otlp]", "[kafka]"),
        ['receivers::kafka: unsupported receiver type "kafka" '
         f"(available: {', '.join(sorted(default_registry().types('receivers')))})"],
        id="unknown-receiver-type"),
    pytest.param(
        with_exporter("  otlp:\n    compression: gzip\n"),
        ["exporters::otlp::endpoint: required key is missing"],
        id="missing-required-endpoint"),
    pytest.param(
        with_exporter("  otlp:\n    endpoint: collector\n"),
        ['exporters::otlp::endpoint: "collector" must be host:port (optionally with an http:// or https:// '
         "scheme)"],
        id="endpoint-without-port"),
    pytest.param(
        BASE.replace("receivers: [otlp]", "receivers: []"),
        ["service::pipelines::traces::receivers: must name at least one component"],
        id="empty-receivers-list"),
    pytest.param(
        BASE.replace("exporters: [debug]", "exporters: [debug, debug]"),
        ['service::pipelines::traces::exporters: "debug" is listed twice'],
        id="component-listed-twice"),
    pytest.param(
        with_exporter("  otlp/:\n    endpoint: collector:4317\n"),
        ['exporters::otlp/: invalid component id "otlp/": expected "type" or "type/name"'],
        id="invalid-component-id"),
    pytest.param(
        BASE.replace("exporters: [debug]", "exporters: [\"otlp/a b\"]"),
        ['service::pipelines::traces::exporters::0: invalid component id "otlp/a b": expected "type" or '
         '"type/name"'],
        id="invalid-component-id-in-pipeline"),
    pytest.param(
        with_exporter('  otlp:\n    endpoint: collector:4317\n    headers:\n      authorization: "${TOKEN}"\n'),
        ["exporters::otlp::headers::authorization: environment variable TOKEN is not set and has no default"],
        id="unset-env-var"),
    pytest.param(
        # The failed expansion is the only problem: the empty endpoint it left is not reported too.
        with_exporter('  otlp:\n    endpoint: "${OTLP_ENDPOINT}"\n'),
        ["exporters::otlp::endpoint: environment variable OTLP_ENDPOINT is not set and has no default"],
        id="unset-env-var-no-follow-up-problem"),
    pytest.param(
        with_exporter('  otlp:\n    endpoint: "${OTLP_ENDPOINT"\n'),
        ['exporters::otlp::endpoint: malformed variable reference "${OTLP_ENDPOINT"'],
        id="malformed-env-reference-unclosed"),
    pytest.param(
        with_exporter('  otlp:\n    endpoint: "${1BAD}:4317"\n'),
        ['exporters::otlp::endpoint: malformed variable reference "${1BAD}"'],
        id="malformed-env-reference-bad-name"),
    pytest.param(
        BASE.replace("service:\n", "service:\n  extensions: [health_check]\n"),
        ['service::extensions::0: references extension "health_check", which is not configured under '
         "extensions"],
        id="service-extension-not-configured"),
    pytest.param(
        BASE.replace("      grpc:\n", "      grpc:\n      http:\n        endpoint: 0.0.0.0:4318x\n"),
        ['receivers::otlp::protocols::http::endpoint: "0.0.0.0:4318x" is not a host:port endpoint'],
        id="otlp-receiver-http-endpoint"),
    pytest.param(
        BASE.replace("      grpc:\n", "      http:\n        max_request_body_size: -1\n"),
        ["receivers::otlp::protocols::http::max_request_body_size: must not be negative (0 means the default)"],
        id="otlp-receiver-http-body-size"),
    pytest.param(
        BASE.replace("    protocols:\n      grpc:\n", "    protocols: {}\n"),
        ["receivers::otlp::protocols: at least one protocol must be configured (grpc, http)"],
        id="otlp-receiver-no-protocol"),
    pytest.param(
        BASE.replace("      grpc:\n", "      grpc:\n        max_recv_msg_size_mib: 0\n"),
        ["receivers::otlp::protocols::grpc::max_recv_msg_size_mib: must be between 1 and 2047"],
        id="value-out-of-range"),
    pytest.param(
        BASE.split("service:")[0] + "service:\n  extensions: []\n",
        ["service::pipelines: required key is missing"],
        id="pipelines-missing"),
    pytest.param(
        BASE.split("service:")[0] + "service:\n  pipelines: {}\n",
        ["service::pipelines: at least one pipeline is required"],
        id="pipelines-empty"),
    pytest.param(
        BASE.split("service:")[0],
        ["service: required section is missing"],
        id="service-missing-reported-once"),
    pytest.param(
        "receivers: [otlp\n",
        [re.compile(r"invalid YAML: while parsing a flow sequence\n.*line 1, column 12.*", re.S)],
        id="invalid-yaml"),
    pytest.param(
        "- receivers\n- exporters\n",
        ["the config must be a mapping of sections"],
        id="not-a-mapping"),
    pytest.param(
        BASE.replace("receivers:\n  otlp:\n    protocols:\n      grpc:\n", "receivers: [otlp]\n"),
        ["receivers: expected a mapping of component ids to settings"],
        id="section-not-a-mapping-no-reference-noise"),
    pytest.param(
        BASE + "connectors:\n  forward:\n",
        ['connectors::forward: unsupported connector type "forward" (available: genops_metrics, span_metrics, spanmetrics)'],
        id="connector-type-unknown"),
    pytest.param(
        BASE + "  telemetry:\n    logs:\n      level: loud\n",
        ['service::telemetry::logs::level: "loud" is not one of: debug, info, warn, error, dpanic, panic, fatal'],
        id="telemetry-bad-level"),
]


@pytest.mark.parametrize("text, expected", INVALID)
def test_invalid_config_is_reported_by_key_path(text, expected):
    assert_problems(problems_of(text), expected)


def test_table_rows_are_each_a_single_change_to_a_valid_config():
    config = load(BASE, default_registry(), env={})
    assert [p.id for p in config.pipelines] == ["traces"]


def test_telemetry_metrics_address_is_validated():
    text = BASE + "  telemetry:\n    metrics:\n      address: nowhere\n"
    assert problems_of(text) == ['service::telemetry::metrics::address: "nowhere" is not a host:port endpoint']


# --- a receiver that supports one signal only, from a test registry --------------------------------


@dataclass
class TracesOnlyConfig:
    def validate(self) -> list[Problem]:
        return []


def traces_only_registry() -> Registry:
    registry = default_registry()
    factory = Factory("tracesonly", TracesOnlyConfig, lambda *args: None, frozenset({Signal.TRACES}))
    registry.receivers["tracesonly"] = factory
    return registry


def test_receiver_in_pipeline_of_a_signal_it_does_not_support():
    text = """\
receivers:
  tracesonly:
  tracesonly/b:
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [tracesonly, tracesonly/b]
      exporters: [debug]
    metrics:
      receivers: [tracesonly/b]
      exporters: [debug]
    logs/audit:
      receivers: [tracesonly]
      exporters: [debug]
"""
    assert problems_of(text, registry=traces_only_registry()) == [
        'service::pipelines::metrics::receivers::0: receiver "tracesonly/b" does not support metrics',
        'service::pipelines::logs/audit::receivers::0: receiver "tracesonly" does not support logs',
    ]
    # The traces pipeline alone is fine.
    valid = text.split("    metrics:")[0]
    config = load(valid, traces_only_registry(), env={})
    assert config.pipelines[0].receivers == [ComponentID("tracesonly"), ComponentID("tracesonly", "b")]


def test_unknown_type_in_a_test_registry_lists_its_types():
    text = BASE.replace("  otlp:\n    protocols", "  kafka:\n    protocols").replace("[otlp]", "[kafka]")
    registry = traces_only_registry()
    assert "tracesonly" in registry.receivers
    assert problems_of(text, registry=registry) == [
        f'receivers::kafka: unsupported receiver type "kafka" (available: {", ".join(sorted(registry.receivers))})']


def test_processor_type_with_no_processors_registered():
    text = BASE + "processors:\n  batch:\n"
    bare = default_registry()
    bare.processors.clear()
    assert problems_of(text, registry=bare) == [
        'processors::batch: unsupported processor type "batch" (available: none)']


# --- every problem at once ----------------------------------------------------------------------------

MANY_MISTAKES = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
        max_recv_msg_size_mib: lots
exporters:
  debug:
  otlp/honeycomb:
    endpoint: api.honeycomb.io:443
    compression: zstd
    timeout: soon
    headers:
      x-honeycomb-team: ${HONEYCOMB_API_KEY}
  datadog:
    api: {key: x}
extensions:
  health_check:
    endpoitn: 0.0.0.0:13133
service:
  extensions: [pprof]
  pipelines:
    traces:
      receivers: []
      exporters: [debug, otlp/honeycomb]
    metrics:
      receivers: [otlp, prometheus]
      exporters: [datadog, missing]
    spans:
      receivers: [otlp]
      exporters: [debug]
"""


def test_all_problems_are_reported_together():
    assert problems_of(MANY_MISTAKES) == [
        "exporters::otlp/honeycomb::headers::x-honeycomb-team: environment variable HONEYCOMB_API_KEY "
        "is not set and has no default",
        "receivers::otlp::protocols::grpc::max_recv_msg_size_mib: expected an integer, got string",
        'exporters::otlp/honeycomb::timeout: invalid duration "soon" (use e.g. "5s", "200ms", "1m")',
        'exporters::otlp/honeycomb::compression: "zstd" is not one of: gzip, none, ""',
        f'exporters::datadog: unsupported exporter type "datadog" {AVAILABLE_EXPORTERS}; {DATADOG_ROUTE}',
        "extensions::health_check::endpoitn: unknown key (valid keys: endpoint, path)",
        # An invalid pipeline (the empty receivers list) does not hide the other pipelines' problems.
        "service::pipelines::traces::receivers: must name at least one component",
        'service::pipelines::metrics::receivers::1: references receiver "prometheus", which is not '
        "configured under receivers",
        'service::pipelines::metrics::exporters::1: references exporter "missing", which is not configured '
        "under exporters",
        'service::pipelines::spans: unknown signal "spans" (pipelines are named traces, metrics, logs or profiles, '
        'optionally with "/name")',
        'service::extensions::0: references extension "pprof", which is not configured under extensions',
    ]


def test_invalid_service_settings_do_not_hide_reference_problems():
    text = BASE.replace("service:\n", "service:\n  extensions: [zpages]\n  telemetry: {logs: {level: loud}}\n")
    text = text.replace("[debug]", "[debug, nowhere]")
    assert problems_of(text) == [
        'service::telemetry::logs::level: "loud" is not one of: debug, info, warn, error, dpanic, panic, fatal',
        'service::pipelines::traces::exporters::1: references exporter "nowhere", which is not configured '
        "under exporters",
        'service::extensions::0: references extension "zpages", which is not configured under extensions',
    ]


def test_component_with_invalid_settings_is_not_reported_again_by_pipelines():
    text = with_exporter("  otlp:\n    endpoint: collector:4317\n    timeout: soon\n", "[otlp]")
    text = text.replace("traces:\n", "traces/a:\n") + "    logs:\n      receivers: [otlp]\n      exporters: [otlp]\n"
    assert problems_of(text) == [
        'exporters::otlp::timeout: invalid duration "soon" (use e.g. "5s", "200ms", "1m")']


# --- environment expansion ----------------------------------------------------------------------------

ENV_CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "${env:LISTEN_HOST}:${LISTEN_PORT:-4317}"
        max_recv_msg_size_mib: ${SIZE}
exporters:
  otlp/honeycomb:
    endpoint: ${env:HONEYCOMB_ENDPOINT:-api.honeycomb.io:443}
    compression: ${COMPRESSION:-gzip}
    timeout: ${TIMEOUT:-5s}
    headers:
      x-honeycomb-team: "${HONEYCOMB_API_KEY}"
      authorization: "Bearer ${TOKEN}"
      x-price: "$$5 and $${NOT_A_VARIABLE}"
      x-empty: "${EMPTY:-}"
    tls:
      insecure: ${INSECURE}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp/honeycomb]
"""

ENV = {"LISTEN_HOST": "127.0.0.1", "SIZE": "16", "HONEYCOMB_API_KEY": "0123456789", "TOKEN": "abc.def",
       "INSECURE": "true"}


def test_env_expansion_forms():
    config = load(ENV_CONFIG, default_registry(), env=ENV)
    grpc = config.components["receivers"][ComponentID("otlp")].protocols.grpc
    exporter = config.components["exporters"][ComponentID("otlp", "honeycomb")]
    assert grpc.endpoint == "127.0.0.1:4317"            # ${env:VAR} and ${VAR:-default}
    assert exporter.endpoint == "api.honeycomb.io:443"  # ${env:VAR:-default}, default containing ":"
    assert exporter.compression == "gzip"
    assert exporter.timeout == 5.0
    assert exporter.headers == {
        "x-honeycomb-team": "0123456789",
        "authorization": "Bearer abc.def",              # part of a string
        "x-price": "$5 and ${NOT_A_VARIABLE}",          # $$ is a literal $, and is not expanded further
        "x-empty": "",
    }
    assert exporter.tls.insecure is True


def test_number_field_from_env_becomes_a_number():
    config = load(ENV_CONFIG, default_registry(), env=ENV)
    grpc = config.components["receivers"][ComponentID("otlp")].protocols.grpc
    assert grpc.max_recv_msg_size_mib == 16
    assert type(grpc.max_recv_msg_size_mib) is int


def test_digits_only_header_value_from_env_stays_a_string():
    config = load(ENV_CONFIG, default_registry(), env=ENV)
    value = config.components["exporters"][ComponentID("otlp", "honeycomb")].headers["x-honeycomb-team"]
    assert value == "0123456789"  # leading zero kept: not read as a number
    assert type(value) is str


def test_env_values_override_defaults():
    env = dict(ENV, LISTEN_PORT="14317", HONEYCOMB_ENDPOINT="https://eu.honeycomb.io:443",
               COMPRESSION="none", TIMEOUT="1m30s", EMPTY="set")
    config = load(ENV_CONFIG, default_registry(), env=env)
    exporter = config.components["exporters"][ComponentID("otlp", "honeycomb")]
    assert config.components["receivers"][ComponentID("otlp")].protocols.grpc.endpoint == "127.0.0.1:14317"
    assert exporter.endpoint == "https://eu.honeycomb.io:443"
    assert exporter.compression == "none"
    assert exporter.timeout == 90.0
    assert exporter.headers["x-empty"] == "set"


def test_env_value_of_the_wrong_type_is_reported_at_its_key():
    env = dict(ENV, SIZE="big", INSECURE="maybe", COMPRESSION="lz4")
    assert problems_of(ENV_CONFIG, env=env) == [
        "receivers::otlp::protocols::grpc::max_recv_msg_size_mib: expected an integer, got string",
        # (within a component, in the order of its Config's fields)
        "exporters::otlp/honeycomb::tls::insecure: expected a boolean, got string",
        'exporters::otlp/honeycomb::compression: "lz4" is not one of: gzip, none, ""',
    ]


def test_unset_variables_are_each_named_with_their_key_path():
    env = {k: v for k, v in ENV.items() if k not in ("LISTEN_HOST", "TOKEN", "SIZE")}
    assert problems_of(ENV_CONFIG, env=env) == [
        "receivers::otlp::protocols::grpc::endpoint: environment variable LISTEN_HOST is not set and has "
        "no default",
        "receivers::otlp::protocols::grpc::max_recv_msg_size_mib: environment variable SIZE is not set and "
        "has no default",
        "exporters::otlp/honeycomb::headers::authorization: environment variable TOKEN is not set and has "
        "no default",
    ]


def test_unset_variable_in_a_pipeline_list():
    text = BASE.replace("exporters: [debug]", 'exporters: ["${EXPORTER}"]')
    assert problems_of(text) == [
        "service::pipelines::traces::exporters::0: environment variable EXPORTER is not set and has no default"]
    config = load(text, default_registry(), env={"EXPORTER": "debug"})
    assert config.pipelines[0].exporters == [ComponentID("debug")]


def test_the_process_environment_is_not_read_when_env_is_given(monkeypatch):
    monkeypatch.setenv("RELAY_TEST_ONLY_IN_OS_ENVIRON", "collector:4317")
    text = with_exporter('  otlp:\n    endpoint: "${RELAY_TEST_ONLY_IN_OS_ENVIRON}"\n')
    assert problems_of(text, env={}) == [
        "exporters::otlp::endpoint: environment variable RELAY_TEST_ONLY_IN_OS_ENVIRON is not set and has "
        "no default"]


def test_dollar_literal_needs_no_variables():
    text = with_exporter('  otlp:\n    endpoint: collector:4317\n    headers:\n      x-cost: "$$${AMOUNT:-0}"\n')
    config = load(text, default_registry(), env={})
    assert config.components["exporters"][ComponentID("otlp")].headers == {"x-cost": "$0"}


# --- component ids, aliases, named pipelines -----------------------------------------------------------

ALIASES = """\
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  otlp/honeycomb:
    endpoint: https://api.honeycomb.io:443
  otlp_grpc/tempo:
    endpoint: tempo:4317
  otlp:
    endpoint: localhost:4317
  debug/verbose:
    verbosity: detailed
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp/honeycomb, otlp]
    traces/cost:
      receivers: [otlp]
      exporters: [otlp_grpc/tempo, debug/verbose]
    metrics/cost:
      receivers: [otlp]
      exporters: [otlp_grpc/tempo]
"""


def test_otlp_and_otlp_grpc_are_the_same_exporter_type():
    registry = default_registry()
    assert registry.exporters["otlp"] is registry.exporters["otlp_grpc"]
    assert registry.exporters["otlp"].config is otlp_grpc.Config
    config = load(ALIASES, registry, env={})
    factories = config.factories["exporters"]
    assert factories[ComponentID("otlp", "honeycomb")] is factories[ComponentID("otlp_grpc", "tempo")]
    assert factories[ComponentID("otlp")] is registry.exporters["otlp_grpc"]
    assert factories[ComponentID("otlp")].type == "otlp_grpc"
    assert isinstance(config.components["exporters"][ComponentID("otlp_grpc", "tempo")], otlp_grpc.Config)


def test_named_ids_and_named_pipelines():
    config = load(ALIASES, default_registry(), env={})
    assert [(p.id, p.signal) for p in config.pipelines] == [
        ("traces", Signal.TRACES), ("traces/cost", Signal.TRACES), ("metrics/cost", Signal.METRICS)]
    cost = config.pipelines[1]
    assert cost.receivers == [ComponentID("otlp")]
    assert cost.processors == []
    assert cost.exporters == [ComponentID("otlp_grpc", "tempo"), ComponentID("debug", "verbose")]
    assert [str(id_) for id_ in config.pipelines[0].exporters] == ["otlp/honeycomb", "otlp"]
    assert config.components["exporters"][ComponentID("debug", "verbose")].verbosity == "detailed"
    assert config.components["exporters"][ComponentID("otlp", "honeycomb")].endpoint == \
        "https://api.honeycomb.io:443"


@pytest.mark.parametrize("text, expected", [
    ("otlp", ComponentID("otlp")),
    ("otlp/honeycomb", ComponentID("otlp", "honeycomb")),
    ("otlp_grpc/eu-1.prod", ComponentID("otlp_grpc", "eu-1.prod")),
    # The collector splits at the first "/" and allows "/" in the name (an elastic demo config
    # names a pipeline "metrics/infra/otel").
    ("metrics/infra/otel", ComponentID("metrics", "infra/otel")),
    ("otlp//x", ComponentID("otlp", "/x")),
    ("otlp/naïve", ComponentID("otlp", "naïve")),
])
def test_component_id_parse(text, expected):
    assert ComponentID.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["otlp/", "/x", "", "ot lp", "otlp/a b", "otlp/a\tb", "otlp/a+b", "otlp/a$b"])
def test_component_id_parse_rejects(text):
    with pytest.raises(ValueError, match=re.escape(f'invalid component id "{text}"')):
        ComponentID.parse(text)


# --- the reference collector config from the production monitoring guide ---------------------------------

REFERENCE_PROBLEMS = [
    f'exporters::datadog: unsupported exporter type "datadog" {AVAILABLE_EXPORTERS}; {DATADOG_ROUTE}',
]


def test_reference_config_reports_exactly_the_unsupported_components():
    # Pipelines naming those components (otlp, batch, jaeger, datadog, ...) are not reported again.
    assert problems_of(REFERENCE_COLLECTOR_CONFIG, env=REFERENCE_ENV) == REFERENCE_PROBLEMS


def test_reference_config_without_env_also_names_the_missing_variables():
    got = problems_of(REFERENCE_COLLECTOR_CONFIG, env={})
    assert got[:2] == [
        "exporters::otlp/honeycomb::headers::x-honeycomb-team: environment variable HONEYCOMB_API_KEY is not "
        "set and has no default",
        "exporters::datadog::api::key: environment variable DATADOG_API_KEY is not set and has no default",
    ]
    assert got[2:] == REFERENCE_PROBLEMS


def test_reference_config_supported_subset_loads():
    # The same file with the unsupported parts taken out is a config the relay runs.
    text = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
exporters:
  otlp/honeycomb:
    endpoint: https://api.honeycomb.io:443
    headers:
      x-honeycomb-team: "${HONEYCOMB_API_KEY}"
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp/honeycomb]
    metrics:
      receivers: [otlp]
      exporters: [otlp/honeycomb]
    logs:
      receivers: [otlp]
      exporters: [otlp/honeycomb]
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
"""
    assert REFERENCE_COLLECTOR_CONFIG.startswith(text.split("exporters:")[0])
    config = load(text, default_registry(), env={"HONEYCOMB_API_KEY": "12345"})
    honeycomb = config.components["exporters"][ComponentID("otlp", "honeycomb")]
    assert honeycomb.headers == {"x-honeycomb-team": "12345"}
    assert [p.id for p in config.pipelines] == ["traces", "metrics", "logs"]
    assert config.extensions == []  # configured but not enabled under service.extensions


# --- durations and defaults --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [
    ("5s", 5.0), ("200ms", 0.2), ("1m30s", 90.0), ("1h", 3600.0), ("1.5s", 1.5), ("250us", 0.00025),
    ("100ns", 1e-7), ("2h1m1s", 7261.0), (" 5s ", 5.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "5 parsecs", "", "s", "1d", "-1s", "5s5", "1 m", "5S"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match=re.escape(f'invalid duration "{text.strip()}"')):
        parse_duration(text)


@pytest.mark.parametrize("yaml_value, seconds", [
    ("5s", 5.0), ("200ms", 0.2), ("1m30s", 90.0), ("3", 3.0), ("0.5", 0.5), ("0", 0.0)])
def test_duration_field(yaml_value, seconds):
    text = with_exporter(f"  otlp:\n    endpoint: collector:4317\n    timeout: {yaml_value}\n")
    timeout = load(text, default_registry(), env={}).components["exporters"][ComponentID("otlp")].timeout
    assert isinstance(timeout, Duration)
    assert timeout == pytest.approx(seconds)


@pytest.mark.parametrize("yaml_value, message", [
    ("true", "expected a duration, got boolean"),
    ("[1s]", "expected a duration, got list"),
    ("-1", "must not be negative"),
])
def test_duration_field_rejects(yaml_value, message):
    text = with_exporter(f"  otlp:\n    endpoint: collector:4317\n    timeout: {yaml_value}\n")
    assert problems_of(text) == [f"exporters::otlp::timeout: {message}"]


def test_defaults_are_applied():
    text = """\
receivers:
  otlp:
    protocols:
      grpc:
exporters:
  otlp:
    endpoint: collector:4317
  debug:
extensions:
  health_check:
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [otlp, debug]
"""
    config = load(text, default_registry(), env={})
    grpc = config.components["receivers"][ComponentID("otlp")].protocols.grpc
    assert (grpc.endpoint, grpc.max_recv_msg_size_mib, grpc.max_concurrent_streams) == ("0.0.0.0:4317", 4, 0)
    assert config.components["receivers"][ComponentID("otlp")].protocols.http is None  # absent: off
    exporter = config.components["exporters"][ComponentID("otlp")]
    assert exporter.timeout == 5.0
    assert exporter.compression == "gzip"
    assert exporter.headers == {}
    assert (exporter.tls.insecure, exporter.tls.ca_file, exporter.tls.cert_file) == (False, "", "")
    assert config.components["exporters"][ComponentID("debug")].effective_verbosity() == "basic"
    health = config.components["extensions"][ComponentID("health_check")]
    assert (health.endpoint, health.path) == ("0.0.0.0:13133", "/")
    assert config.extensions == [ComponentID("health_check")]
    telemetry = config.telemetry
    assert (telemetry.logs.level, telemetry.logs.encoding) == ("info", "json")
    assert (telemetry.metrics.address, telemetry.metrics.level) == ("0.0.0.0:8888", "normal")
    assert config.pipelines[0].signal is Signal.LOGS


def test_builtin_default_config_loads():
    config = load(DEFAULT_CONFIG, default_registry(), env={"GENOPS_RELAY_DATA": "/data"})
    otlp, debug, metrics = ComponentID("otlp"), ComponentID("debug"), ComponentID("genops_metrics")
    limiter, budget, ledger = ComponentID("memory_limiter"), ComponentID("genops_budget"), ComponentID("genops_ledger")
    assert [(p.id, p.receivers, p.processors, p.exporters) for p in config.pipelines] == [
        ("traces", [otlp], [limiter, ComponentID("genops"), budget], [debug, metrics]),
        ("metrics", [otlp], [limiter, ComponentID("genops")], [debug, ComponentID("prometheus"), metrics]),
        ("metrics/genops", [metrics], [], [ComponentID("prometheus")]),
        ("logs", [otlp], [limiter], [debug]),
    ]
    assert config.components["connectors"][metrics].cost_from == "auto"
    memory = config.components["processors"][limiter]
    assert (memory.limit_percentage, memory.spike_limit_percentage) == (80, 20)
    prometheus = config.components["exporters"][ComponentID("prometheus")]
    assert (prometheus.endpoint, prometheus.namespace, prometheus.const_labels) == (
        "0.0.0.0:8889", "genops_openrouter", {"service": "openrouter"})
    assert config.extensions == [ComponentID("health_check"), ledger]
    # The cost ledger, in the data directory the CLI found, fed by genops_budget.
    kept = config.components["extensions"][ledger]
    assert (kept.directory, kept.create_directory) == ("/data/ledger", True)
    assert config.components["processors"][budget].ledger == "genops_ledger"


def test_empty_document_reports_missing_service():
    assert problems_of("") == ["service: required section is missing"]


def test_load_file(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text(BASE, encoding="utf-8")
    assert [p.id for p in load_file(str(path), default_registry(), env={}).pipelines] == ["traces"]


def test_load_file_missing(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_file(str(path), default_registry(), env={})
    assert [str(p) for p in caught.value.problems] == [
        f"cannot read config file {path}: No such file or directory"]


def test_duplicate_yaml_keys_are_rejected_not_silently_replaced():
    text = """
receivers: {otlp: {protocols: {grpc: {}}}}
exporters:
  debug: {}
  debug: {verbosity: detailed}
service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
"""
    with pytest.raises(ConfigError) as error:
        load(text, default_registry(), env={})
    assert 'duplicate key "debug"' in str(error.value)


@pytest.mark.parametrize("value", ["inf", "nan", "1_000", "0x10"])
def test_numbers_from_the_environment_are_plain_decimals_only(value):
    text = """
receivers: {otlp: {protocols: {grpc: {}}}}
exporters: {otlp: {endpoint: "collector:4317", timeout: "${T}"}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [otlp]}}}
"""
    with pytest.raises(ConfigError) as error:
        load(text, default_registry(), env={"T": value})
    assert str(error.value).startswith(f'exporters::otlp::timeout: invalid duration "{value}"')


def test_exporter_endpoint_needs_a_numeric_port_and_pipeline_ids_are_checked():
    text = """
receivers: {otlp: {protocols: {grpc: {}}}}
exporters: {otlp: {endpoint: "collector:abc"}}
service: {pipelines: {"traces/": {receivers: [otlp], exporters: [otlp]}}}
"""
    with pytest.raises(ConfigError) as error:
        load(text, default_registry(), env={})
    assert [str(p) for p in error.value.problems] == [
        'exporters::otlp::endpoint: "collector:abc" must be host:port (optionally with an http:// or https:// scheme)',
        'service::pipelines::traces/: invalid pipeline id "traces/": expected "type" or "type/name"',
    ]


def test_decode_runs_the_validate_of_every_class_a_config_inherits_from():
    """An exporter's Config need not call its helper settings' checks: decode runs them."""
    from dataclasses import dataclass

    from relay.config.decode import decode
    from relay.errors import Problem

    @dataclass(kw_only=True)
    class Shared:
        timeout: float = 1.0

        def validate(self):
            return [Problem(("timeout",), "must not be negative")] if self.timeout < 0 else []

    @dataclass
    class Own(Shared):
        endpoint: str = ""

        def validate(self):
            return [] if self.endpoint else [Problem(("endpoint",), "required")]

    _, problems = decode(Own, {"timeout": -1.0})
    assert [str(p) for p in problems] == ["timeout: must not be negative", "endpoint: required"]
    _, problems = decode(Own, {"endpoint": "x", "timeout": 2.0})
    assert problems == []
