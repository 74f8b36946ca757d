"""The built-in configuration, used when ``genops-relay run`` is given no ``--config``."""

DEFAULT_CONFIG = """\
# genops-relay built-in default configuration.
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317

processors:
  # GenOps attribution and LLM cost on every LLM span (team/project default to "unassigned").
  genops: {}

connectors:
  # Per-team cost counters and the rest of the metrics contract, from the priced spans.
  genops_metrics: {}

exporters:
  debug:
    verbosity: basic
  prometheus:
    endpoint: 0.0.0.0:8889
    namespace: genops_openrouter
    const_labels:
      service: openrouter

extensions:
  health_check:
    endpoint: 0.0.0.0:13133

service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [genops]
      exporters: [debug, genops_metrics]
    metrics:
      receivers: [otlp, genops_metrics]
      exporters: [debug, prometheus]
    logs:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    logs:
      level: info
    metrics:
      address: 0.0.0.0:8888
"""
