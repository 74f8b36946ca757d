"""A built wheel carries the recorded payloads, so the bench runs from an installed package."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.support import ROOT


def test_the_wheel_carries_the_bench_payloads(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w",
                            str(tmp_path / "dist")], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("genops_relay-*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(installed)
    recorded = {path.relative_to(ROOT / "proto_fixtures").as_posix()
                for path in (ROOT / "proto_fixtures").rglob("*.binpb")}
    assert recorded and {f"relay/_fixtures/{name}" for name in recorded} <= names
    # Away from the checkout, the installed package finds its own payloads and builds both bench payloads.
    probe = ("from relay import fixtures; from relay.bench import payload; "
             "print(fixtures.fixtures_dir()); print(len(payload.llm_spans(64, payload='dialects').resource_spans))")
    ran = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"})
    assert ran.returncode == 0, ran.stderr[-2000:]
    where, resources = ran.stdout.split()
    assert where == str(installed / "relay" / "_fixtures")
    assert int(resources) > 1
