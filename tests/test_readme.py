"""The configuration examples in the README are configs the relay accepts."""

from __future__ import annotations

import re

import yaml

from relay.config.decode import decode
from relay.config.load import load
from relay.defaults import DEFAULT_CONFIG
from relay.pipeline.registry import default_registry
from relay.processors import genops
from tests.support import ROOT

README = (ROOT / "README.md").read_text()
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", README, re.S)


def test_the_documented_default_config_is_the_built_in_one():
    documented = next(block for block in YAML_BLOCKS if block.startswith("receivers:"))
    assert yaml.safe_load(documented) == yaml.safe_load(DEFAULT_CONFIG)
    # The CLI sets GENOPS_RELAY_DATA to the data directory for every config it loads.
    load(documented, default_registry(), env={"GENOPS_RELAY_DATA": "/var/lib/genops-relay"})


def test_the_genops_example_is_valid(tmp_path):
    block = next(block for block in YAML_BLOCKS if block.startswith("processors:\n  genops:"))
    settings = yaml.safe_load(block)["processors"]["genops"]
    models_file = tmp_path / "openrouter-models.json"
    models_file.write_text('{"data": []}')
    settings["pricing"]["openrouter_models_file"] = str(models_file)
    config, problems = decode(genops.Config, settings, ("processors", "genops"))
    assert problems == []
    # The negotiated discount applies in 2025 and the list price after it.
    (discount, claude) = config.pricing.overrides
    assert (discount.model, discount.input, discount.output) == ("openai/gpt-4o", 2.0, 8.0)
    assert claude.model.startswith("regex:")


def test_the_sample_error_is_what_validate_prints(tmp_path):
    """The README's sample of a rejected config is the relay's own output for such a config."""
    import subprocess
    import sys

    sample = re.search(r"```\n(invalid configuration in relay\.yaml.*?)```", README, re.S).group(1)
    (tmp_path / "relay.yaml").write_text(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n"
        "exporters:\n  datadog:\n    api:\n      key: x\n  otlp/honeycomb:\n    headers:\n      x-team: abc\n"
        "service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [datadog, otlp/honeycomb]\n")
    done = subprocess.run([sys.executable, "-m", "relay", "validate", "--config", "relay.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr + done.stdout == sample
