"""Trace and span ids of the lengths the OTLP specification requires, checked on receipt.

A span whose trace_id is not 16 bytes or whose span_id is not 8 (or a parent_span_id or link
of the wrong length) is refused with the request it came in: a downstream collector refuses
the whole request it finds it in, and after ``batch`` that would be other clients' spans too.
Log records may leave their ids empty; where set they have the same lengths; so may profiles
(a profile_id of 16 bytes) and the links of a profiles dictionary. The protobuf
parser accepts any length, so this is the only place that looks. Traces are checked on the
wire bytes by the native scanner where it was built, in Python otherwise.
"""

from __future__ import annotations

from relay.signals import Signal

try:
    from relay.genai import _scan
except ImportError:  # no compiler at install time
    _scan = None


def problem(signal: Signal, request, data: bytes | None = None) -> str | None:
    """Why the request's ids are refused, naming the first bad item; None when they are fine."""
    if signal is Signal.TRACES:
        if data is not None and _scan is not None:
            found = _scan.span_ids_problem(data)
            return None if found is None else _where(*found)
        return _spans(request)
    if signal is Signal.LOGS:
        return _log_records(request)
    if signal is Signal.PROFILES:
        return _profiles(request)
    return None


def _where(resource: int, scope: int, item: int, what: str, kind: str = "spans") -> str:
    parent, scopes, items = (Signal.TRACES if kind == "spans" else Signal.LOGS).layout
    return f"{parent}[{resource}].{scopes}[{scope}].{items}[{item}]: {what}"


def _spans(request) -> str | None:
    for r, rs in enumerate(request.resource_spans):
        for s, ss in enumerate(rs.scope_spans):
            for i, span in enumerate(ss.spans):
                what = _span(span)
                if what is not None:
                    return _where(r, s, i, what)
    return None


def _span(span) -> str | None:
    if len(span.trace_id) != 16:
        return "trace_id must be 16 bytes"
    if len(span.span_id) != 8:
        return "span_id must be 8 bytes"
    if len(span.parent_span_id) not in (0, 8):
        return "parent_span_id must be empty or 8 bytes"
    for link in span.links:
        if len(link.trace_id) != 16:
            return "a link's trace_id must be 16 bytes"
        if len(link.span_id) != 8:
            return "a link's span_id must be 8 bytes"
    return None


def _log_records(request) -> str | None:
    for r, rl in enumerate(request.resource_logs):
        for s, sl in enumerate(rl.scope_logs):
            for i, record in enumerate(sl.log_records):
                if len(record.trace_id) not in (0, 16):
                    return _where(r, s, i, "trace_id must be empty or 16 bytes", "log_records")
                if len(record.span_id) not in (0, 8):
                    return _where(r, s, i, "span_id must be empty or 8 bytes", "log_records")
    return None


def _profiles(request) -> str | None:
    for r, rp in enumerate(request.resource_profiles):
        for s, sp in enumerate(rp.scope_profiles):
            for i, profile in enumerate(sp.profiles):
                if len(profile.profile_id) not in (0, 16):
                    return (f"resource_profiles[{r}].scope_profiles[{s}].profiles[{i}]: "
                            "profile_id must be empty or 16 bytes")
    for i, link in enumerate(request.dictionary.link_table):
        if len(link.trace_id) not in (0, 16):
            return f"dictionary.link_table[{i}]: trace_id must be empty or 16 bytes"
        if len(link.span_id) not in (0, 8):
            return f"dictionary.link_table[{i}]: span_id must be empty or 8 bytes"
    return None
