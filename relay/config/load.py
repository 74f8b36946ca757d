"""Load the collector-format YAML: sections, service.pipelines and service.telemetry.

Every problem in the file is collected and raised together as one
``ConfigError``, each with its key path (``exporters::otlp/x::endpoint: ...``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any, Container, Mapping

import yaml

from relay.component import ComponentID, Factory
from relay.config.decode import Advisory, decode, noting_advisories
from relay.config.expand import expand
from relay.config.telemetry import TelemetryConfig
from relay.errors import ConfigError, Problem
from relay.signals import Signal

KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
_SINGULAR = {"receivers": "receiver", "processors": "processor", "exporters": "exporter",
             "connectors": "connector", "extensions": "extension"}
# Where the relay lacks a component type but another route gets the data there: said in the
# error, so that the user learns what to write instead (the README section is by its heading).
_INSTEAD = {("exporters", "datadog"): "send to Datadog through the Datadog Agent's OTLP intake with an otlp "
                                      'exporter, as the README section "Datadog" shows'}


@dataclass
class PipelineConfig:
    receivers: list[str]
    exporters: list[str]
    processors: list[str] = field(default_factory=list)

    def validate(self) -> list[Problem]:
        problems = []
        for key in ("receivers", "exporters"):
            if not getattr(self, key):
                problems.append(Problem((key,), "must name at least one component"))
        for key in ("receivers", "processors", "exporters"):
            names = getattr(self, key)
            # dict.fromkeys, not a set: report duplicates in a stable (document) order.
            for name in dict.fromkeys(n for n in names if names.count(n) > 1):
                problems.append(Problem((key,), f'"{name}" is listed twice'))
        return problems


@dataclass
class ServiceConfig:
    pipelines: dict[str, PipelineConfig]
    extensions: list[str] = field(default_factory=list)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    def validate(self) -> list[Problem]:
        return [] if self.pipelines else [Problem(("pipelines",), "at least one pipeline is required")]


@dataclass
class Pipeline:
    id: str
    signal: Signal
    receivers: list[ComponentID]
    processors: list[ComponentID]
    exporters: list[ComponentID]


@dataclass
class RelayConfig:
    """A loaded, fully validated configuration."""

    components: dict[str, dict[ComponentID, Any]]
    factories: dict[str, dict[ComponentID, Factory]]
    pipelines: list[Pipeline]
    extensions: list[ComponentID]
    telemetry: TelemetryConfig
    # Settings accepted that have no effect here, each logged once at start.
    advisories: list[Advisory] = field(default_factory=list)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which would silently replace a component."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f'duplicate key "{key}"', key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


# Bounds on what a config file may make the relay do before it is judged: its size, the values
# it expands to (YAML aliases can multiply a small file into billions) and its depth.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_CONFIG_VALUES = 1_000_000
MAX_CONFIG_DEPTH = 64


def load_file(path: str, registry, env: Mapping[str, str] | None = None) -> RelayConfig:
    def refuse(problem: str) -> ConfigError:
        return ConfigError([Problem((), f"config file {path}: {problem}")])

    try:
        # Non-blocking, so that a FIFO cannot hold the relay at open() waiting for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(descriptor, "rb", closefd=True) as handle:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise refuse("not a regular file")
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError([Problem((), f"cannot read config file {path}: {error.strerror}")]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise refuse(f"larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise refuse(f"not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})") from None
    try:
        return load(text, registry, env)
    except ConfigError as error:
        raise ConfigError([problem if problem.path else Problem((), f"config file {path}: {problem.message}")
                           for problem in error.problems]) from None


def _bounded(tree, limit: int = MAX_CONFIG_VALUES, depth_limit: int = MAX_CONFIG_DEPTH) -> str | None:
    """Why the tree is too large or deep to handle, else None. Shared subtrees (YAML aliases)
    are counted once per use, but each one is walked only once."""
    sizes: dict[int, int] = {}
    stack = [(tree, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        if not isinstance(node, (dict, list)) or (id(node) in sizes and not done):
            continue
        if depth > depth_limit:
            return f"nested more than {depth_limit} levels deep"
        children = list(node.values()) if isinstance(node, dict) else node
        if done:
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
            if sizes[id(node)] > limit:
                return f"expands to more than {limit:,} values (YAML aliases?)"
            continue
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in children)
    return None


def load(text: str, registry, env: Mapping[str, str] | None = None) -> RelayConfig:
    with noting_advisories() as notes:
        config = _load(text, registry, env)
    # Once each, in document order (a section decoded twice notes its settings twice).
    config.advisories = list(dict.fromkeys(notes))
    return config


def _load(text: str, registry, env: Mapping[str, str] | None) -> RelayConfig:
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError([Problem((), f"invalid YAML: {error}")]) from None
    except RecursionError:
        raise ConfigError([Problem((), f"invalid YAML: nested more than {MAX_CONFIG_DEPTH} levels deep")]) from None
    if raw is None:
        raw = {}
    too_much = _bounded(raw)
    if too_much is not None:
        raise ConfigError([Problem((), f"the config {too_much}")])
    if not isinstance(raw, dict):
        raise ConfigError([Problem((), "the config must be a mapping of sections")])
    raw, problems = expand(raw, os.environ if env is None else env)

    for key in raw:
        if key not in KINDS + ("service",):
            problems.append(Problem((str(key),), "unknown section (valid: " + ", ".join(KINDS + ("service",)) + ")"))

    components: dict[str, dict[ComponentID, Any]] = {}
    factories: dict[str, dict[ComponentID, Factory]] = {}
    # Every id written in a section, even one whose type is unsupported or whose settings
    # are invalid: that component's own problem is already reported, so a pipeline naming
    # it must not be reported again as "not configured".
    present: dict[str, Container[ComponentID]] = {}
    for kind in KINDS:
        components[kind], factories[kind], present[kind] = _load_section(kind, raw.get(kind), registry,
                                                                         problems)

    service = None
    if "service" not in raw:
        problems.append(Problem(("service",), "required section is missing"))
    else:
        service, sub = decode(ServiceConfig, raw["service"], ("service",))
        problems += sub
    # An invalid service section (say, one empty pipeline) must not hide the reference
    # problems of the rest of it: check whatever parts of it still decode.
    service_pipelines, service_extensions = ((service.pipelines, service.extensions) if service is not None
                                             else _decodable_parts(raw.get("service")))
    pipelines = _load_pipelines(service_pipelines, factories, present, problems)
    extensions: list[ComponentID] = []
    for index, name in enumerate(service_extensions):
        id_ = _reference(name, "extensions", factories, present, ("service", "extensions", str(index)),
                         problems)
        if id_ is not None:
            extensions.append(id_)

    problems += _extension_references(components, factories, extensions)
    problems += _signal_problems(components, pipelines)

    if problems:
        raise ConfigError(problems)
    return RelayConfig(components, factories, pipelines, extensions, service.telemetry)


def _signal_problems(components, pipelines: list[Pipeline]) -> list[Problem]:
    """An exporter whose settings depend on the signals sent to it (a URL per signal) says
    what is missing, once the pipelines tell which signals those are."""
    problems = []
    for id_, config in components["exporters"].items():
        check = getattr(config, "signal_problems", None)
        if check is not None:
            signals = {p.signal for p in pipelines if id_ in p.exporters}
            problems += [p.under("exporters", str(id_)) for p in check(signals)]
    return problems


def _extension_references(components, factories, enabled: list[ComponentID]) -> list[Problem]:
    """Components that name an extension (a queue's ``storage``) need it configured,
    enabled in ``service.extensions`` and of the right type."""
    problems = []
    for kind in KINDS:
        for id_, config in components[kind].items():
            for path, name, required in getattr(config, "extension_references", lambda: [])():
                where = (kind, str(id_)) + path
                try:
                    ext = ComponentID.parse(name)
                except ValueError as error:
                    problems.append(Problem(where, str(error)))
                    continue
                if ext not in factories["extensions"]:
                    problems.append(Problem(where, f'references extension "{name}", which is not configured '
                                                   "under extensions"))
                elif ext not in enabled:
                    problems.append(Problem(where, f'extension "{name}" must also be listed in '
                                                   "service::extensions"))
                elif ext.type != required:
                    problems.append(Problem(where, f'extension "{name}" is a {ext.type}, not a {required}'))
    return problems


def _decodable_parts(raw_service: Any) -> tuple[dict[str, PipelineConfig], list[str]]:
    """The pipelines and extensions of a service section that failed to decode as a whole.

    Their problems were already reported by the full decode; they are dropped here.
    """
    if not isinstance(raw_service, dict):
        return {}, []
    pipelines, _ = decode(dict[str, PipelineConfig], raw_service.get("pipelines"), ("service", "pipelines"))
    extensions, sub = decode(list[str], raw_service.get("extensions", []), ("service", "extensions"))
    return ({k: v for k, v in (pipelines or {}).items() if v is not None},
            extensions if extensions is not None and not sub else [])


class _EveryId:
    """The ``present`` ids of a malformed section: any reference into it may have been meant."""

    def __contains__(self, id_) -> bool:
        return True


def _load_section(kind: str, section: Any, registry, problems: list[Problem]):
    configs: dict[ComponentID, Any] = {}
    found: dict[ComponentID, Factory] = {}
    present: set[ComponentID] = set()
    if section is None:
        return configs, found, present
    if not isinstance(section, dict):
        problems.append(Problem((kind,), "expected a mapping of component ids to settings"))
        # Which ids the user meant is unknown: do not also report every reference into it.
        return configs, found, _EveryId()
    available = registry.types(kind)
    for key, body in section.items():
        path = (kind, str(key))
        try:
            id_ = ComponentID.parse(key)
        except ValueError as error:
            problems.append(Problem(path, str(error)))
            continue
        present.add(id_)
        factory = available.get(id_.type)
        if factory is None:
            instead = _INSTEAD.get((kind, id_.type))
            problems.append(Problem(path, f'unsupported {_SINGULAR[kind]} type "{id_.type}" '
                                          f'(available: {", ".join(sorted(available)) or "none"})'
                                          + (f"; {instead}" if instead else "")))
            continue
        config, sub = decode(factory.config, body, path)
        problems += sub
        if config is not None:
            configs[id_] = config
            found[id_] = factory
    return configs, found, present


def _reference(name, kind, factories, present, path, problems) -> ComponentID | None:
    try:
        id_ = ComponentID.parse(name)
    except ValueError as error:
        problems.append(Problem(path, str(error)))
        return None
    if id_ not in factories[kind]:
        if id_ not in present[kind]:
            problems.append(Problem(path, f'references {_SINGULAR[kind]} "{name}", which is not configured'
                                          f' under {kind}'))
        return None
    return id_


def _load_pipelines(pipelines: dict[str, PipelineConfig], factories, present, problems) -> list[Pipeline]:
    out = []
    used: dict[str, dict[ComponentID, tuple]] = {"receivers": {}, "exporters": {}}
    for pipeline_id, spec in pipelines.items():
        path = ("service", "pipelines", pipeline_id)
        try:
            signal_name = ComponentID.parse(pipeline_id).type
        except ValueError as error:
            problems.append(Problem(path, str(error).replace("component id", "pipeline id")))
            continue
        try:
            signal = Signal(signal_name)
        except ValueError:
            problems.append(Problem(path, f'unknown signal "{signal_name}" (pipelines are named '
                                          'traces, metrics, logs or profiles, optionally with "/name")'))
            continue
        refs = {}
        for kind in ("receivers", "processors", "exporters"):
            refs[kind] = []
            for index, name in enumerate(getattr(spec, kind)):
                where = path + (kind, str(index))
                connector = _connector(name, kind, factories, where, problems)
                if connector is not None:
                    id_, usable = connector
                    used[kind].setdefault(id_, where)
                    if signal not in usable:
                        role = "emit" if kind == "receivers" else "consume"
                        problems.append(Problem(where, f'connector "{name}" does not {role} {signal.value}'))
                        continue
                    refs[kind].append(id_)
                    continue
                id_ = _reference(name, kind, factories, present, where, problems)
                if id_ is None:
                    continue
                if signal not in factories[kind][id_].signals:
                    problems.append(Problem(where, f'{_SINGULAR[kind]} "{name}" does not support {signal.value}'))
                    continue
                refs[kind].append(id_)
        out.append(Pipeline(pipeline_id, signal, refs["receivers"], refs["processors"], refs["exporters"]))
    # A connector joins pipelines: it must end one (as an exporter) and start another (as a receiver).
    for id_, where in used["exporters"].items():
        if id_ not in used["receivers"]:
            problems.append(Problem(where, f'connector "{id_}" is used as an exporter but no pipeline '
                                           "uses it as a receiver"))
    for id_, where in used["receivers"].items():
        if id_ not in used["exporters"]:
            problems.append(Problem(where, f'connector "{id_}" is used as a receiver but no pipeline '
                                           "uses it as an exporter"))
    return out


def _connector(name, kind, factories, where, problems) -> tuple[ComponentID, frozenset] | None:
    """(id, signals usable on this side) when ``name`` is a configured connector in receivers/exporters."""
    if kind == "processors":
        return None
    try:
        id_ = ComponentID.parse(name)
    except ValueError:
        return None
    factory = factories["connectors"].get(id_)
    if factory is None:
        return None
    return id_, factory.to_signals if kind == "receivers" else factory.signals
