"""A downstream's partial_success answer: counted and logged, never retried (the spec forbids it)."""

from __future__ import annotations

from relay.signals import Signal, rejected_count


def note_partial_success(exporter_id, signal: Signal, response, metrics, log) -> None:
    rejected, message = rejected_count(signal, response)
    if rejected or message:
        metrics.exporter_rejected[signal].labels(str(exporter_id)).inc(rejected)
        log.warning("partial success", fields={"signal": signal.value, "rejected": rejected, "message": message})
