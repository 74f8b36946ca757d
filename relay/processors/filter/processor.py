"""Dropping what the plan matches, level by level, with the collector's error modes.

A span that is dropped takes its events with it (its event conditions are
not run); a metric that is dropped takes its data points, and a metric whose
data points are all dropped goes too. Scopes and resources left empty are
removed. When nothing is left the request is not passed on at all, and the
client is still told it was accepted: the collector's
``processorhelper.ErrSkipProcessingData``.

Every dropped span, data point, log record and profile is counted, by processor (label
``filter``, as in the collector), in
``otelcol_processor_filter_{spans,datapoints,logs,profiles}_filtered_total``; span
events are not counted, as the collector does not count them either. A dropped profile
leaves its entries in the request's dictionary, which other profiles may share.

``ignore`` logs and counts a failing condition and takes it as false (the
item is kept); ``silent`` only counts; ``propagate`` raises
``PermanentError``, which drops the request (the same data would fail the
same way on every retry). Failures are logged once per condition and request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay.attributes.filterspec import selection
from relay.errors import PermanentError
from relay.ottl.contexts import EvalError, Item, data_points
from relay.processors.filter.config import Condition, Plan
from relay.signals import Signal, signal_of
from relay.telemetry import component_logger

_DROPPED = {
    Signal.TRACES: ("otelcol_processor_filter_spans_filtered", "Number of spans dropped by the filter processor"),
    Signal.METRICS: ("otelcol_processor_filter_datapoints_filtered",
                     "Number of metric data points dropped by the filter processor"),
    Signal.LOGS: ("otelcol_processor_filter_logs_filtered", "Number of logs dropped by the filter processor"),
    Signal.PROFILES: ("otelcol_processor_filter_profiles_filtered",
                      "Number of profiles dropped by the filter processor"),
}


def dropped_counters(telemetry) -> dict[Signal, object]:
    # Labelled "filter" with the processor id, as the collector's own counters are.
    return {signal: telemetry.counter(name, text, ["filter"]) for signal, (name, text) in _DROPPED.items()}


def error_counter(telemetry):
    return telemetry.counter("otelcol_processor_filter_errors",
                             "Number of times an OTTL condition failed on an item (error_mode ignore or silent)",
                             ["filter", "signal"])


class Filter:
    """The processor function: drops matching items in place; None when nothing is left."""

    def __init__(self, id_, plan: Plan, telemetry):
        self.id = str(id_)
        self.plan = plan
        self.log = component_logger(id_)
        self.dropped = {signal: counter.labels(self.id) for signal, counter in dropped_counters(telemetry).items()}
        self.errors = error_counter(telemetry)
        self.selections = {signal: selection(legacy.include, legacy.exclude, signal)
                           for signal, legacy in plan.legacy.items()}

    def __call__(self, request):
        signal = signal_of(request)
        if not self.plan.covers(signal):
            return request
        failures: dict[str, list] = {}  # condition text -> [count, first message]
        dropped = self._filter(signal, request, failures)
        if dropped:
            self.dropped[signal].inc(dropped)
            # Dropping is what the processor is configured for: counted always, logged at debug only.
            self.log.debug("items dropped by filter conditions", fields={"signal": signal.value, "items": dropped})
        if failures:
            self._report(signal, failures)
        resources = getattr(request, signal.layout[0])
        return request if len(resources) else None

    # --- matching ---------------------------------------------------------------------------------

    def _any(self, conditions: tuple[Condition, ...], item: Item, failures: dict[str, list]) -> bool:
        for condition in conditions:
            try:
                if condition.test(item):
                    return True
            except Exception as error:  # noqa: BLE001 - see below
                # Anything else a condition raises on an item (a converter bug, a recursion limit) is
                # a failure on this data too: escaping, it would fail the request as retryable, and the
                # client would resend the same data for ever, past error_mode.
                message = str(error) if isinstance(error, EvalError) else f"{type(error).__name__}: {error}"
                if self.plan.error_mode == "propagate":
                    raise PermanentError(f'{self.id}: OTTL condition "{condition.text}" failed: {message}') from None
                entry = failures.setdefault(condition.text, [0, message])
                entry[0] += 1
        return False

    def _report(self, signal: Signal, failures: dict[str, list]) -> None:
        for text, (count, first) in failures.items():
            self.errors.labels(self.id, signal.value).inc(count)
            if self.plan.error_mode == "ignore":
                self.log.warning("OTTL condition failed; the item is kept",
                                 fields={"condition": text, "error": first, "items": count, "signal": signal.value})

    # --- the walk ---------------------------------------------------------------------------

    def _filter(self, signal: Signal, request, failures) -> int:
        """Drops what the plan matches in ``request``; how many of the signal's counted items went."""
        resources_field, scopes_field, items_field = signal.layout
        level = _LEVELS[signal]
        chosen = self.selections.get(signal)
        own, inner = self.plan.conditions.get(level.own, ()), self.plan.conditions.get(level.inner, ())
        item, dropped = Item(), 0
        if signal is Signal.PROFILES:
            item.dictionary = request.dictionary
        resources = getattr(request, resources_field)
        for resource_group in resources:
            item.resource = resource_group.resource
            scopes = getattr(resource_group, scopes_field)
            for scope_group in scopes:
                item.scope = scope_group.scope
                keep = chosen.chooser(resource_group.resource, scope_group.scope) if chosen is not None else None
                elements, doomed = getattr(scope_group, items_field), []
                for index, element in enumerate(elements):
                    if chosen is not None:
                        if keep is None or not keep(element):
                            doomed.append(index)
                            dropped += level.weight(element)
                        continue
                    item.item = element
                    if level.slot:
                        setattr(item, level.slot, element)
                    if own and self._any(own, item, failures):
                        doomed.append(index)
                        dropped += level.weight(element)
                    elif inner:
                        children = level.children(element)
                        gone = []
                        for position, child in enumerate(children):
                            item.item = child
                            if self._any(inner, item, failures):
                                gone.append(position)
                        removed = _delete(children, gone)
                        if level.children_are_items:
                            dropped += removed
                            if not len(children):
                                doomed.append(index)  # nothing left to carry: it goes too, uncounted
                _delete(elements, doomed)
            _delete(scopes, [i for i, group in enumerate(scopes) if not len(getattr(group, items_field))])
        _delete(resources, [i for i, group in enumerate(resources) if not len(getattr(group, scopes_field))])
        return dropped


@dataclass(frozen=True)
class _Level:
    """How one signal's items are filtered: their context, and what each holds below it."""

    own: str  # the OTTL context of the signal's items
    slot: str | None = None  # the Item slot the item also fills, for the contexts below it
    inner: str | None = None  # the context of what each item holds (span events, data points)
    children: Callable[[Any], Any] | None = None
    # Data points, not metrics, are what the collector counts, and a metric whose points are all
    # dropped goes with them; a span left without events stays, and events are not counted.
    children_are_items: bool = False

    def weight(self, element) -> int:
        """How many counted items dropping ``element`` drops."""
        return len(self.children(element)) if self.children_are_items else 1


_LEVELS = {
    Signal.TRACES: _Level("span", "span", "spanevent", lambda span: span.events),
    Signal.METRICS: _Level("metric", "metric", "datapoint", data_points, children_are_items=True),
    Signal.LOGS: _Level("log"),
    Signal.PROFILES: _Level("profile"),
}


def _delete(repeated, indexes: list[int]) -> int:
    for index in reversed(indexes):
        del repeated[index]
    return len(indexes)
