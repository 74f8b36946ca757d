"""``genops-relay price``: rates, parts, total and source; unknown models exit 1 with suggestions."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from relay import pricing_cli


def run(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="genops-relay price")
    pricing_cli.add_arguments(parser)
    code = pricing_cli.main(parser.parse_args(list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_rates_parts_total_and_source(capsys):
    # openai/gpt-4o on OpenRouter: 2.50 in, 1.25 cached, 10.00 out per million (OpenAI list price).
    code, out, _ = run(capsys, "openai/gpt-4o", "--input", "1000", "--output", "100", "--cache-read", "200",
                       "--reasoning", "40", "--at", "2026-11-20")
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["model"][1] == "openai/gpt-4o"
    assert lines["source"][1:3] == ["builtin:", "genai-prices"] and "openrouter:openai/gpt-4o" in out
    assert lines["price"][-1] == "2026-11-20"
    assert lines["input"][1:] == ["800", "2.5", "0.00200000"]
    assert lines["cache_read"][1:] == ["200", "1.25", "0.00025000"]
    assert lines["cache_write"][1:] == ["0", "=", "input", "0.00000000"]
    assert lines["output"][1:] == ["60", "10", "0.00060000"]
    assert lines["reasoning"][1:] == ["40", "=", "output", "0.00040000"]
    assert lines["request"][-1] == "0.00000000"
    assert lines["total"][1:] == [f"{(800 * 2.5 + 200 * 1.25 + 100 * 10) / 1e6:.8f}"]


def test_bare_name_with_provider(capsys):
    code, out, _ = run(capsys, "gpt-4o", "--provider", "openai", "--input", "10", "--output", "10",
                       "--at", "2026-11-20T08:00:00Z")
    assert code == 0
    assert "openai/gpt-4o   (asked: gpt-4o)" in out
    assert "price at  2026-11-20T08:00:00Z" in out


def test_models_file_is_consulted_first(capsys, tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"data": [{"id": "openai/gpt-4o", "canonical_slug": "openai/gpt-4o",
                                          "pricing": {"prompt": "0.000002", "completion": "0.000008",
                                                      "request": "0.01"}}]}))
    code, out, _ = run(capsys, "openai/gpt-4o", "--input", "1000", "--output", "1000", "--models-file", str(path))
    assert code == 0
    assert f"source    models_file: {path}" in out
    assert "0.01 per call" in out
    assert out.splitlines()[-1].split() == ["total", f"{(1000 * 2 + 1000 * 8) / 1e6 + 0.01:.8f}"]


def test_long_context_tier_is_shown(capsys):
    code, out, _ = run(capsys, "google/gemini-2.5-pro", "--input", "250000", "--output", "1000",
                       "--at", "2026-11-20")
    assert code == 0
    assert "above 200000 input tokens" in out and "(applied)" in out


def test_unknown_model_exits_1_with_suggestions(capsys):
    code, out, err = run(capsys, "openai/gpt4o", "--input", "1", "--output", "1")
    assert code == 1 and out == ""
    assert err.startswith("unknown model 'openai/gpt4o'; did you mean: ")
    assert "openai/gpt-4o" in err.split("did you mean: ")[1].split(", ")


def test_unknown_model_without_anything_close(capsys):
    code, _, err = run(capsys, "zzzzzzzz", "--input", "1", "--output", "1")
    assert code == 1
    assert "unknown model 'zzzzzzzz'; no similar model name is known" in err


def test_bad_models_file_exits_1(capsys, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{")
    code, _, err = run(capsys, "openai/gpt-4o", "--input", "1", "--output", "1", "--models-file", str(path))
    assert code == 1
    assert "openrouter_models_file" in err and str(path) in err


@pytest.mark.parametrize("argv", [
    ["openai/gpt-4o", "--input", "-1", "--output", "1"],
    ["openai/gpt-4o", "--input", "1", "--output", "1", "--at", "yesterday"],
    ["openai/gpt-4o", "--output", "1"],
])
def test_bad_arguments_are_usage_errors(capsys, argv):
    with pytest.raises(SystemExit) as raised:
        run(capsys, *argv)
    assert raised.value.code == 2


def test_runs_as_a_program():
    program = ("import argparse, sys\n"
               "from relay import pricing_cli\n"
               "p = argparse.ArgumentParser()\n"
               "pricing_cli.add_arguments(p)\n"
               "sys.exit(pricing_cli.main(p.parse_args(sys.argv[1:])))\n")
    argv = ["anthropic/claude-3-opus", "--input", "1000000", "--output", "1000000", "--at", "2026-11-20"]
    done = subprocess.run([sys.executable, "-c", program, *argv], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    # Anthropic list price: 15 in, 75 out per million.
    assert done.stdout.splitlines()[-1].split() == ["total", "90.00000000"]
