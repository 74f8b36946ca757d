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
        conditions = plan.conditions
        self.span, self.spanevent = conditions.get("span", ()), conditions.get("spanevent", ())
        self.metric, self.datapoint = conditions.get("metric", ()), conditions.get("datapoint", ())
        self.log_record = conditions.get("log", ())
        self.profile = conditions.get("profile", ())

    def __call__(self, request):
        signal = signal_of(request)
        if not self.plan.covers(signal):
            return request
        failures: dict[str, list] = {}  # condition text -> [count, first message]
        filtering = {Signal.TRACES: self._traces, Signal.METRICS: self._metrics, Signal.LOGS: self._logs,
                     Signal.PROFILES: self._profiles}[signal]
        dropped = filtering(request, failures)
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
            except EvalError as error:
                if self.plan.error_mode == "propagate":
                    raise PermanentError(f'{self.id}: OTTL condition "{condition.text}" failed: {error}') from None
                entry = failures.setdefault(condition.text, [0, str(error)])
                entry[0] += 1
        return False

    def _report(self, signal: Signal, failures: dict[str, list]) -> None:
        for text, (count, first) in failures.items():
            self.errors.labels(self.id, signal.value).inc(count)
            if self.plan.error_mode == "ignore":
                self.log.warning("OTTL condition failed; the item is kept",
                                 fields={"condition": text, "error": first, "items": count, "signal": signal.value})

    # --- the signals ------------------------------------------------------------------------

    def _traces(self, request, failures) -> int:
        chosen = self.selections.get(Signal.TRACES)
        item, dropped = Item(), 0
        for rs in request.resource_spans:
            item.resource = rs.resource
            for ss in rs.scope_spans:
                item.scope = ss.scope
                keep = chosen.chooser(rs.resource, ss.scope) if chosen is not None else None
                doomed = []
                for index, span in enumerate(ss.spans):
                    if chosen is not None:
                        if keep is None or not keep(span):
                            doomed.append(index)
                        continue
                    item.span = item.item = span
                    if self.span and self._any(self.span, item, failures):
                        doomed.append(index)
                    elif self.spanevent:
                        events = []
                        for position, event in enumerate(span.events):
                            item.item = event
                            if self._any(self.spanevent, item, failures):
                                events.append(position)
                        _delete(span.events, events)
                dropped += _delete(ss.spans, doomed)
            _delete(rs.scope_spans, [i for i, ss in enumerate(rs.scope_spans) if not len(ss.spans)])
        _delete(request.resource_spans, [i for i, rs in enumerate(request.resource_spans) if not len(rs.scope_spans)])
        return dropped

    def _metrics(self, request, failures) -> int:
        chosen = self.selections.get(Signal.METRICS)
        item, dropped = Item(), 0
        for rm in request.resource_metrics:
            item.resource = rm.resource
            for sm in rm.scope_metrics:
                item.scope = sm.scope
                keep = chosen.chooser(rm.resource, sm.scope) if chosen is not None else None
                doomed = []
                for index, metric in enumerate(sm.metrics):
                    item.metric = item.item = metric
                    if chosen is not None:
                        if keep is None or not keep(metric):
                            doomed.append(index)
                            dropped += len(data_points(metric))
                        continue
                    if self.metric and self._any(self.metric, item, failures):
                        doomed.append(index)
                        dropped += len(data_points(metric))
                    elif self.datapoint:
                        points = data_points(metric)
                        gone = []
                        for position, point in enumerate(points):
                            item.item = point
                            if self._any(self.datapoint, item, failures):
                                gone.append(position)
                        dropped += _delete(points, gone)
                        if not len(points):
                            doomed.append(index)
                _delete(sm.metrics, doomed)
            _delete(rm.scope_metrics, [i for i, sm in enumerate(rm.scope_metrics) if not len(sm.metrics)])
        _delete(request.resource_metrics,
                [i for i, rm in enumerate(request.resource_metrics) if not len(rm.scope_metrics)])
        return dropped

    def _logs(self, request, failures) -> int:
        chosen = self.selections.get(Signal.LOGS)
        item, dropped = Item(), 0
        for rl in request.resource_logs:
            item.resource = rl.resource
            for sl in rl.scope_logs:
                item.scope = sl.scope
                keep = chosen.chooser(rl.resource, sl.scope) if chosen is not None else None
                doomed = []
                for index, record in enumerate(sl.log_records):
                    if chosen is not None:
                        if keep is None or not keep(record):
                            doomed.append(index)
                        continue
                    item.item = record
                    if self._any(self.log_record, item, failures):
                        doomed.append(index)
                dropped += _delete(sl.log_records, doomed)
            _delete(rl.scope_logs, [i for i, sl in enumerate(rl.scope_logs) if not len(sl.log_records)])
        _delete(request.resource_logs, [i for i, rl in enumerate(request.resource_logs) if not len(rl.scope_logs)])
        return dropped

    def _profiles(self, request, failures) -> int:
        item, dropped = Item(), 0
        item.dictionary = request.dictionary
        for rp in request.resource_profiles:
            item.resource = rp.resource
            for sp in rp.scope_profiles:
                item.scope = sp.scope
                doomed = []
                for index, profile in enumerate(sp.profiles):
                    item.item = profile
                    if self._any(self.profile, item, failures):
                        doomed.append(index)
                dropped += _delete(sp.profiles, doomed)
            _delete(rp.scope_profiles, [i for i, sp in enumerate(rp.scope_profiles) if not len(sp.profiles)])
        _delete(request.resource_profiles,
                [i for i, rp in enumerate(request.resource_profiles) if not len(rp.scope_profiles)])
        return dropped


def _delete(repeated, indexes: list[int]) -> int:
    for index in reversed(indexes):
        del repeated[index]
    return len(indexes)
