"""The label set of each series: attributes, scope, job/instance and const labels.

A series is identified by its exposed name and its final label set, so two data
points that would be written as the same line are the same series: the exposition
can never hold a duplicate line, whatever the attribute keys sanitize to.
"""

from __future__ import annotations

from relay.genai.bounds import cap
from relay.prometheus.naming import label_name, value_string

SERVICE_NAME = "service.name"
SERVICE_NAMESPACE = "service.namespace"
SERVICE_INSTANCE_ID = "service.instance.id"
_JOB_KEYS = (SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE_ID)


class Resource:
    """What one OTLP resource contributes: job/instance, and its target_info line."""

    __slots__ = ("job", "instance", "attributes", "target_key", "target_labels")

    def __init__(self, attributes: dict[str, str]):
        self.attributes = attributes
        name = attributes.get(SERVICE_NAME)
        self.job = None
        if name is not None:
            namespace = attributes.get(SERVICE_NAMESPACE)
            self.job = f"{namespace}/{name}" if namespace is not None else name
        self.instance = attributes.get(SERVICE_INSTANCE_ID)
        # Deduplicated on job and instance, and only emitted when both exist: without them
        # Prometheus could not join target_info to the series it describes.
        self.target_key = (self.job, self.instance) if self.job is not None and self.instance is not None else None
        self.target_labels: tuple | None = None

    def target(self) -> tuple:
        """target_info's labels: the resource minus what became job and instance."""
        if self.target_labels is None:
            labels = sanitized({k: v for k, v in self.attributes.items() if k not in _JOB_KEYS})
            labels["job"] = self.job
            labels["instance"] = self.instance
            self.target_labels = tuple(sorted(labels.items()))
        return self.target_labels


def sanitized(raw: dict[str, str]) -> dict[str, str]:
    """Label names for attribute keys; keys that collide join their values with ";"
    in key order, as the collector does for target_info (it fails the metric elsewhere)."""
    out: dict[str, str] = {}
    for key, value in raw.items():
        name = label_name(key)
        if not name:
            continue
        if name in out:
            return _merged(raw)
        out[name] = value
    return out


def _merged(raw: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in sorted(raw):
        name = label_name(key)
        if name:
            out[name] = f"{out[name]};{raw[key]}" if name in out else raw[key]
    return out


class LabelMaker:
    def __init__(self, const_labels: dict[str, str], resource_to_telemetry: bool):
        self.const_labels = dict(const_labels)
        self.resource_to_telemetry = resource_to_telemetry
        self.truncated = 0  # values cut to the cap, since the owner last took the count

    def attributes_of(self, kvs) -> dict[str, str]:
        # Label values are held per series and written on every scrape: a client's megabyte
        # attribute must not become a megabyte label (relay.genai.bounds marks the cut).
        out = {}
        for kv in kvs:
            value = value_string(kv.value)
            capped = out[kv.key] = cap(value)
            if capped is not value:
                self.truncated += 1
        return out

    def resource(self, resource) -> Resource:
        return Resource(self.attributes_of(resource.attributes))

    def fixed(self, resource: Resource, scope_metrics) -> dict[str, str]:
        """The labels every point of one scope shares. They are the exporter's own, so they
        win over a data point attribute of the same name (the collector fails the metric)."""
        scope = scope_metrics.scope
        labels = {"otel_scope_name": scope.name, "otel_scope_version": scope.version,
                  "otel_scope_schema_url": scope_metrics.schema_url}
        for key, value in self.attributes_of(scope.attributes).items():
            name = label_name("otel_scope_" + key)
            if name and name not in labels:
                labels[name] = value
        if resource.job is not None:
            labels["job"] = resource.job
        if resource.instance is not None:
            labels["instance"] = resource.instance
        labels.update(self.const_labels)
        return labels

    def key(self, kvs, resource: Resource, fixed: dict[str, str]) -> tuple:
        raw = self.attributes_of(kvs)
        if self.resource_to_telemetry:
            # Resource attributes overwrite point attributes, as the collector's
            # resourcetotelemetry wrapper copies them over.
            raw.update(resource.attributes)
        labels = sanitized(raw)
        labels.update(fixed)
        return tuple(sorted(labels.items()))
