"""From LLM spans to the metrics contract: requests, cost, duration, tokens, errors, switches.

Per span the work is arithmetic on cells found in advance: the span's
non-numeric attributes (team, model, provider, status, ...) form a signature,
and a ``Plan`` made once per signature holds the cells of every series that
span adds to. Token counts, cost and duration are read per span.

Token types are disjoint, so summing ``tokens`` over ``token_type`` gives the
total: ``input`` is the uncached input, ``cache_read``/``cache_write`` the
cached part of it, ``output`` excludes ``reasoning``. ``http.status_code``
comes from ``http.response.status_code`` or ``http.status_code``; without
either, an ERROR span counts as 500 and any other as 200.

``requests`` and ``cost`` carry the same labels, ``http.status_code`` included, so that
the production monitoring guide's ``rate(cost_total) / rate(requests_total)`` matches
series one to one in Prometheus, as printed, without a ``sum by``.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter

from relay.connectors.genops_metrics.series import histograms, sums
from relay.genai import dialects, keys
from relay.genai.bounds import cap
from relay.genai.numbers import INVALID, MAX_COST_USD, MAX_TOKENS, usage_count
from relay.genai.sampling import adjusted_count
from relay.genai.scan import Reader
from relay.signatures import values as signature_values

try:
    from relay.genai._usage import accumulate
except ImportError:  # no compiler at install time: every span is added in Python
    accumulate = None

TEAM, PROJECT, MODEL_OUT = "genops.team", "genops.project", keys.OUT_MODEL
ACTUAL, PREDICTED, FALLBACK = keys.ACTUAL_PROVIDER, keys.PREDICTED_PROVIDER, keys.FALLBACK_USED
HTTP_STATUS = ("http.response.status_code", "http.status_code")
ERROR_TYPE = "error.type"
COST = keys.COST_TOTAL
STATUS_ERROR = 2  # Status.STATUS_CODE_ERROR
METRICS = ("requests", "cost", "request.duration", "tokens", "errors", "provider.switches")
_PLANS_LIMIT = 4096
_CACHEABLE = 8 * 1024  # bytes of a signature that may be a plan key


def _text(value) -> str | None:
    if value is None or value is ...:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


class Aggregator:
    def __init__(self, config):
        limit = config.aggregation_cardinality_limit
        self.label_limit = config.label_max_length
        self.sums = {name: sums(limit, 0.0 if name == "cost" else 0) for name in METRICS
                     if name != "request.duration"}
        self.durations = histograms(limit, config.histogram_buckets)
        self.bounds = self.durations.bounds
        self.extra = [(d.name, d.default) for d in config.dimensions]
        extra_keys = tuple(name for name, _ in self.extra)
        self.dynamic_keys = tuple(dict.fromkeys(dialects.INPUT_TOKENS + dialects.OUTPUT_TOKENS
                                                + dialects.CACHE_READ_TOKENS + dialects.CACHE_WRITE_TOKENS
                                                + dialects.REASONING_TOKENS + (COST, keys.BOOKED)))
        static = tuple(dict.fromkeys((TEAM, PROJECT, MODEL_OUT) + dialects.MODEL + (ACTUAL, PREDICTED, FALLBACK)
                                     + dialects.PROVIDER + dialects.TOTAL_TOKENS + dialects.MARKERS + HTTP_STATUS
                                     + (ERROR_TYPE,)
                                     + extra_keys + (keys.DUPLICATE,)))
        static = tuple(k for k in static if k not in self.dynamic_keys)
        self.reader = Reader(static, self.dynamic_keys)
        slot = self.reader.index
        self.slot = slot
        self.llm_bits = sum(1 << slot[k] for k in dialects.LLM_MARKERS if k in slot)
        n_static = self.reader.n_static
        self.cost_slot = slot[COST] - n_static
        self.booked_slot = slot[keys.BOOKED] - n_static
        self.plans: dict = {}
        self.overflowed: Counter = Counter()
        self.truncated = 0  # label values cut to label_max_length

    def _plan(self, mask: int, signature: bytes, error: bool):
        if not mask & self.llm_bits:
            return None
        slot = self.slot
        present = {key for key, i in slot.items() if mask >> i & 1}
        if not dialects.is_call(present):
            return None
        values = signature_values(signature)

        def get(key):
            text = _text(values.get(slot[key])) if key in slot else None
            return self.label(text) if text else text

        team, project = get(TEAM) or "", get(PROJECT) or ""
        model = get(MODEL_OUT) or next((m for m in (get(k) for k in dialects.MODEL) if m), "")
        actual = get(ACTUAL) or next((p for p in (get(k) for k in dialects.PROVIDER) if p), "")
        predicted = get(PREDICTED) or ""
        reported_status = next((s for s in (get(k) for k in HTTP_STATUS) if s), None)
        status = reported_status or ("500" if error else "200")
        extra = tuple((name, get(name) or default or "") for name, default in self.extra)
        cost_key = (("genops.team", team), ("genops.project", project), ("genops.model", model),
                    ("genops.openrouter.actual_provider", actual)) + extra
        cells = {}
        overflow = []

        def take(metric: str, key: tuple):
            table = self.durations if metric == "request.duration" else self.sums[metric]
            cell, overflowed = table.cell(key)
            if overflowed:
                overflow.append(metric)
            return cell

        call_key = cost_key + (("http.status_code", status),)  # requests and cost: one label set
        if values.get(slot[keys.DUPLICATE]) is True:
            return DuplicatePlan(take("cost", call_key), overflow, self.booked_slot)
        cells["requests"] = take("requests", call_key)
        cells["cost"] = take("cost", call_key)
        cells["request.duration"] = take("request.duration", (
            ("genops.team", team), ("genops.model", model), ("genops.openrouter.actual_provider", actual)) + extra)
        for token_type in ("input", "output", "cache_read", "cache_write", "reasoning"):
            cells[token_type] = take("tokens", cost_key + (("token_type", token_type),))
        failed = error or (status.isdigit() and int(status) >= 400)
        if failed:
            http_failed = reported_status is not None and status.isdigit() and int(status) >= 400
            error_type = get(ERROR_TYPE) or (f"http_{status}" if http_failed else "span_error")
            cells["errors"] = take("errors", (("genops.team", team), ("genops.model", model),
                                              ("error_type", error_type)) + extra)
        fallback = values.get(slot[FALLBACK]) is True
        if fallback or (predicted and actual and predicted != actual):
            cells["provider.switches"] = take("provider.switches", (
                ("genops.model", model), ("genops.openrouter.predicted_provider", predicted),
                ("genops.openrouter.actual_provider", actual)) + extra)
        n_static = self.reader.n_static
        order = dialects.token_keys(dialects.token_row(present))
        token_slots = [next((slot[k] - n_static for k in order[role] if k in present), None)
                       for role in dialects.ROLES]
        return SpanPlan(cells, tuple(overflow), self.bounds, self.cost_slot, token_slots, native=accumulate is not None)

    def label(self, text: str) -> str:
        """A label value, cut to the cap and counted when cut."""
        capped = cap(text, self.label_limit)
        if capped is not text:
            self.truncated += 1
        return capped

    def add_to(self, metric: str, key: tuple, amount) -> None:
        """Adds to one series of a sum: what the usage metrics feed in."""
        cell, overflowed = self.sums[metric].cell(key)
        cell[0] += amount
        if overflowed:
            self.overflowed[metric] += 1

    def add_durations(self, labels: tuple, bounds, total: float, count: int, buckets: list) -> None:
        """Adds a duration histogram's increase, its buckets moved into ours by their upper bounds."""
        team, _, model, provider, extra = labels
        cell, overflowed = self.durations.cell((("genops.team", team), ("genops.model", model),
                                                ("genops.openrouter.actual_provider", provider)) + extra)
        ours = cell[0]
        last = len(ours) - 1
        for index, observed in enumerate(buckets):
            if observed:
                upper = bounds[index] if index < len(bounds) else float("inf")
                ours[min(last, bisect_left(self.bounds, upper))] += observed
        cell[1] += total
        cell[2] += count
        if overflowed:
            self.overflowed["request.duration"] += 1

    def add(self, request) -> int:
        """Fold every LLM span of a traces request into the cumulative series; returns how many there were."""
        try:
            scanned = self.reader.read(request)
        except ValueError:  # the parser took what the scanner would not: the parsed message decides
            scanned = self.reader.read_python(request)
        if len(scanned) != sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans):
            scanned = self.reader.read_python(request)
        plans = self.plans
        get = plans.get
        # Everything a span adds comes from the scan: no span object is touched.
        calls = 0
        for mask, signature, values, status, duration, trace_state in scanned:
            key = (mask, signature, status == STATUS_ERROR)
            plan = get(key, False)
            if plan is False:
                plan = self._plan(mask, signature, key[2])
                if len(signature) <= _CACHEABLE:
                    if len(plans) >= _PLANS_LIMIT:
                        self.fold()
                        plans.clear()  # many distinct label values: keep memory bounded
                    plans[key] = plan
                elif plan is not None:
                    plan.acc = None  # not kept: it adds straight into the series
            if plan is not None:
                calls += 1
                if trace_state is None:
                    acc = plan.acc
                    if acc is None or not accumulate(values, plan.native_slots, acc, duration):
                        plan.apply(duration, values)
                else:  # a sampled span stands for 1/p calls (relay.genai.sampling)
                    plan.apply(duration, values, adjusted_count(trace_state))
                if plan.overflow:
                    for metric in plan.overflow:
                        self.overflowed[metric] += 1
        return calls

    def fold(self) -> None:
        """Move what the plans accumulated into the series: before a flush reads them."""
        for plan in self.plans.values():
            if plan is not None and plan.acc is not None:
                plan.fold()


def _token(value) -> int:
    count = usage_count(value)
    return 0 if count is None or count is INVALID else count


def _cost(value) -> float:
    """A cost fit for a counter: a finite, non-negative, sane float; anything else adds nothing."""
    return value if (type(value) is float or type(value) is int) and 0 <= value <= MAX_COST_USD else 0.0


class DuplicatePlan:
    """A second copy of a call already counted: it adds only what the genops processor booked for it."""

    __slots__ = ("cost", "overflow", "booked_slot", "acc")

    def __init__(self, cost_cell, overflow, booked_slot: int):
        self.cost, self.overflow, self.booked_slot = cost_cell, tuple(overflow), booked_slot
        self.acc = None

    def apply(self, duration_ns: int, values, weight: float = 1.0) -> None:
        self.cost[0] += _cost(values[self.booked_slot]) * weight


class SpanPlan:
    """The cells one kind of span adds to, and where its numbers are; ``apply`` adds them.

    With the native accumulator, spans add into ``acc`` (one C call a span, see
    relay/genai/_usage.c) and ``fold`` moves the totals into the shared cells before a flush:
    the cells are shared by many plans, the accumulator is the plan's own."""

    __slots__ = ("requests", "cost", "duration", "input", "cache_read", "cache_write", "output", "reasoning",
                 "errors", "switches", "overflow", "bounds", "cost_slot", "token_slots", "acc", "native_slots")

    def __init__(self, cells: dict, overflow: tuple, bounds: list, cost_slot: int, token_slots: list,
                 native: bool = False):
        self.requests, self.cost, self.duration = cells["requests"], cells["cost"], cells["request.duration"]
        self.input, self.output = cells["input"], cells["output"]
        self.cache_read, self.cache_write, self.reasoning = (cells["cache_read"], cells["cache_write"],
                                                             cells["reasoning"])
        self.errors, self.switches = cells.get("errors"), cells.get("provider.switches")
        self.overflow = overflow
        self.bounds = bounds
        self.cost_slot = cost_slot
        self.token_slots = tuple(token_slots)  # input, output, cache_read, cache_write, reasoning: slot or None
        self.native_slots = tuple(-1 if s is None else s for s in token_slots) + (cost_slot, MAX_TOKENS,
                                                                                  MAX_COST_USD)
        # bounds, then spans, cost, input, output, cache_read, cache_write, reasoning, duration sum, buckets
        self.acc = array("d", list(bounds) + [0.0] * (9 + len(bounds))) if native else None

    def fold(self) -> None:
        acc, n_bounds = self.acc, len(self.bounds)
        spans = int(acc[n_bounds])
        if not spans:
            return
        totals = acc[n_bounds:]
        self.requests[0] += spans
        self.cost[0] += totals[1]
        self.input[0] += int(totals[2])
        self.output[0] += int(totals[3])
        self.cache_read[0] += int(totals[4])
        self.cache_write[0] += int(totals[5])
        self.reasoning[0] += int(totals[6])
        histogram = self.duration
        histogram[1] += totals[7]
        histogram[2] += spans
        buckets = histogram[0]
        for index, count in enumerate(totals[8:]):
            buckets[index] += int(count)
        if self.errors is not None:
            self.errors[0] += spans
        if self.switches is not None:
            self.switches[0] += spans
        for index in range(n_bounds, len(acc)):
            acc[index] = 0.0

    def apply(self, duration_ns: int, values, weight: float = 1.0) -> None:
        """Adds one span; a sampled one (``weight`` = its adjusted count) adds for the calls it
        stands for, except to the duration histogram, which describes the calls seen."""
        cost = values[self.cost_slot]
        if not (type(cost) is float and 0.0 <= cost <= MAX_COST_USD):  # what the genops processor writes
            cost = 0.0 if cost is None else _cost(cost)
        seconds = duration_ns / 1e9
        histogram = self.duration
        histogram[0][bisect_left(self.bounds, seconds)] += 1
        histogram[1] += seconds
        histogram[2] += 1
        slot_in, slot_out, slot_read, slot_write, slot_reason = self.token_slots
        total_in = 0 if slot_in is None else values[slot_in]
        if not (type(total_in) is int and 0 <= total_in <= MAX_TOKENS):
            total_in = _token(total_in)
        total_out = 0 if slot_out is None else values[slot_out]
        if not (type(total_out) is int and 0 <= total_out <= MAX_TOKENS):
            total_out = _token(total_out)
        cache_read = 0 if slot_read is None else _token(values[slot_read])
        cache_write = 0 if slot_write is None else _token(values[slot_write])
        reasoning = 0 if slot_reason is None else _token(values[slot_reason])
        added = (1, cost, max(0, total_in - cache_read - cache_write), cache_read, cache_write,
                 max(0, total_out - reasoning), reasoning)
        if weight != 1.0:  # counts of sampled spans are estimates: no longer whole numbers
            added = tuple(value * weight for value in added)
        requests, cost, uncached, cache_read, cache_write, output, reasoning = added
        self.requests[0] += requests
        self.cost[0] += cost
        self.input[0] += uncached
        self.cache_read[0] += cache_read
        self.cache_write[0] += cache_write
        self.output[0] += output
        self.reasoning[0] += reasoning
        if self.errors is not None:
            self.errors[0] += requests
        if self.switches is not None:
            self.switches[0] += requests
