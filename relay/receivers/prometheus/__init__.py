"""The ``prometheus`` receiver: scrape Prometheus endpoints and pass what they expose on as OTLP metrics.

The ``config`` section is a Prometheus configuration, as in the collector's receiver:
a ``global`` section (``scrape_interval``, ``scrape_timeout``, ``external_labels``) and
``scrape_configs`` with ``static_configs`` targets. As in the collector, external labels are
set on every scraped series (over a scraped or target label of the same name) and so become
data point attributes; ``evaluation_interval`` and ``rule_query_offset`` are accepted with no
effect (the receiver evaluates no rules). Service discovery, relabeling, authentication and TLS
settings are not supported; an unsupported key is a configuration problem rather than
something silently ignored. See ``scrape`` for the loop and ``convert`` for the mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from relay.component import Settings
from relay.config.decode import Duration, advisory, decode
from relay.errors import Problem
from relay.net.endpoints import endpoint_problem
from relay.net.tls import TLSClientConfig
from relay.signals import Signal

TYPE = "prometheus"
SIGNALS = (Signal.METRICS,)
# A minimal working config, as a user would write it (checked by tests/test_component_contract.py).
EXAMPLE = {"config": {"scrape_configs": [{"job_name": "relay", "scrape_interval": "1h",
                                           "static_configs": [{"targets": ["127.0.0.1:8888"]}]}]}}

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Prometheus' own defaults.
DEFAULT_INTERVAL = Duration(60.0)
DEFAULT_TIMEOUT = Duration(10.0)


_NO_RULES = "the prometheus receiver evaluates no rules"


@dataclass
class GlobalConfig:
    scrape_interval: Duration = DEFAULT_INTERVAL
    scrape_timeout: Duration = DEFAULT_TIMEOUT
    external_labels: dict[str, str] = field(default_factory=dict)
    evaluation_interval: Duration = advisory(_NO_RULES, default=DEFAULT_INTERVAL)
    rule_query_offset: Duration = advisory(_NO_RULES, default=Duration(0.0))

    def validate(self) -> list[Problem]:
        problems = _positive(self, ("scrape_interval", "scrape_timeout"))
        for name in self.external_labels:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                problems.append(Problem(("external_labels", name), "is not a valid Prometheus label name "
                                                                    '(or starts with the reserved "__")'))
        if not problems and self.scrape_timeout > self.scrape_interval:
            problems.append(Problem(("scrape_timeout",), "must not be greater than scrape_interval"))
        return problems


@dataclass
class StaticConfig:
    targets: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    def validate(self) -> list[Problem]:
        problems = []
        for index, target in enumerate(self.targets):
            if "/" in target:
                problems.append(Problem(("targets", str(index)), f'"{target}": give host:port only '
                                                                  "(scheme and metrics_path are settings of the job)"))
            elif endpoint_problem(target) or target.startswith(":"):
                problems.append(Problem(("targets", str(index)), f'"{target}" is not a host:port target'))
        for name in self.labels:
            if not _LABEL_NAME.match(name):
                problems.append(Problem(("labels", name), "is not a valid Prometheus label name"))
            elif name.startswith("__"):
                problems.append(Problem(("labels", name), 'label names starting with "__" are reserved'))
        return problems


# Prometheus's names of the TLS versions.
_TLS_VERSIONS = {"TLS10": "1.0", "TLS11": "1.1", "TLS12": "1.2", "TLS13": "1.3"}
# Where a key of the client TLS config is called otherwise in Prometheus's tls_config.
_PROMETHEUS_TLS_KEY = {"ca_pem": "ca", "cert_pem": "cert", "key_pem": "key", "server_name_override": "server_name"}
_PROMETHEUS_TLS_WORDS = re.compile(r"\b(" + "|".join(_PROMETHEUS_TLS_KEY) + r")\b")


@dataclass
class ScrapeTLSConfig:
    """A job's ``tls_config``, in Prometheus's keys, for an https scheme."""

    ca_file: str = ""
    ca: str = ""
    cert_file: str = ""
    cert: str = ""
    key_file: str = ""
    key: str = field(default="", repr=False)
    server_name: str = ""
    insecure_skip_verify: bool = False
    min_version: str = ""
    max_version: str = ""

    def validate(self) -> list[Problem]:
        problems = [Problem((name,), f'"{getattr(self, name)}" is not one of: {", ".join(_TLS_VERSIONS)}')
                    for name in ("min_version", "max_version")
                    if getattr(self, name) and getattr(self, name) not in _TLS_VERSIONS]
        if problems:
            return problems
        return [Problem(tuple(_PROMETHEUS_TLS_KEY.get(part, part) for part in p.path), _PROMETHEUS_TLS_WORDS.sub(
            lambda m: _PROMETHEUS_TLS_KEY[m.group(1)], p.message)) for p in self.client().validate()]

    def client(self) -> TLSClientConfig:
        return TLSClientConfig(ca_file=self.ca_file, ca_pem=self.ca, cert_file=self.cert_file, cert_pem=self.cert,
                               key_file=self.key_file, key_pem=self.key, server_name_override=self.server_name,
                               insecure_skip_verify=self.insecure_skip_verify,
                               min_version=_TLS_VERSIONS.get(self.min_version, ""),
                               max_version=_TLS_VERSIONS.get(self.max_version, ""))


@dataclass
class ScrapeConfig:
    job_name: str
    static_configs: list[StaticConfig] = field(default_factory=list)
    # None: the global value (the timeout then also capped at the interval).
    scrape_interval: Duration | None = None
    scrape_timeout: Duration | None = None
    metrics_path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    params: dict[str, list[str]] = field(default_factory=dict)
    honor_labels: bool = False
    tls_config: ScrapeTLSConfig = field(default_factory=ScrapeTLSConfig)

    def validate(self) -> list[Problem]:
        problems = _positive(self, ("scrape_interval", "scrape_timeout"))
        if not self.job_name:
            problems.append(Problem(("job_name",), "must not be empty"))
        if not self.metrics_path.startswith("/"):
            problems.append(Problem(("metrics_path",), 'must start with "/"'))
        if not any(static.targets for static in self.static_configs):
            problems.append(Problem(("static_configs",), "no targets to scrape: list them under static_configs"))
        return problems


@dataclass
class PrometheusConfig:
    scrape_configs: list[ScrapeConfig]

    def validate(self) -> list[Problem]:
        problems = [] if self.scrape_configs else [Problem(("scrape_configs",), "at least one job is required")]
        seen: set[str] = set()
        for index, job in enumerate(self.scrape_configs):
            if job.job_name in seen:
                problems.append(Problem(("scrape_configs", str(index), "job_name"),
                                        f'"{job.job_name}" is used by another job'))
            seen.add(job.job_name)
        return problems


@dataclass(frozen=True)
class Target:
    """One endpoint to scrape, with everything resolved: the job's settings and its target labels."""

    job: str
    address: str
    scheme: str
    metrics_path: str
    params: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    honor_labels: bool
    interval: float
    timeout: float
    # For https: the job's TLS settings (not part of what makes two targets the same).
    tls: TLSClientConfig | None = field(default=None, compare=False, hash=False)
    # global.external_labels, set on every series scraped from it.
    external: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}{self.metrics_path}"


# Prometheus sections the receiver cannot honour: said plainly rather than "unknown key".
_UNSUPPORTED = ("alerting", "remote_read", "remote_write", "rule_files", "scrape_config_files",
                "storage", "tracing", "otlp", "runtime")


@dataclass
class Config:
    # A Prometheus configuration. Decoded by hand: its "global" key cannot be a field name.
    config: Any
    global_: GlobalConfig | None = field(init=False, default=None, repr=False, compare=False)
    scrape: PrometheusConfig | None = field(init=False, default=None, repr=False, compare=False)
    _problems: list[Problem] = field(init=False, default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._problems = self._decode()

    def _decode(self) -> list[Problem]:
        raw = self.config
        if not isinstance(raw, dict):
            kind = "nothing" if raw is None else type(raw).__name__
            return [Problem(("config",), f"expected a mapping with scrape_configs, got {kind}")]
        problems = []
        for key in raw:
            if key in _UNSUPPORTED:
                problems.append(Problem(("config", str(key)), "is not supported by the prometheus receiver"))
            elif key not in ("global", "scrape_configs"):
                problems.append(Problem(("config", str(key)), "unknown key (valid keys: global, scrape_configs)"))
        self.global_, sub = decode(GlobalConfig, raw.get("global"), ("config", "global"))
        problems += sub
        self.scrape, sub = decode(PrometheusConfig, {"scrape_configs": raw.get("scrape_configs")}
                                  if "scrape_configs" in raw else {}, ("config",))
        problems += sub
        if not problems and self.global_ is not None and self.scrape is not None:
            problems += self._timing_problems()
        return problems

    def _timing_problems(self) -> list[Problem]:
        problems = []
        for index, job in enumerate(self.scrape.scrape_configs):
            interval = job.scrape_interval or self.global_.scrape_interval
            if job.scrape_timeout is not None and job.scrape_timeout > interval:
                problems.append(Problem(("config", "scrape_configs", str(index), "scrape_timeout"),
                                        f"must not be greater than scrape_interval ({interval:g}s)"))
        return problems

    def validate(self) -> list[Problem]:
        return list(self._problems)

    def targets(self) -> list[Target]:
        """Every target of every job, deduplicated as Prometheus does (same address, same labels)."""
        if self._problems or self.scrape is None or self.global_ is None:
            raise ValueError("the configuration has problems: " + "; ".join(map(str, self._problems)))
        found: dict[tuple, Target] = {}
        for job in self.scrape.scrape_configs:
            interval = float(job.scrape_interval or self.global_.scrape_interval)
            timeout = float(job.scrape_timeout or min(self.global_.scrape_timeout, interval))
            params = tuple((key, value) for key, values in job.params.items() for value in values)
            for static in job.static_configs:
                labels = tuple(sorted(static.labels.items()))
                for address in static.targets:
                    found.setdefault((job.job_name, address, labels), Target(
                        job.job_name, address, job.scheme, job.metrics_path, params, labels,
                        job.honor_labels, interval, timeout,
                        job.tls_config.client() if job.scheme == "https" else None,
                        tuple(sorted(self.global_.external_labels.items()))))
        return list(found.values())


def _positive(config, names: tuple[str, ...]) -> list[Problem]:
    return [Problem((name,), "must be positive") for name in names
            if getattr(config, name) is not None and getattr(config, name) <= 0]


def create(settings: Settings, config: Config, consumers: dict):
    from relay.receivers.prometheus.scrape import PrometheusReceiver

    id_, telemetry = settings.id, settings.telemetry
    return PrometheusReceiver(id_, config.targets(), consumers[Signal.METRICS], telemetry)
