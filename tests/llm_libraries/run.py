"""Run drive.py for one library in that library's venv, bounded in time."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.llm_libraries.libraries import HERE, Library, driver_env

DRIVER = HERE / "drive.py"
# Three calls to a local server and one flush; a library that hangs fails instead of stalling the suite.
DRIVE_TIMEOUT = 120


def drive(library: Library, base_url: str, traces_endpoint: str, mode: str = "",
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The finished driver; AssertionError with its output if it failed or ran out of time. ``mode``
    names another setup of drive.py for the same venv; ``env`` adds to the driver's environment."""
    # The driver runs as ./drive.py in a scratch directory: Logfire records code.filepath relative
    # to the working directory, so the spans (and fixtures) name no path of this machine.
    with tempfile.TemporaryDirectory(prefix=f"drive-{library.name}-") as cwd:
        shutil.copy(DRIVER, Path(cwd) / DRIVER.name)
        try:
            done = subprocess.run([str(library.python), DRIVER.name, mode or library.name, base_url],
                                  env={**driver_env(library, traces_endpoint), **(env or {})}, cwd=cwd, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=DRIVE_TIMEOUT)
        except subprocess.TimeoutExpired as expired:
            raise AssertionError(f"{library.name} driver still running after {DRIVE_TIMEOUT}s:\n"
                                 f"{expired.stdout or ''}{expired.stderr or ''}") from None
    if done.returncode != 0:
        raise AssertionError(f"{library.name} driver exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done
