"""How the memory limiter measures memory: resident set size, the memory available, and release.

RSS rather than Python's own allocation counters, because RSS is what the
kernel's OOM killer and a container's limit act on; it includes the
interpreter and its libraries, so limits sit higher than a Go collector's.
Everything here is Linux-specific and fails with a clear ``OSError`` elsewhere.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
from typing import Iterator

# Larger than any real memory: cgroup v1 writes "unlimited" as a number near 2**63.
_NO_LIMIT = 1 << 60

try:
    PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):  # not a POSIX system: statm is missing too
    PAGE_SIZE = 0


def resident_bytes(statm: str = "/proc/self/statm") -> int:
    """This process's resident set size, in bytes."""
    try:
        with open(statm, "rb") as file:
            pages = int(file.read().split()[1])
    except (OSError, ValueError, IndexError) as error:
        raise OSError(f"cannot read this process's memory usage from {statm} "
                      f"(the memory_limiter processor needs Linux): {error}") from None
    return pages * PAGE_SIZE


def total_memory(proc: str = "/proc", cgroup: str = "/sys/fs/cgroup") -> int:
    """The memory this process may use: the tightest of the cgroup limits and the machine's RAM."""
    found = [value for value in (_mem_total(proc), *_cgroup_limits(proc, cgroup))
             if value and value < _NO_LIMIT]
    if not found:
        raise OSError(f"cannot determine the total memory (no cgroup limit under {cgroup}, "
                      f"no MemTotal in {proc}/meminfo): use limit_mib instead of limit_percentage")
    return min(found)


def _mem_total(proc: str) -> int | None:
    try:
        with open(os.path.join(proc, "meminfo")) as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB, meaning KiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_limits(proc: str, cgroup: str) -> Iterator[int]:
    # A limit on any ancestor cgroup binds too, and outside a cgroup namespace the
    # process's own cgroup is a sub-directory of the mount, so walk from there up.
    v2_path = v1_path = "/"
    try:
        with open(os.path.join(proc, "self", "cgroup")) as file:
            for line in file:
                hierarchy, controllers, path = line.rstrip("\n").split(":", 2)
                if hierarchy == "0" and not controllers:
                    v2_path = path
                elif "memory" in controllers.split(","):
                    v1_path = path
    except (OSError, ValueError):
        pass
    yield from _along(os.path.join(cgroup), v2_path, "memory.max")
    yield from _along(os.path.join(cgroup, "memory"), v1_path, "memory.limit_in_bytes")


def _along(mount: str, path: str, name: str) -> Iterator[int]:
    parts = [] if ".." in path else [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        try:
            with open(os.path.join(mount, *parts[:depth], name)) as file:
                text = file.read().strip()
        except OSError:
            continue
        if text.isdigit():  # cgroup v2 writes "max" when there is no limit
            yield int(text)


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the system, so that RSS can fall."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    # glibc keeps freed memory in its arenas; only malloc_trim returns it to the kernel.
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
