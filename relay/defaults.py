"""The built-in configuration, used when ``genops-relay run`` is given no ``--config``.

``${env:GENOPS_RELAY_DATA}`` is the relay's data directory, found by relay.datadir: the CLI
sets it for the expansion of every config.
"""

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
  # Books the spend of every span genops priced in the cost ledger below.
  genops_budget:
    ledger: genops_ledger

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
  # The cost ledger that `genops-relay report` and /api/v1/cost/report (port 8888) read:
  # ledger/ledger.sqlite in the data directory (--data-dir, else $GENOPS_RELAY_DATA, else
  # the platform's user data directory), created if missing. Spend survives restarts.
  genops_ledger:
    directory: ${env:GENOPS_RELAY_DATA}/ledger
    create_directory: true

service:
  extensions: [health_check, genops_ledger]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, genops, genops_budget]
      exporters: [debug, genops_metrics]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, genops]
      exporters: [debug, prometheus, genops_metrics]
    # The cost counters are labelled by the connector itself: they skip genops. They are
    # re-sent at every flush, for ever: the debug exporter would log them each time.
    metrics/genops:
      receivers: [genops_metrics]
      exporters: [prometheus]
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
