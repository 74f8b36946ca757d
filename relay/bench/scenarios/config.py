"""The relay config the reliability scenarios run: OTLP/gRPC in, one OTLP/gRPC exporter out."""

from __future__ import annotations

from pathlib import Path


def scenario_config(*, receiver: int, sink: str, health: int, metrics: int, queue_dir: Path | None = None,
                    queue: str = "", memory_limiter: str = "") -> str:
    storage = "        storage: file_storage\n" if queue_dir else ""
    extensions = f"  file_storage:\n    directory: {queue_dir}\n" if queue_dir else ""
    enabled = "[health_check, file_storage]" if queue_dir else "[health_check]"
    processors = ("processors:\n  memory_limiter:\n" + memory_limiter) if memory_limiter else ""
    return f"""\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{receiver}
{processors}exporters:
  otlp:
    endpoint: {sink}
    compression: none
    tls:
      insecure: true
    timeout: 2s
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 1s
      max_elapsed_time: 0s
    sending_queue:
{storage}{queue}extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
{extensions}service:
  extensions: {enabled}
  pipelines:
    traces:
      receivers: [otlp]
      processors: {"[memory_limiter]" if memory_limiter else "[]"}
      exporters: [otlp]
  telemetry:
    logs:
      level: info
    metrics:
      address: 127.0.0.1:{metrics}
"""


def self_metric(port: int, name: str) -> float:
    """The sum of a self-metric's samples on the relay's telemetry endpoint (0 if absent)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total
