"""The built-in configuration, used when ``genops-relay run`` is given no ``--config``."""

DEFAULT_CONFIG = """\
# genops-relay built-in default configuration.
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318

processors:
  # First in every pipeline: above 80% of the memory available (the container's limit,
  # else the machine's) minus a 20% spike allowance, clients are refused with UNAVAILABLE
  # and retry, instead of the relay being killed for running out of memory.
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 20
  # GenOps attribution and LLM cost on every LLM span, and team/project on every metric
  # data point (both default to "unassigned").
  genops: {}

connectors:
  # Per-team cost counters and the rest of the metrics contract, from the priced spans, or
  # from the GenAI usage metrics of a service instance that sends them.
  genops_metrics:
    cost_from: auto

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
      processors: [memory_limiter, genops]
      exporters: [debug, genops_metrics]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, genops]
      exporters: [debug, prometheus, genops_metrics]
    # The cost counters are labelled by the connector itself: they skip genops.
    metrics/genops:
      receivers: [genops_metrics]
      exporters: [debug, prometheus]
    logs:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [debug]
  telemetry:
    logs:
      level: info
    metrics:
      address: 0.0.0.0:8888
"""
