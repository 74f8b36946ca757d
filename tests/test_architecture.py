"""The import graph runs downward: a component imports its own modules, its kind's helper and
the shared layers below, never another component's module."""

from __future__ import annotations

import ast
from pathlib import Path

import relay
from relay.pipeline.registry import default_registry

ROOT = Path(relay.__file__).parent
KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
# Above the components: what assembles, runs or measures them.
ABOVE = {"pipeline", "cli", "service", "bench", "report_cli", "pricing_cli", "__main__"}


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("relay",) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = modules()


def imports(name: str, path: Path) -> set[str]:
    """The relay modules ``name`` imports, anywhere in it (function-level imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {target for target in found if target in MODULES}


def place(name: str) -> tuple[str, str] | None:
    """(kind, component or "helper") of a module under a component kind, else None."""
    parts = name.split(".")
    return (parts[1], parts[2]) if len(parts) >= 3 and parts[1] in KINDS else None


def violations() -> list[str]:
    out = []
    for name, path in sorted(MODULES.items()):
        layer = name.split(".")[1] if "." in name else ""
        if layer in ABOVE:
            continue
        here = place(name)
        for target in sorted(imports(name, path)):
            there = place(target)
            if there is None or there == here:
                continue
            if here is None:
                out.append(f"{name} (shared) imports the component module {target}")
            elif here[1] == "helper":
                out.append(f"{name} (a helper) imports {target}")
            elif there != (here[0], "helper"):
                out.append(f"{name} imports {target}, a module of another component")
    return out


def test_no_component_imports_another_components_module():
    assert violations() == []


def test_the_rule_sees_what_it_must(tmp_path, monkeypatch):
    """The checker finds each kind of arrow it forbids, in files written for it."""
    fake = {"relay.exporters.jaeger.x": "from relay.exporters.otlp_grpc import TLSConfig\n",
            "relay.ledger.y": "def f():\n    from relay.extensions import file_storage\n",
            "relay.exporters.helper.z": "from relay.exporters.otlp_http import transport\n",
            "relay.exporters.jaeger.ok": "from relay.exporters.helper import exporter\nfrom relay.net import tls\n"}
    for name, text in fake.items():
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        monkeypatch.setitem(MODULES, name, path)
    found = violations()
    assert any("relay.exporters.jaeger.x imports relay.exporters.otlp_grpc" in v for v in found)
    assert any("relay.ledger.y (shared) imports the component module relay.extensions.file_storage" in v
               for v in found)
    assert any("relay.exporters.helper.z (a helper) imports relay.exporters.otlp_http" in v for v in found)
    assert not any(v.startswith("relay.exporters.jaeger.ok") for v in found)


def test_every_registered_component_lives_in_its_own_module():
    """Each factory's module is under its kind, so the rule above covers every component."""
    registry = default_registry()
    seen = 0
    for kind in KINDS:
        for type_name, factory in registry.types(kind).items():
            module = factory.create.__module__
            assert place(module) is not None and place(module)[1] != "helper", (kind, type_name, module)
            seen += 1
    assert seen >= 15
