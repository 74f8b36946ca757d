"""What the relay's two SQLite files (the persistent queue, the cost ledger) do alike when one is damaged."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path


def is_corruption(error: sqlite3.Error) -> bool:
    """Whether SQLite says the file itself is damaged (as opposed to unopenable: a path, a permission)."""
    text = str(error).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


def move_aside(path: Path) -> Path:
    """Rename a damaged database and its WAL and shared-memory files to ``<name>.corrupt-<ns>``,
    kept for whoever investigates; a fresh file can then be created at ``path``."""
    aside = path.with_name(f"{path.name}.corrupt-{time.time_ns()}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(path) + suffix)
        if source.exists():
            os.replace(source, str(aside) + suffix)
    return aside
