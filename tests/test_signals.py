"""The per-signal table: each signal's layout names the fields of its own messages."""

from __future__ import annotations

import pytest

from relay.signals import Signal, signal_of


@pytest.mark.parametrize("signal", list(Signal))
def test_the_layout_walks_the_signals_messages(signal):
    resources, scopes, items = signal.layout
    request = signal.request_type()
    resource_type = request.DESCRIPTOR.fields_by_name[resources].message_type
    scope_type = resource_type.fields_by_name[scopes].message_type
    assert items in scope_type.fields_by_name
    assert "resource" in resource_type.fields_by_name and "scope" in scope_type.fields_by_name
    entry = signal.resources(request).add()
    getattr(getattr(entry, scopes).add(), items).add()
    assert len(signal.resources(request)) == 1
    assert signal_of(request) is signal
    # A metric without data has no points, a profile without samples no samples (what the collector counts).
    assert signal.count(request) == (0 if signal in (Signal.METRICS, Signal.PROFILES) else 1)
