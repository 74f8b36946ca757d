"""A test run that leaves a process behind fails: a pytest plugin that tests/conftest.py loads.

At the session's start a token unique to the run goes into this process's environment, so
every process a test starts inherits it (``subprocess`` passes ``os.environ`` on, and
``RelayProcess`` extends it). At the end, every live process that is a descendant of this
one, or that carries the token (a grandchild whose parent died, reparented away from us),
is a leak: the run fails, naming each, and each is killed so that the failure leaves
nothing running either.

Processes are read from ``/proc`` (Linux); where there is none the check does nothing.
A process that is exiting gets ``GRACE`` seconds to go: a fixture may have signalled it
just before the session ended.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

TOKEN_VARIABLE = "GENOPS_RELAY_TEST_SESSION"
GRACE = 5.0
_PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None if it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ")".
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def _has_token(pid: int, token: bytes) -> bool:
    """Whether the process's token variable names ``token`` among the runs it descends from."""
    prefix = TOKEN_VARIABLE.encode() + b"="
    try:
        entries = (_PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:  # gone, or another user's
        return False
    return any(entry.startswith(prefix) and token in entry[len(prefix):].split(b":") for entry in entries)


def _command(pid: int) -> str:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200] or "?"


def left_behind(token: str, root: int | None = None) -> list[int]:
    """Live (not zombie) processes descended from ``root`` (default: this one) or carrying ``token``."""
    root = os.getpid() if root is None else root
    marker = token.encode()
    parents, tagged = {}, set()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        found = _stat(pid)
        if found is None or found[0] in ("Z", "X"):
            continue
        parents[pid] = found[1]
        if pid != root and _has_token(pid, marker):
            tagged.add(pid)
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), list(children.get(root, ()))
    while todo:  # bounded: each pid is visited once
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, ())
    return sorted(found | tagged)


def pytest_sessionstart(session) -> None:
    if not _PROC.is_dir():
        return
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    session.config.stash[_TOKEN] = token
    # A run inside a run (a test that runs pytest) adds its token to the outer one's, so what the
    # inner run leaves behind, even reparented away after a timeout, still carries the outer token.
    outer = os.environ.get(TOKEN_VARIABLE)
    os.environ[TOKEN_VARIABLE] = f"{outer}:{token}" if outer else token


@pytest.hookimpl(trylast=True)  # after every other end-of-session step has stopped what it runs
def pytest_sessionfinish(session) -> None:
    token = session.config.stash.get(_TOKEN, None)
    if token is None:
        return
    deadline = time.monotonic() + GRACE
    leaked = left_behind(token)
    while leaked and time.monotonic() < deadline:
        time.sleep(0.1)
        leaked = left_behind(token)
    if not leaked:
        return
    described = [f"  pid {pid}: {_command(pid)}" for pid in leaked]
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # it went on its own meanwhile
            pass
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = ("processes started by this test run were still running at its end "
               "(killed now; a fixture must stop what it starts, also when a test skips):\n" + "\n".join(described))
    if reporter is not None:
        reporter.write_sep("=", "processes left running", red=True, bold=True)
        reporter.write_line(message, red=True)
    else:
        print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


_TOKEN = pytest.StashKey[str]()
