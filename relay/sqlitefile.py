"""What the relay's two SQLite files (the persistent queue, the cost ledger) do alike when one is damaged."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

_SQLITE_FULL, _SQLITE_IOERR = 13, 10


def is_corruption(error: sqlite3.Error) -> bool:
    """Whether SQLite says the file itself is damaged (as opposed to unopenable: a path, a permission)."""
    text = str(error).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


def is_full(error: sqlite3.Error) -> bool:
    """Whether SQLite ran out of room: a full disk, or a file at its ``max_page_count``."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == _SQLITE_FULL:
        return True
    return "full" in str(error).lower()


def is_io_error(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == _SQLITE_IOERR) or "disk i/o error" in str(error).lower()


def move_aside(path: Path) -> Path:
    """Rename a damaged database and its WAL and shared-memory files to ``<name>.corrupt-<ns>``,
    kept for whoever investigates; a fresh file can then be created at ``path``."""
    aside = path.with_name(f"{path.name}.corrupt-{time.time_ns()}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(path) + suffix)
        if source.exists():
            os.replace(source, str(aside) + suffix)
    return aside
