"""The component model shared by receivers, processors, exporters and extensions.

Lifecycle contract: the service calls ``start()`` once before any data flows
and ``shutdown()`` once at the end, even if ``start()`` failed part-way.
Exporters (and the processors in front of them) start before receivers, so
nothing is accepted that could not be passed on; receivers stop first, so
nothing new arrives while processors flush and exporters drain.
``shutdown()`` must return within the deadline the service gives it and must
not raise for data that was still in flight: that data is logged and counted.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

from relay.signals import Signal

_TYPE = re.compile(r"^[A-Za-z0-9_]+$")


def _valid_name(name: str) -> bool:
    """The collector's rule for the part after the first "/": not empty, and no separator, control
    or symbol character (so "metrics/infra/otel" is the pipeline "metrics" named "infra/otel")."""
    return bool(name) and all(unicodedata.category(char)[0] not in "ZCS" for char in name)


class Component(Protocol):
    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...


@dataclass(frozen=True, order=True)
class ComponentID:
    """``type`` or ``type/name``, as keys of the collector's config sections."""

    type: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> "ComponentID":
        type_, slash, name = text.partition("/") if isinstance(text, str) else ("", "", "")
        if not _TYPE.match(type_) or (slash and not _valid_name(name)):
            raise ValueError(f'invalid component id "{text}": expected "type" or "type/name"')
        return cls(type_, name)

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type


@dataclass(frozen=True)
class Factory:
    """What the registry knows of a component type: its Config class and how to build it.

    Component modules expose ``TYPE``, ``Config`` (a dataclass with ``validate()``),
    ``SIGNALS`` and ``create(...)``; ``from_module`` reads those names. A connector
    consumes ``SIGNALS`` as an exporter and emits ``TO_SIGNALS`` as a receiver.
    """

    type: str
    config: type
    create: "ReceiverFactory | ProcessorFactory | ExporterFactory"
    signals: frozenset[Signal]
    # Connectors only: the signals they emit into the pipelines that name them as a receiver.
    to_signals: frozenset[Signal] = frozenset()

    @classmethod
    def from_module(cls, module: ModuleType, type_: str | None = None) -> "Factory":
        return cls(type_ or module.TYPE, module.Config, module.create, frozenset(module.SIGNALS),
                   frozenset(getattr(module, "TO_SIGNALS", ())))


@dataclass
class Host:
    """What a component may look up: the extensions, by id, and the config being run.

    The loader has already checked every reference (an exporter's
    ``sending_queue.storage``, say) against ``service.extensions``.
    """

    extensions: dict[ComponentID, Any] = field(default_factory=dict)
    # The loaded RelayConfig (pipelines, component settings), for extensions that describe it.
    config: Any = None
    telemetry: Any = None
    # (method, path, handler) that components add to the relay's telemetry HTTP port.
    routes: list = field(default_factory=list)

    def extension(self, name: str) -> Any:
        return self.extensions[ComponentID.parse(name)]


@dataclass(frozen=True)
class Settings:
    """What every factory is given first, whatever its kind."""

    id: ComponentID
    # The relay's own metrics (``relay.telemetry.SelfMetrics``).
    telemetry: Any
    # The running extensions and the loaded config; a bare Host where nothing is running.
    host: Host = field(default_factory=Host)
    # Exporters and connectors: the signals of the pipelines that send to them. Empty where
    # no pipeline says (a component built on its own): every signal its type takes.
    signals: frozenset[Signal] = frozenset()


class ReceiverFactory(Protocol):
    """``consumers``: the head of each pipeline the receiver feeds, by signal."""

    def __call__(self, settings: Settings, config: Any, consumers: dict) -> Any: ...


class ProcessorFactory(Protocol):
    def __call__(self, settings: Settings, config: Any, next_consumer: Any) -> Any: ...


class ExporterFactory(Protocol):
    """Exporters, connectors (bound to their pipelines after) and extensions."""

    def __call__(self, settings: Settings, config: Any) -> Any: ...
