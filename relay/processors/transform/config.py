"""The transform processor's settings, and their compilation into a plan.

Statements are parsed and compiled while the config is validated, so
``genops-relay validate`` reports every bad statement, and the running
processor never parses. Both collector layouts are accepted under each of
``trace_statements``, ``metric_statements`` and ``log_statements``: groups
(``{context, statements, conditions, error_mode}``) and plain statement
strings, whose context is inferred from their path prefixes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from relay.config.decode import decode
from relay.errors import Problem
from relay.ottl.compile import Scope, compile_statement, infer_context, predicate
from relay.ottl.compiled_config import CompiledConfig, statement_problem
from relay.ottl.contexts import BY_SIGNAL, Item
from relay.ottl.parse import StatementError, parse_condition, parse_statement
from relay.signals import Signal

ErrorMode = Literal["ignore", "silent", "propagate"]

SECTIONS = {"trace_statements": Signal.TRACES, "metric_statements": Signal.METRICS,
            "log_statements": Signal.LOGS}


@dataclass
class StatementGroup:
    statements: list[str]
    context: str = ""
    # Any one of them must hold for the group's statements to run on an item.
    conditions: list[str] = field(default_factory=list)
    error_mode: ErrorMode | None = None

    def validate(self) -> list[Problem]:
        return []


@dataclass(frozen=True)
class Compiled:
    text: str
    run: Callable[[Item], Any]


@dataclass(frozen=True)
class Group:
    context: str
    statements: tuple[Compiled, ...]
    condition: Compiled | None
    error_mode: str


Plan = dict[Signal, tuple[Group, ...]]


@dataclass
class Config(CompiledConfig):
    error_mode: ErrorMode = "ignore"
    trace_statements: list[Any] | None = None
    metric_statements: list[Any] | None = None
    log_statements: list[Any] | None = None

    def build(self) -> tuple[Plan, list[Problem]]:
        return build_plan(self)


def build_plan(config: Config) -> tuple[Plan, list[Problem]]:
    plan: Plan = {}
    problems: list[Problem] = []
    for key, signal in SECTIONS.items():
        groups = []
        for index, raw in enumerate(getattr(config, key) or ()):
            path = (key, str(index))
            if isinstance(raw, str):
                group, sub = _flat(raw, signal, config.error_mode, path)
            elif isinstance(raw, dict):
                group, sub = _group(raw, signal, config.error_mode, path)
            else:
                group, sub = None, [Problem(path, "expected a statement string or a mapping with context and "
                                                  f"statements, got {_kind(raw)}")]
            problems += sub
            if group is not None:
                groups.append(group)
        if groups:
            plan[signal] = tuple(groups)
    return plan, problems


def _kind(raw: Any) -> str:
    return {list: "list", int: "integer", float: "number", bool: "boolean", type(None): "null"}.get(
        type(raw), type(raw).__name__)


def _flat(text: str, signal: Signal, error_mode: str, path) -> tuple[Group | None, list[Problem]]:
    try:
        tree = parse_statement(text)
        scope = Scope(infer_context([tree], signal), inferred=True)
        run = compile_statement(tree, scope)
    except StatementError as error:
        return None, [statement_problem(path, text, error)]
    return Group(scope.context, (Compiled(str(text), run),), None, error_mode), []


def _group(raw: dict, signal: Signal, error_mode: str, path) -> tuple[Group | None, list[Problem]]:
    spec, problems = decode(StatementGroup, raw, path)
    if spec is None or problems:
        return None, problems
    available = BY_SIGNAL[signal]
    unknown_context = spec.context and spec.context not in available
    if unknown_context:
        problems.append(Problem(path + ("context",), f'"{spec.context}" is not a context for {signal.value} '
                                                     f"(use one of: {', '.join(available)})"))
    statements = _parse_all(spec.statements, parse_statement, path + ("statements",), "statement", problems)
    conditions = _parse_all(spec.conditions, parse_condition, path + ("conditions",), "condition", problems)
    parsed = [tree for _, tree, _ in statements + conditions]
    if unknown_context:
        return None, problems  # parsing needs no context, but compiling does
    if spec.context:
        scope = Scope(spec.context)
    elif not parsed:
        return None, problems  # nothing parsed, so nothing to infer from; each failure is already reported
    else:
        try:
            scope = Scope(infer_context(parsed, signal), inferred=True)
        except StatementError as error:
            return None, problems + [Problem(path, f'{error}; or set "context"')]
    compiled = _compile_all(statements, lambda tree: compile_statement(tree, scope), "statement", problems)
    checks = _compile_all(conditions, lambda tree: predicate(tree, scope), "condition", problems)
    if problems:
        return None, sorted(problems, key=lambda p: _document_order(p, len(path)))
    return Group(scope.context, tuple(compiled), _any_of(checks), spec.error_mode or error_mode), []


def _document_order(problem: Problem, depth: int) -> tuple:
    # Parsing and compiling are separate passes (the context may be inferred from all
    # statements in between); problems are still listed in the order of the file.
    rest = problem.path[depth:]
    if len(rest) < 2:
        return (2, 0)
    return (0 if rest[0] == "statements" else 1, int(rest[1]))


def _parse_all(texts, parse, path, what: str, problems: list[Problem]) -> list[tuple]:
    out = []
    for index, text in enumerate(texts):
        where = path + (str(index),)
        try:
            out.append((where, parse(text), str(text)))
        except StatementError as error:
            problems.append(statement_problem(where, text, error, what))
    return out


def _compile_all(parsed: list[tuple], build, what: str, problems: list[Problem]) -> list[Compiled]:
    out = []
    for where, tree, text in parsed:
        try:
            out.append(Compiled(text, build(tree)))
        except StatementError as error:
            problems.append(statement_problem(where, text, error, what))
    return out


def _any_of(checks: list[Compiled]) -> Compiled | None:
    if not checks:
        return None
    tests = [check.run for check in checks]
    text = " or ".join(f"({check.text})" for check in checks) if len(checks) > 1 else checks[0].text
    return Compiled(text, lambda item: any(test(item) for test in tests))
