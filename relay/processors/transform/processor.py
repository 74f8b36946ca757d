"""Running a compiled plan over a request, with the collector's error modes.

``ignore`` logs and counts a failing statement and goes on with the next one;
``silent`` only counts; ``propagate`` raises ``PermanentError``, which drops
the request (the same data would fail the same way on every retry).
Failures are logged once per statement and request, with a count, rather
than once per item, so one bad statement cannot flood the log.
"""

from __future__ import annotations

from relay.errors import PermanentError
from relay.ottl.contexts import EvalError, walk
from relay.processors.transform.config import Compiled, Group, Plan
from relay.signals import Signal, signal_of
from relay.telemetry import component_logger


def error_counter(telemetry):
    return telemetry.counter("otelcol_processor_transform_errors",
                             "Number of times an OTTL statement failed on an item (error_mode ignore or silent)",
                             ["processor", "signal"])


class Transform:
    """The processor function: applies the plan's groups in config order, in place."""

    def __init__(self, id_, plan: Plan, telemetry):
        self.id = str(id_)
        self.plan = plan
        self.log = component_logger(id_)
        self.errors = error_counter(telemetry)

    def __call__(self, request):
        signal = signal_of(request)
        for group in self.plan.get(signal, ()):
            failures = self._apply(group, signal, request)
            if failures:
                self._report(group, signal, failures)
        return request

    def _apply(self, group: Group, signal: Signal, request) -> dict[str, list]:
        failures: dict[str, list] = {}  # statement text -> [count, first message]
        condition, statements = group.condition, group.statements
        for item in walk(group.context, signal, request):
            if condition is not None and not self._run(condition, item, group, failures):
                continue
            for statement in statements:
                self._run(statement, item, group, failures)
        return failures

    def _run(self, compiled: Compiled, item, group: Group, failures: dict[str, list]):
        try:
            return compiled.run(item)
        except Exception as error:  # noqa: BLE001 - see below
            # Anything else a statement raises on an item (a converter bug, a recursion limit) is a
            # failure on this data too: escaping, it would fail the request as retryable, and the
            # client would resend the same data for ever, past error_mode.
            message = str(error) if isinstance(error, EvalError) else f"{type(error).__name__}: {error}"
            if group.error_mode == "propagate":
                raise PermanentError(f'{self.id}: OTTL statement "{compiled.text}" failed: {message}') from None
            entry = failures.setdefault(compiled.text, [0, message])
            entry[0] += 1
            return None

    def _report(self, group: Group, signal: Signal, failures: dict[str, list]) -> None:
        for text, (count, first) in failures.items():
            self.errors.labels(self.id, signal.value).inc(count)
            if group.error_mode == "ignore":
                self.log.warning("OTTL statement failed",
                                 fields={"statement": text, "error": first, "items": count,
                                         "context": group.context, "signal": signal.value})
