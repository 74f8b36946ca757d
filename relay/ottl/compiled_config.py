"""What the configs of the processors that run OTTL share: compiling while validating, once.

Statements and conditions are parsed and compiled by ``validate()``, so that
``genops-relay validate`` reports every bad one and the running processor
never parses; the result is kept for ``create()``, which would otherwise
compile a second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relay.errors import ConfigError, Problem
from relay.ottl.parse import StatementError


@dataclass
class CompiledConfig:
    """A component ``Config`` whose ``build()`` compiles it: returns (the plan, problems)."""

    # Filled by validate(), so that create() does not compile a second time.
    plan: Any = field(default=None, init=False, repr=False, compare=False)

    def build(self) -> tuple[Any, list[Problem]]:
        raise NotImplementedError

    def validate(self) -> list[Problem]:
        plan, problems = self.build()
        self.plan = None if problems else plan
        return problems

    def compiled(self) -> Any:
        """The plan, compiling first if ``validate()`` has not; ConfigError if it cannot be."""
        if self.plan is None:
            problems = self.validate()
            if problems:
                raise ConfigError(problems)
        return self.plan


def statement_problem(path, text: str, error: StatementError, what: str = "statement") -> Problem:
    """A statement or condition that cannot be run, quoted as written."""
    return Problem(path, f'unsupported OTTL {what} "{text}": {error}')
