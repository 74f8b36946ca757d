"""Build one virtualenv per instrumentation library, in parallel, reusing finished ones.

    python3 -m tests.llm_libraries.venvs [NAME ...]     # all five when no name is given

Each library gets its own venv because their pins conflict (openlit wants openai 2,
the others take openai 3). A venv is rebuilt only when its requirements file or the
Python version changed; a build that fails or is cut short leaves no stamp, so the next
run starts it again from scratch.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from tests.llm_libraries.libraries import BY_NAME, LIBRARIES, Library

# Per library; a resolved, pinned install takes well under a minute here.
BUILD_TIMEOUT = 600


def build(library: Library) -> tuple[str, float, str]:
    """(name, seconds, "reused" | "built" | an error message)."""
    started = time.monotonic()
    if library.ready():
        return library.name, 0.0, "reused"
    shutil.rmtree(library.venv, ignore_errors=True)
    log = library.venv.with_name(f"{library.name}.log")
    library.venv.parent.mkdir(parents=True, exist_ok=True)
    steps = (
        [sys.executable, "-m", "venv", str(library.venv)],
        [str(library.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(library.requirements)],
    )
    with open(log, "wb") as out:
        for step in steps:
            try:
                code = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT).returncode
            except subprocess.TimeoutExpired:
                return library.name, time.monotonic() - started, f"timed out after {BUILD_TIMEOUT}s (see {log})"
            if code != 0:
                return library.name, time.monotonic() - started, f"{step[2]} {step[3]} exited {code} (see {log})"
    library.stamp.write_text(library.digest() + "\n")
    return library.name, time.monotonic() - started, "built"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"libraries to build (default: all of {', '.join(BY_NAME)})")
    parser.add_argument("--jobs", type=int, default=len(LIBRARIES),
                        help="builds at once (pip mostly waits on downloads, so all five by default)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BY_NAME))
    if unknown:
        parser.error(f"unknown library {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    libraries = [BY_NAME[name] for name in args.names] or list(LIBRARIES)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(build, libraries))
    failed = False
    for name, seconds, outcome in results:
        failed |= outcome not in ("built", "reused")
        print(f"{name:16} {outcome:8} {seconds:6.1f}s")
    print(f"venvs in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
