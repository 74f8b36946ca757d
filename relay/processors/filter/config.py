"""The filter processor's settings, and their compilation into what to drop.

Two forms, as in the collector. The OTTL form lists conditions per context
(``traces: {span, spanevent}``, ``metrics: {metric, datapoint}``,
``logs: {log_record}``, ``profiles: {profile}``); an item matching any of them is dropped. The older
form (``spans``, ``metrics`` and ``logs`` with ``include`` / ``exclude``,
``match_type`` strict or regexp) keeps what ``include`` selects and drops
what ``exclude`` selects; it is compiled by ``relay.attributes.filterspec``.
The collector refuses both forms for one signal at once, and so does this.

Conditions are parsed and compiled while the config is validated, so
``genops-relay validate`` reports every bad one and the processor never parses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from relay.attributes.filterspec import AttributeMatch, MatchProperties
from relay.errors import Problem
from relay.ottl.compile import Scope, predicate
from relay.ottl.compiled_config import CompiledConfig, statement_problem
from relay.ottl.contexts import Item
from relay.ottl.parse import StatementError, parse_condition
from relay.signals import Signal

ErrorMode = Literal["ignore", "silent", "propagate"]
# The collector's default since its filter processor's error-mode gate went stable (v0.150+):
# a condition that fails on an item is logged and counts as false, so the item is kept.
DEFAULT_ERROR_MODE = "ignore"


@dataclass
class TraceConditions:
    span: list[str] = field(default_factory=list)
    spanevent: list[str] = field(default_factory=list)

    def validate(self) -> list[Problem]:
        return []


@dataclass
class ProfileConditions:
    """``profiles: {profile: [...]}``: the collector's development signal; conditions may read
    resource and scope paths and the profile's own (``attributes`` from the request's dictionary)."""

    profile: list[str] = field(default_factory=list)

    def validate(self) -> list[Problem]:
        return []


@dataclass
class SpanFilters:
    """``spans: include / exclude``: the attributes processor's match properties."""

    include: MatchProperties | None = None
    exclude: MatchProperties | None = None

    def validate(self) -> list[Problem]:
        return []


_NOT_SUPPORTED = ('is not supported by this relay; write the condition in the OTTL form instead '
                  '(e.g. metrics: {metric: [...]} or logs: {log_record: [...]})')


@dataclass
class MetricMatch:
    match_type: Literal["strict", "regexp", "expr"]
    metric_names: list[str] = field(default_factory=list)
    resource_attributes: list[AttributeMatch] = field(default_factory=list)
    expressions: list[str] = field(default_factory=list)

    def validate(self) -> list[Problem]:
        if self.match_type == "expr" or self.expressions:
            return [Problem(("match_type",) if self.match_type == "expr" else ("expressions",),
                            f'match_type "expr" {_NOT_SUPPORTED}')]
        return self.properties().validate()

    def properties(self) -> MatchProperties:
        return MatchProperties(self.match_type, metric_names=self.metric_names, resources=self.resource_attributes)


@dataclass
class SeverityNumberMatch:
    min: str = ""
    match_undefined: bool = False

    def validate(self) -> list[Problem]:
        return []


@dataclass
class LogMatch:
    match_type: Literal["strict", "regexp"] = "strict"
    resource_attributes: list[AttributeMatch] = field(default_factory=list)
    record_attributes: list[AttributeMatch] = field(default_factory=list)
    severity_texts: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    severity_number: SeverityNumberMatch | None = None

    def validate(self) -> list[Problem]:
        unsupported = [name for name in ("severity_texts", "bodies", "severity_number") if getattr(self, name)]
        if unsupported:
            return [Problem((name,), f"{name} {_NOT_SUPPORTED}") for name in unsupported]
        return self.properties().validate()

    def properties(self) -> MatchProperties:
        return MatchProperties(self.match_type, attributes=self.record_attributes, resources=self.resource_attributes)


@dataclass
class MetricFilters:
    metric: list[str] = field(default_factory=list)
    datapoint: list[str] = field(default_factory=list)
    include: MetricMatch | None = None
    exclude: MetricMatch | None = None

    def validate(self) -> list[Problem]:
        return _not_both(self.metric or self.datapoint, self.include or self.exclude, "metrics")


@dataclass
class LogFilters:
    log_record: list[str] = field(default_factory=list)
    include: LogMatch | None = None
    exclude: LogMatch | None = None

    def validate(self) -> list[Problem]:
        return _not_both(self.log_record, self.include or self.exclude, "logs")


def _not_both(ottl, legacy, what: str) -> list[Problem]:
    if ottl and legacy:
        return [Problem((), f"cannot use OTTL conditions and include/exclude for {what} at the same time")]
    return []


# --- the compiled plan --------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    text: str
    test: Callable[[Item], bool]


@dataclass(frozen=True)
class Legacy:
    include: MatchProperties | None
    exclude: MatchProperties | None


@dataclass(frozen=True)
class Plan:
    # OTTL conditions by context ("span", "spanevent", "metric", "datapoint", "log", "profile").
    conditions: dict[str, tuple[Condition, ...]]
    legacy: dict[Signal, Legacy]
    error_mode: str

    def covers(self, signal: Signal) -> bool:
        return signal in self.legacy or any(self.conditions.get(c) for c in _CONTEXTS_OF[signal])


_CONTEXTS_OF = {Signal.TRACES: ("span", "spanevent"), Signal.METRICS: ("metric", "datapoint"),
                Signal.LOGS: ("log",), Signal.PROFILES: ("profile",)}
# Config key -> OTTL context (the collector's log context is "log" in paths, "log_record" here).
_SECTIONS = (("traces", "span", "span"), ("traces", "spanevent", "spanevent"), ("metrics", "metric", "metric"),
             ("metrics", "datapoint", "datapoint"), ("logs", "log_record", "log"), ("profiles", "profile", "profile"))


@dataclass
class Config(CompiledConfig):
    error_mode: ErrorMode = DEFAULT_ERROR_MODE
    traces: TraceConditions | None = None
    metrics: MetricFilters | None = None
    logs: LogFilters | None = None
    profiles: ProfileConditions | None = None
    spans: SpanFilters | None = None

    def build(self) -> tuple[Plan, list[Problem]]:
        return build_plan(self)


def build_plan(config: Config) -> tuple[Plan, list[Problem]]:
    problems: list[Problem] = []
    conditions: dict[str, tuple[Condition, ...]] = {}
    for section, key, context in _SECTIONS:
        holder = getattr(config, section)
        texts = getattr(holder, key) if holder is not None else []
        compiled = []
        for index, text in enumerate(texts):
            try:
                compiled.append(Condition(str(text), predicate(parse_condition(text), Scope(context))))
            except StatementError as error:
                problems.append(statement_problem((section, key, str(index)), text, error, "condition"))
        if compiled:
            conditions[context] = tuple(compiled)
    legacy: dict[Signal, Legacy] = {}
    if config.spans is not None and (config.spans.include or config.spans.exclude):
        if config.traces is not None and (config.traces.span or config.traces.spanevent):
            problems.append(Problem((), "cannot use OTTL conditions (traces) and include/exclude (spans) "
                                        "at the same time"))
        legacy[Signal.TRACES] = Legacy(config.spans.include, config.spans.exclude)
    for signal, holder in ((Signal.METRICS, config.metrics), (Signal.LOGS, config.logs)):
        if holder is not None and (holder.include or holder.exclude):
            legacy[signal] = Legacy(holder.include and holder.include.properties(),
                                    holder.exclude and holder.exclude.properties())
    return Plan(conditions, legacy, config.error_mode), problems

