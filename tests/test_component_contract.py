"""The contract every registered component type keeps, checked over the registry itself, so a
new type is covered the day it is registered:

- its module names ``TYPE``, ``Config``, ``SIGNALS``, ``create`` and an ``EXAMPLE`` config;
- the example decodes without problems;
- built from its example inside a pipeline, on free loopback ports, it starts and shuts down.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import itertools
import re
import sys

import pytest
import yaml

from relay.config.decode import decode
from relay.config.load import load
from relay.pipeline.graph import Graph
from relay.pipeline.registry import default_registry
from relay.signals import Signal
from relay.telemetry import SelfMetrics
from tests.support import free_port

KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
REGISTRY = default_registry()
# One entry per type (aliases name the same factory).
TYPES = sorted({(kind, factory.type) for kind in KINDS for factory in REGISTRY.types(kind).values()})
_ENDPOINT = re.compile(r"127\.0\.0\.1:\d+")
_DIRECTORIES = itertools.count()


def module_of(kind: str, type_name: str):
    return sys.modules[REGISTRY.types(kind)[type_name].create.__module__]


def localized(example, tmp_path):
    """The example with each loopback port replaced by a free one and each directory by a fresh one."""
    def walk(value, key=None):
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str):
            if key == "directory":
                return str(tmp_path / f"dir{next(_DIRECTORIES)}")
            return _ENDPOINT.sub(lambda _: f"127.0.0.1:{free_port()}", value)
        return value
    return walk(copy.deepcopy(example))


def test_every_kind_has_types():
    assert {kind for kind, _ in TYPES} == set(KINDS)


@pytest.mark.parametrize("kind, type_name", TYPES)
def test_the_module_keeps_the_contract(kind, type_name):
    module = module_of(kind, type_name)
    assert module.TYPE == type_name
    assert dataclasses.is_dataclass(module.Config)
    assert isinstance(module.EXAMPLE, dict)
    assert set(module.SIGNALS) <= set(Signal) and (module.SIGNALS or kind == "extensions")
    _, problems = decode(module.Config, module.EXAMPLE)
    assert problems == [], [str(p) for p in problems]


def relay_config(kind: str, type_name: str, tmp_path) -> str:
    """A config with the component in a pipeline of a signal it takes, everything on loopback."""
    module = module_of(kind, type_name)
    example = localized(module.EXAMPLE, tmp_path)
    signal = sorted(module.SIGNALS, key=lambda s: s.value)[0].value if module.SIGNALS else "traces"
    grpc = {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{free_port()}"}}}
    tree = {"receivers": {"otlp": grpc}, "exporters": {"debug": {}}, "processors": {}, "connectors": {},
            "extensions": {}, "service": {"extensions": [], "pipelines": {}}}
    pipelines = tree["service"]["pipelines"]
    name = type_name if type_name != "otlp" or kind != "receivers" else "otlp/under_test"
    if kind == "receivers":
        tree["receivers"][name] = example
        pipelines[signal] = {"receivers": [name], "exporters": ["debug"]}
    elif kind == "processors":
        tree["processors"][name] = example
        pipelines[signal] = {"receivers": ["otlp"], "processors": [name], "exporters": ["debug"]}
    elif kind == "exporters":
        tree["exporters"][f"{name}/under_test"] = example
        pipelines[signal] = {"receivers": ["otlp"], "exporters": [f"{name}/under_test"]}
    elif kind == "connectors":
        tree["connectors"][name] = example
        emitted = sorted(REGISTRY.types(kind)[type_name].to_signals, key=lambda s: s.value)[0].value
        pipelines[signal] = {"receivers": ["otlp"], "exporters": [name]}
        pipelines[f"{emitted}/out"] = {"receivers": [name], "exporters": ["debug"]}
    else:
        tree["extensions"][name] = example
        tree["service"]["extensions"].append(name)
        pipelines["traces"] = {"receivers": ["otlp"], "exporters": ["debug"]}
    # What the example refers to is configured too: the extensions it names.
    for needed, settings in getattr(module, "EXAMPLE_NEEDS", {}).items():
        tree["extensions"][needed] = localized(settings, tmp_path)
        tree["service"]["extensions"].append(needed)
    for section in ("processors", "connectors", "extensions"):
        if not tree[section]:
            del tree[section]
    return yaml.safe_dump(tree)


@pytest.mark.parametrize("kind, type_name", TYPES)
def test_it_builds_from_its_example_starts_and_shuts_down(kind, type_name, tmp_path):
    config = load(relay_config(kind, type_name, tmp_path), REGISTRY, env={})

    async def run():
        graph = Graph(config, SelfMetrics())
        await asyncio.wait_for(graph.start(), 20)
        await asyncio.wait_for(graph.shutdown(5.0), 20)
        return graph

    graph = asyncio.run(run())
    built = {"receivers": graph.receivers, "exporters": graph.exporters, "connectors": graph.connectors,
             "extensions": graph.extensions}.get(kind)
    if built is not None:
        assert any(id_.type == type_name or REGISTRY.types(kind)[id_.type].type == type_name for id_ in built)
    else:
        assert any(chain for chain in graph.processors)
