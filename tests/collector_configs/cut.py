"""Cut a collector config down to the component types the relay implements.

The corpus test asks "does the relay accept the settings real configs give to the
components it has?", so the cut removes what the relay does not have and keeps the
rest untouched, mistakes included:

- a receiver, processor, exporter, connector or extension whose type the registry
  does not know is removed from its section, from every pipeline that names it and
  from ``service.extensions``;
- a pipeline left with no receiver or no exporter is dropped (the collector refuses
  one, and what it fed is not there to judge);
- a connector the source joined up (named by some pipeline as an exporter and by
  some pipeline as a receiver) whose one side the cut removed is removed too, as it
  now has nowhere to send to or nothing feeding it;
- everything else stays as written: settings of supported components, references
  to components the source never defined, the telemetry section, unknown sections.

A type is what precedes the first "/" of an id, as in the collector. The result
depends only on the text and the registry, so it is reproducible.

Usage: ``python3 -m tests.collector_configs.cut FILE`` prints the cut YAML.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from relay.pipeline.registry import Registry, default_registry

KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")


def type_of(component_id: Any) -> str:
    return str(component_id).partition("/")[0]


def supported_types(registry: Registry) -> dict[str, set[str]]:
    return {kind: set(registry.types(kind)) for kind in KINDS}


def cut(text: str, registry: Registry | None = None) -> dict:
    """The config in ``text`` cut to the types ``registry`` (default: the relay's own) implements."""
    tree = yaml.safe_load(text)
    if not isinstance(tree, dict):
        return tree
    supported = supported_types(registry or default_registry())
    removed: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for kind in KINDS:
        section = tree.get(kind)
        if isinstance(section, dict):
            for key in list(section):
                if type_of(key) not in supported[kind]:
                    removed[kind].add(str(key))
                    del section[key]

    service = tree.get("service")
    if not isinstance(service, dict):
        return tree
    if isinstance(service.get("extensions"), list):
        service["extensions"] = [name for name in service["extensions"]
                                 if not _gone(name, ("extensions",), tree, supported, removed)]
    pipelines = service.get("pipelines")
    if not isinstance(pipelines, dict):
        return tree
    joined = _joined_connectors(pipelines, tree)
    # A pipeline the source itself left without receivers or exporters stays, for the loader to judge.
    empty_in_source = {pipeline_id for pipeline_id, spec in pipelines.items() if _has_empty_side(spec)}
    _drop_references(pipelines, tree, supported, removed)
    while True:
        for pipeline_id in [p for p, spec in pipelines.items()
                            if p not in empty_in_source and _has_empty_side(spec)]:
            del pipelines[pipeline_id]
        # A connector whose other side went with a dropped pipeline: remove what is left of it.
        stranded = {name for name in joined if name not in _joined_connectors(pipelines, tree)}
        if not stranded:
            return tree
        joined -= stranded
        for name in stranded:
            tree["connectors"].pop(name, None)
            removed["connectors"].add(name)
        _drop_references(pipelines, tree, supported, removed)


# Which sections a name in a pipeline list may refer to: a connector, when one of that
# id is configured, else the list's own kind.
_REFERS_TO = {"receivers": ("connectors", "receivers"), "processors": ("processors",),
              "exporters": ("connectors", "exporters")}


def _gone(name, kinds, tree, supported, removed) -> bool:
    """Whether the cut took away what ``name`` refers to (or would have, had the source defined it)."""
    if not isinstance(name, str):
        return False  # not a component id at all: left for the loader to report
    if any(name in removed[kind] for kind in kinds):
        return True
    defined = [kind for kind in kinds if isinstance(tree.get(kind), dict) and name in tree[kind]]
    if defined:
        return False
    return not any(type_of(name) in supported[kind] for kind in kinds)


def _drop_references(pipelines: dict, tree, supported, removed) -> None:
    for spec in pipelines.values():
        if not isinstance(spec, dict):
            continue
        for key, kinds in _REFERS_TO.items():
            if isinstance(spec.get(key), list):
                spec[key] = [name for name in spec[key] if not _gone(name, kinds, tree, supported, removed)]


def _has_empty_side(spec) -> bool:
    return isinstance(spec, dict) and any(isinstance(spec.get(key), list) and not spec[key]
                                          for key in ("receivers", "exporters"))


def _joined_connectors(pipelines: dict, tree) -> set[str]:
    connectors = tree.get("connectors") if isinstance(tree.get("connectors"), dict) else {}
    sides: dict[str, set[str]] = {}
    for spec in pipelines.values():
        if isinstance(spec, dict):
            for key in ("receivers", "exporters"):
                for name in spec.get(key) or []:
                    if isinstance(name, str) and name in connectors:
                        sides.setdefault(name, set()).add(key)
    return {name for name, used in sides.items() if len(used) == 2}


def dump(tree: Any) -> str:
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m tests.collector_configs.cut FILE", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        print(dump(cut(handle.read())), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
