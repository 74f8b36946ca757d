"""Configuration of the ``resourcedetection`` processor, with the collector's keys and defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from relay.config.decode import Duration
from relay.errors import Problem

# The detectors that run here: they read this process's environment and host, nothing else.
LOCAL_DETECTORS = ("env", "system")
# The collector's other detectors, with why each has no effect here. They are accepted, so that
# a collector config listing them loads, and logged once at start.
INERT_DETECTORS = {
    "gcp": "needs network", "ec2": "needs network", "ecs": "needs network",
    "elastic_beanstalk": "needs network", "eks": "needs network", "lambda": "needs network",
    "azure": "needs network", "aks": "needs network", "azurecontainerapps": "needs network",
    "openshift": "needs network", "consul": "needs network", "k8s_api": "needs network",
    "k8snode": "needs network", "kubeadm": "needs network", "hetzner": "needs network",
    "akamai": "needs network", "scaleway": "needs network", "vultr": "needs network",
    "oraclecloud": "needs network", "digitalocean": "needs network", "nova": "needs network",
    "upcloud": "needs network", "alibaba_ecs": "needs network", "tencent_cvm": "needs network",
    "ibmcloud_vpc": "needs network", "ibmcloud_classic": "needs network",
    "docker": "needs the Docker daemon", "heroku": "not implemented here",
    "dynatrace": "not implemented here",
}

HOSTNAME_SOURCES = ("dns", "os", "cname", "lookup")
DEFAULT_HOSTNAME_SOURCES = ["dns", "os"]

# The system detector's resource attributes and whether each is on by default
# (the collector's internal/system/metadata.yaml).
SYSTEM_ATTRIBUTES = {
    "host.name": True, "os.type": True,
    "host.id": False, "host.arch": False, "host.ip": False, "host.mac": False, "host.interface": False,
    "os.description": False, "os.name": False, "os.version": False, "os.build.id": False,
    "host.cpu.vendor.id": False, "host.cpu.family": False, "host.cpu.model.id": False,
    "host.cpu.model.name": False, "host.cpu.stepping": False, "host.cpu.cache.l2.size": False,
}


@dataclass
class AttributeConfig:
    # None: the attribute's default (SYSTEM_ATTRIBUTES).
    enabled: bool | None = None


@dataclass
class SystemConfig:
    # Tried in order until one gives a hostname; empty means ["dns", "os"], as in the collector.
    hostname_sources: list[Literal["dns", "os", "cname", "lookup"]] = field(default_factory=list)
    resource_attributes: dict[str, AttributeConfig] = field(default_factory=dict)

    def validate(self) -> list[Problem]:
        known = ", ".join(sorted(SYSTEM_ATTRIBUTES))
        return [Problem(("resource_attributes", name), f"unknown attribute (known: {known})")
                for name in self.resource_attributes if name not in SYSTEM_ATTRIBUTES]

    def sources(self) -> list[str]:
        return list(self.hostname_sources) or list(DEFAULT_HOSTNAME_SOURCES)

    def enabled(self) -> list[str]:
        out = []
        for name, default in SYSTEM_ATTRIBUTES.items():
            chosen = self.resource_attributes.get(name)
            if chosen is not None and chosen.enabled is not None:
                default = chosen.enabled
            if default:
                out.append(name)
        return out


@dataclass
class Config:
    detectors: list[str] = field(default_factory=lambda: ["env"])
    # Detected attributes replace what the data already has (true) or only fill gaps (false).
    override: bool = True
    # Bounds detection at start (the system detector's DNS lookups).
    timeout: Duration = Duration(5.0)
    # Deprecated in the collector: when set, only these detected attributes are added.
    attributes: list[str] | None = None
    system: SystemConfig = field(default_factory=SystemConfig)
    # The inert detectors' own sections, accepted so that collector configs load (no effect).
    gcp: Any = None
    ec2: Any = None
    ecs: Any = None
    eks: Any = None
    elastic_beanstalk: Any = None
    azure: Any = None
    aks: Any = None
    openshift: Any = None
    consul: Any = None
    docker: Any = None
    heroku: Any = None
    k8snode: Any = None
    k8s_api: Any = None

    def validate(self) -> list[Problem]:
        problems = []
        if not self.detectors:
            problems.append(Problem(("detectors",), "at least one detector is required"))
        known = LOCAL_DETECTORS + tuple(INERT_DETECTORS)
        for index, name in enumerate(self.detectors):
            if name.strip() not in known:
                problems.append(Problem(("detectors", str(index)),
                                        f'unknown detector "{name}" (known: {", ".join(sorted(known))})'))
        names = [n.strip() for n in self.detectors]
        for name in dict.fromkeys(n for n in names if names.count(n) > 1):
            problems.append(Problem(("detectors",), f'"{name}" is listed twice'))
        if self.timeout <= 0:
            problems.append(Problem(("timeout",), "must be positive"))
        return problems

    def local(self) -> list[str]:
        return [n.strip() for n in self.detectors if n.strip() in LOCAL_DETECTORS]

    def inert(self) -> list[str]:
        return [n.strip() for n in self.detectors if n.strip() in INERT_DETECTORS]
