"""``genops-relay validate``: the built-in config, a valid file, an invalid file (exit 1, every problem)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from relay.cli import main
from relay.defaults import DEFAULT_CONFIG

DEFAULT_GRAPH = """\
pipeline traces:
  receivers:  otlp
  processors: memory_limiter, genops, genops_budget
  exporters:  debug, genops_metrics
pipeline metrics:
  receivers:  otlp
  processors: memory_limiter, genops
  exporters:  debug, prometheus, genops_metrics
pipeline metrics/genops:
  receivers:  genops_metrics
  processors: (none)
  exporters:  prometheus
pipeline logs:
  receivers:  otlp
  processors: memory_limiter
  exporters:  debug
extensions: health_check, genops_ledger
telemetry: metrics on 0.0.0.0:8888, logs at info
"""

VALID = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:14317
  otlp/internal:
    protocols:
      grpc:
        endpoint: 127.0.0.1:24317
exporters:
  otlp/honeycomb:
    endpoint: https://api.honeycomb.io:443
  otlp_grpc/tempo:
    endpoint: tempo:4317
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp, otlp/internal]
      exporters: [otlp/honeycomb, otlp_grpc/tempo]
    logs/cost:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    logs:
      level: warn
    metrics:
      address: 127.0.0.1:18888
"""

VALID_GRAPH = """\
pipeline traces:
  receivers:  otlp, otlp/internal
  processors: (none)
  exporters:  otlp/honeycomb, otlp_grpc/tempo
pipeline logs/cost:
  receivers:  otlp
  processors: (none)
  exporters:  debug
telemetry: metrics on 127.0.0.1:18888, logs at warn
"""

# Four independent mistakes.
INVALID = """\
receivers:
  otlp:
    protocols:
      grpc:
        max_recv_msg_size_mib: "big"
exporters:
  otlp:
    endpoitn: collector:4317
  datadog:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp, jaeger]
"""

INVALID_PROBLEMS = [
    "receivers::otlp::protocols::grpc::max_recv_msg_size_mib: expected an integer, got string",
    "exporters::otlp::endpoitn: unknown key (valid keys: auth, compression, endpoint, headers, max_request_size, retry_on_failure, sending_queue, timeout, tls)",
    "exporters::otlp::endpoint: required key is missing",
    'exporters::datadog: unsupported exporter type "datadog" (available: debug, jaeger, logging, otlp, otlp_grpc, otlp_http, otlphttp, prometheus, prometheusremotewrite); '
    "send to Datadog through the Datadog Agent's OTLP intake with an otlp exporter, as the README section "
    '"Datadog" shows',
    'service::pipelines::traces::exporters::1: references exporter "jaeger", which is not configured '
    "under exporters",
]

INVALID_STDERR = "invalid configuration in PATH (5 problems):\n" + "".join(f"  {p}\n" for p in INVALID_PROBLEMS)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_validate_without_config_prints_builtin_config_and_graph(capsys):
    assert main(["validate"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == ("# no --config given: this is the built-in default configuration\n"
                   + DEFAULT_CONFIG + "\n" + DEFAULT_GRAPH)


def test_validate_valid_file_prints_the_graph(tmp_path, capsys):
    assert main(["validate", "--config", write(tmp_path, "relay.yaml", VALID)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == VALID_GRAPH


def test_validate_invalid_file_exits_1_with_every_problem(tmp_path, capsys):
    path = write(tmp_path, "bad.yaml", INVALID)
    assert main(["validate", "--config", path]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == INVALID_STDERR.replace("PATH", path, 1)


def test_validate_single_problem_is_singular(tmp_path, capsys):
    path = write(tmp_path, "bad.yaml", VALID.replace("level: warn", "level: loud"))
    assert main(["validate", "--config", path]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f'invalid configuration in {path} (1 problem):\n'
                   '  service::telemetry::logs::level: "loud" is not one of: debug, info, warn, error, dpanic, panic, fatal\n')


def test_validate_missing_file(tmp_path, capsys):
    path = tmp_path / "absent.yaml"
    assert main(["validate", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"invalid configuration in {path} (1 problem):\n"
                   f"  cannot read config file {path}: No such file or directory\n")


def console_script() -> str:
    """The installed ``genops-relay`` entry point, next to this interpreter if it is there."""
    beside = Path(sys.executable).parent / "genops-relay"
    found = str(beside) if beside.exists() else shutil.which("genops-relay")
    assert found, "the genops-relay console script is not installed (pip install -e .)"
    return found


def test_console_script_validate_invalid_file(tmp_path):
    path = write(tmp_path, "bad.yaml", INVALID)
    # INVALID uses no ${...} references, so the process environment cannot change the result.
    result = subprocess.run([console_script(), "validate", "--config", path], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == INVALID_STDERR.replace("PATH", path, 1)
