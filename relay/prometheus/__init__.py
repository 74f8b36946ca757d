"""The Prometheus data model, from OTLP: metric and label names, series, the store that both the
``prometheus`` and the ``prometheusremotewrite`` exporters translate into."""
