"""Build the virtualenv of the Jaeger clients, reusing a finished one.

    python3 -m tests.jaeger_clients.venv

It is rebuilt only when requirements.txt or the Python version changed; a build that fails
or is cut short leaves no stamp, so the next run starts again from scratch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
REQUIREMENTS = HERE / "requirements.txt"
# Gitignored, beside the instrumentation libraries' venvs.
VENV = ROOT / ".venvs" / "jaeger-clients"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / "requirements.sha256"
BUILD_COMMAND = "python3 -m tests.jaeger_clients.venv"
BUILD_TIMEOUT = 600


def digest() -> str:
    # A venv is bound to the interpreter that made it, so a Python upgrade rebuilds it too.
    return hashlib.sha256(REQUIREMENTS.read_bytes() + f"{sys.version_info[:3]}".encode()).hexdigest()


def ready() -> bool:
    return PYTHON.exists() and STAMP.exists() and STAMP.read_text().strip() == digest()


def require() -> Path:
    """The venv's python; skips the test where it was not built, fails under CI (which builds it)."""
    import pytest

    if not ready():
        message = f"no virtualenv for the Jaeger clients (.venvs/{VENV.name}): build it with `{BUILD_COMMAND}`"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{message}; .ci/run builds it before pytest, so under CI this is a failure")
        pytest.skip(message)
    return PYTHON


def build() -> str:
    """"reused", "built" or an error message."""
    if ready():
        return "reused"
    shutil.rmtree(VENV, ignore_errors=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    log = VENV.with_name(f"{VENV.name}.log")
    steps = ([sys.executable, "-m", "venv", str(VENV)],
             [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)])
    with open(log, "wb") as out:
        for step in steps:
            try:
                code = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT).returncode
            except subprocess.TimeoutExpired:
                return f"timed out after {BUILD_TIMEOUT}s (see {log})"
            if code != 0:
                return f"{' '.join(step[1:3])} exited {code} (see {log})"
    STAMP.write_text(digest() + "\n")
    return "built"


def main() -> int:
    started = time.monotonic()
    outcome = build()
    print(f"jaeger-clients   {outcome:8} {time.monotonic() - started:6.1f}s")
    return 0 if outcome in ("built", "reused") else 1


if __name__ == "__main__":
    sys.exit(main())
