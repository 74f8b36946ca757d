"""Whether a directory is a place the relay can write its files."""

from __future__ import annotations

import errno
import os
from pathlib import Path

_FULL = (errno.ENOSPC, errno.EDQUOT)


def check_directory(directory: Path, create: bool, full_is_fine: bool = False,
                    component: str = "file_storage") -> str | None:
    """Raise OSError saying exactly what is wrong with ``directory`` as a place to write.

    With ``full_is_fine``, a disk (or quota) with no room left is returned as the reason
    instead: the directory is right, and room may come back while the relay runs.
    ``component`` begins each message: the extension whose directory it is.
    """
    # Before mkdir, which would only say "File exists" for a regular file in the way.
    if directory.exists() and not directory.is_dir():
        raise OSError(f"{component}: {directory} is not a directory")
    if create:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(f"{component}: cannot create directory {directory}: {error.strerror}") from None
    if not directory.exists():
        raise OSError(f"{component}: directory {directory} does not exist "
                      "(create it, or set create_directory: true)")
    if not directory.is_dir():
        raise OSError(f"{component}: {directory} is not a directory")
    probe = directory / f".probe-{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"x")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        if full_is_fine and error.errno in _FULL:
            return error.strerror
        raise OSError(f"{component}: directory {directory} is not writable: {error.strerror}") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return None
