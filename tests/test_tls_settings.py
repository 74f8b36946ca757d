"""The collector's TLS client keys (configtls) on every client component: each key is accepted,
the same YAML block is valid on otlp and on otlphttp, and a bad value is refused, naming the key."""

from __future__ import annotations

import pytest
import yaml

from relay.config.decode import decode
from relay.exporters import jaeger, otlp_grpc, otlp_http, prometheusremotewrite
from relay.ledger.webhook import WebhookConfig

# (component, its other required settings); the TLS block goes under "tls".
CLIENTS = {
    "otlp": (otlp_grpc.Config, {"endpoint": "collector.example:4317"}),
    "otlphttp": (otlp_http.Config, {"endpoint": "https://collector.example:4318"}),
    "jaeger": (jaeger.Config, {"endpoint": "jaeger.example:14250"}),
    "prometheusremotewrite": (prometheusremotewrite.Config, {"endpoint": "https://prom.example/api/v1/write"}),
    "genops_ledger webhook": (WebhookConfig, {"url": "https://hooks.example/x"}),
}

# Each configtls client key with a value every client takes.
SETTINGS = {
    "insecure": False,
    "insecure_skip_verify": False,
    "server_name_override": "collector.internal",
    "ca_file": "/etc/ssl/private-ca.pem",
    "ca_pem": "",
    "cert_file": "/etc/relay/client.pem",
    "cert_pem": "",
    "key_file": "/etc/relay/client-key.pem",
    "key_pem": "",
    "include_system_ca_certs_pool": True,
    "min_version": "1.2",
    "max_version": "1.3",
    "reload_interval": "1h",
}

# A block as a collector config carries it, pasted under otlp and under otlphttp alike.
BLOCK = """
tls:
  insecure: false
  insecure_skip_verify: false
  ca_file: /etc/ssl/private-ca.pem
  cert_file: /etc/relay/client.pem
  key_file: /etc/relay/client-key.pem
  server_name_override: collector.internal
  min_version: "1.2"
  reload_interval: 30s
"""


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("key", list(SETTINGS))
def test_every_key_is_accepted_on_every_client(client, key):
    config_type, required = CLIENTS[client]
    settings = {key: SETTINGS[key]}
    if key in ("cert_file", "key_file"):  # a client certificate comes with its key
        settings = {"cert_file": SETTINGS["cert_file"], "key_file": SETTINGS["key_file"]}
    config, problems = decode(config_type, {**required, "tls": settings})
    assert problems == [], [str(p) for p in problems]
    expected = 3600.0 if key == "reload_interval" else SETTINGS[key]
    assert getattr(config.tls, key) == expected


@pytest.mark.parametrize("client", ["otlp", "otlphttp"])
def test_the_same_block_is_valid_on_otlp_and_otlphttp(client):
    config_type, required = CLIENTS[client]
    config, problems = decode(config_type, {**required, **yaml.safe_load(BLOCK)})
    assert problems == [], [str(p) for p in problems]
    assert config.tls.server_name_override == "collector.internal" and float(config.tls.reload_interval) == 30


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("tls, problem", [
    ({"ca_file": "a.pem", "ca_pem": "x"}, "tls::ca_pem: give ca_file or ca_pem, not both"),
    ({"cert_pem": "x"}, "tls::key_file: a client certificate needs its key, and a key its certificate"),
    ({"min_version": "1.4"}, 'tls::min_version: "1.4" is not a TLS version (valid: 1.0, 1.1, 1.2, 1.3)'),
    ({"min_version": "1.3", "max_version": "1.2"}, "tls::max_version: must not be below min_version (1.3)"),
    ({"reload_interval": "-1s"}, None),
])
def test_bad_values_are_refused_naming_the_key(client, tls, problem):
    config_type, required = CLIENTS[client]
    _, problems = decode(config_type, {**required, "tls": tls})
    if problem is None:
        assert problems and all(str(p).startswith("tls::reload_interval") for p in problems)
    else:
        assert [str(p) for p in problems] == [problem]


@pytest.mark.parametrize("client", ["otlp", "jaeger"])
@pytest.mark.parametrize("tls", [{"insecure_skip_verify": True}, {"min_version": "1.3"}, {"max_version": "1.2"},
                                 {"reload_interval": "1m"}])
def test_a_grpc_client_takes_what_grpcs_own_tls_cannot_do(client, tls):
    """Carried through Python's TLS instead (relay.net.tls_bridge, tested against a server in
    test_exporter_grpc)."""
    config_type, required = CLIENTS[client]
    config, problems = decode(config_type, {**required, "tls": tls})
    assert problems == [] and config.tls.needs_python_tls()
    assert not decode(config_type, {**required, "tls": {"ca_file": "a.pem"}})[0].tls.needs_python_tls()
