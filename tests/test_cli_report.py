"""``genops-relay report``: where it finds the ledger (the same data directory ``run`` uses), its
default range, and what it says where there is no ledger."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from relay.cli import main
from relay.datadir import config_env, data_dir
from relay.defaults import DEFAULT_CONFIG
from relay.ledger.facts import SpanFacts
from relay.ledger.store import LedgerStore, Pending


@pytest.fixture(autouse=True)
def no_user_data_dir(tmp_path, monkeypatch):
    """The platform's user data directory (XDG on Linux) inside the test, and no $GENOPS_RELAY_DATA."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("GENOPS_RELAY_DATA", raising=False)


def test_the_data_directory_is_the_flag_else_the_variable_else_the_platforms(tmp_path):
    env = {"GENOPS_RELAY_DATA": str(tmp_path / "env")}
    assert data_dir(str(tmp_path / "flag"), env) == tmp_path / "flag"
    assert data_dir(None, env) == tmp_path / "env"
    assert data_dir("", {"GENOPS_RELAY_DATA": ""}) == tmp_path / "xdg" / "genops-relay"
    assert data_dir() == tmp_path / "xdg" / "genops-relay"
    assert not (tmp_path / "xdg").exists()   # finding it creates nothing
    assert config_env(tmp_path / "d", {"HOME": "/h"}) == {"HOME": "/h", "GENOPS_RELAY_DATA": str(tmp_path / "d")}


def write_ledger(directory: Path, costs: list[float], when: datetime.datetime, tz: str = "UTC",
                 customer: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    store = LedgerStore(directory / "ledger.sqlite", tz=tz)
    store.open()
    pending = Pending(tz=tz)
    for cost in costs:
        pending.add(SpanFacts(int(when.timestamp() * 10**9), "search", "p", "openai/gpt-4o", "OpenAI", customer,
                              cost, {"input": 10, "output": 5}, False))
    store.write(pending.take())
    store.close()


def report(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_with_no_arguments_it_reads_this_months_ledger_in_the_data_directory(tmp_path, monkeypatch, capsys):
    now = datetime.datetime.now(datetime.timezone.utc)
    monkeypatch.setenv("GENOPS_RELAY_DATA", str(tmp_path / "data"))
    write_ledger(tmp_path / "data" / "ledger", [0.25, 0.5], now)
    code, out, err = report(capsys, "--format", "json")
    assert (code, err) == (0, "")
    found = json.loads(out)
    assert (found["summary"]["total_cost_usd"], found["summary"]["total_requests"]) == (0.75, 2)
    first = datetime.datetime.fromisoformat(found["period"]["start"])
    assert (first.day, first.hour, first.utcoffset()) == (1, 0, datetime.timedelta(0))
    assert found["rows"][0]["team"] == "search"
    # --data-dir names the same place; another directory holds another ledger.
    write_ledger(tmp_path / "other" / "ledger", [2.0], now, customer="acme")
    code, out, _ = report(capsys, "--data-dir", str(tmp_path / "other"), "--format", "csv", "--by", "customer")
    assert (code, out.splitlines()) == (0, ["customer,cost_usd,tokens,requests,errors", "acme,2.0,15,1,0"])


def test_the_zone_recorded_in_the_ledger_is_the_ranges_without_timezone(tmp_path, capsys):
    # 23:30 UTC on 1 March is 2 March in Tokyo: a Tokyo ledger books it on the 2nd.
    write_ledger(tmp_path / "ledger", [1.0], datetime.datetime(2026, 3, 1, 23, 30, tzinfo=datetime.timezone.utc),
                 tz="Asia/Tokyo")
    code, out, _ = report(capsys, "--ledger", str(tmp_path / "ledger"), "--from", "2026-03-02", "--to", "2026-03-02",
                          "--format", "json")
    found = json.loads(out)
    assert (code, found["period"]["start"], found["summary"]["total_cost_usd"]) == (
        0, "2026-03-02T00:00:00+09:00", 1.0)
    code, out, _ = report(capsys, "--ledger", str(tmp_path / "ledger" / "ledger.sqlite"), "--from", "2026-03-02",
                          "--to", "2026-03-02", "--timezone", "UTC", "--format", "json")
    assert (code, json.loads(out)["summary"]["total_cost_usd"]) == (0, 0.0)


def test_a_config_whose_ledger_names_the_data_directory_is_found_with_data_dir(tmp_path, capsys):
    config = tmp_path / "relay.yaml"
    config.write_text(DEFAULT_CONFIG)
    write_ledger(tmp_path / "data" / "ledger", [0.125], datetime.datetime.now(datetime.timezone.utc))
    code, out, err = report(capsys, "--config", str(config), "--data-dir", str(tmp_path / "data"), "--format", "json")
    assert (code, err, json.loads(out)["summary"]["total_cost_usd"]) == (0, "", 0.125)


def test_without_a_ledger_it_says_where_it_looked_and_how_to_turn_one_on(tmp_path, capsys):
    code, out, err = report(capsys)
    where = tmp_path / "xdg" / "genops-relay" / "ledger" / "ledger.sqlite"
    assert (code, out) == (1, "")
    assert err.startswith(f"error: no cost ledger at {where}: the built-in config keeps one there once it has run")
    for needed in ("genops_ledger extension", "create_directory: true", "service.extensions", "genops_budget",
                   '"Budgets, the cost ledger and cost reports" in the README'):
        assert needed in err, err
    assert not (tmp_path / "xdg").exists()

    config = tmp_path / "relay.yaml"
    config.write_text("receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:0}}}}\n"
                      "exporters: {debug: {}}\n"
                      "service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}\n")
    code, _, err = report(capsys, "--config", str(config))
    assert code == 1 and err.startswith(f"error: {config} configures no cost ledger: to keep one, add the "
                                        "genops_ledger extension (extensions: genops_ledger: {directory: DIR, "
                                        "create_directory: true}")


@pytest.mark.parametrize("args, message", [
    (["--timezone", "Mars/Olympus"], 'error: unknown time zone "Mars/Olympus"'),
    (["--from", "2026-02-30"], 'error: from "2026-02-30" is not a date'),
    (["--from", "2026-03-02", "--to", "2026-03-01"], "error: to must not be before from"),
])
def test_bad_arguments_are_one_line_and_exit_1(tmp_path, capsys, args, message):
    write_ledger(tmp_path / "ledger", [1.0], datetime.datetime.now(datetime.timezone.utc))
    code, out, err = report(capsys, "--ledger", str(tmp_path / "ledger"), *args)
    assert (code, out) == (1, "")
    assert err.startswith(message) and err.count("\n") == 1, err


def test_a_file_that_is_no_ledger_is_named(tmp_path, capsys):
    bogus = tmp_path / "ledger.sqlite"
    bogus.write_bytes(b"not sqlite at all, " * 100)
    code, _, err = report(capsys, "--ledger", str(bogus))
    assert code == 1 and str(bogus) in err and "Traceback" not in err, err
