"""Profiles and thread dumps as text a Python user can read.

A frame reads ``function (file:line)``: the qualified function name and its
file relative to site-packages, the project or the standard library. In a
profile the line is where the function is defined, so that a function is one
box of a flame graph whichever of its lines was running; in a thread dump it
is the line running now.
"""

from __future__ import annotations

import collections
import datetime
import functools
import linecache
import os
import site
import sys
import sysconfig
import threading
from pathlib import Path
from types import CodeType

from relay.extensions.pprof.sampler import Samples

# The relay package's parent: the project (or the site-packages it is installed in).
_PROJECT = str(Path(__file__).resolve().parents[3])


@functools.cache
def _roots() -> tuple[str, ...]:
    candidates = [_PROJECT, *site.getsitepackages(), site.getusersitepackages()]
    paths = sysconfig.get_paths()
    candidates += [paths.get(key) for key in ("purelib", "platlib", "stdlib", "platstdlib")]
    roots = {os.path.join(os.path.realpath(c), "") for c in candidates if c}
    # Longest first: site-packages lies inside the standard library's directory.
    return tuple(sorted(roots, key=len, reverse=True))


@functools.lru_cache(maxsize=4096)
def short_path(filename: str) -> str:
    if filename.startswith("<"):
        return filename  # <frozen ...>, <string>: not a file
    full = os.path.realpath(filename)
    for root in _roots():
        if full.startswith(root):
            return full[len(root):]
    return filename


@functools.lru_cache(maxsize=16384)
def frame_label(code: CodeType) -> str:
    name = getattr(code, "co_qualname", code.co_name)
    # ";" separates frames in the collapsed format.
    return f"{name} ({short_path(code.co_filename)}:{code.co_firstlineno})".replace(";", ",")


def collapsed(samples: Samples) -> str:
    """One line per distinct stack, outermost frame first: ``frame;frame;frame count``.

    The input most flame graph tools read.
    """
    lines = collections.Counter()
    for stack, count in samples.stacks.items():
        lines[";".join(frame_label(code) for code in stack)] += count
    return "".join(f"{stack} {count}\n" for stack, count in sorted(lines.items(), key=lambda kv: (-kv[1], kv[0])))


def table(samples: Samples) -> str:
    """A pstats-like table, one row per function, sorted by cumulative samples.

    ``self`` counts the samples with the function innermost (running its own
    code); ``cum`` those with it anywhere on the stack, once per sample even
    when it recurses. Percentages are of all samples.
    """
    own: collections.Counter = collections.Counter()
    cumulative: collections.Counter = collections.Counter()
    for stack, count in samples.stacks.items():
        if not stack:
            continue
        labels = [frame_label(code) for code in stack]
        own[labels[-1]] += count
        for label in set(labels):
            cumulative[label] += count
    total = samples.total
    idle = ("threads that used no CPU since the previous tick are left out" if samples.mode == "cpu"
            else "every thread counts at every tick, idle or not")
    early = " (stopped early)" if samples.stopped_early else ""
    head = [
        (f"Sample-based profile ({samples.mode} mode): {total} samples from {samples.ticks} ticks "
         f"over {samples.elapsed:.2f} s at {samples.hz} Hz{early}."),
        f"A sample is one thread's Python stack at one tick; {idle}.",
        "Counts are samples, not measured times: self = the function was running its own code,",
        "cum = the function was anywhere on the stack. Sorted by cum.",
        "",
        f"{'self':>8} {'self%':>7} {'cum':>8} {'cum%':>7}  function (file:line)",
    ]
    rows = sorted(cumulative.items(), key=lambda kv: (-kv[1], -own[kv[0]], kv[0]))
    body = [f"{own[label]:>8} {_percent(own[label], total):>7} {cum:>8} {_percent(cum, total):>7}  {label}"
            for label, cum in rows]
    return "\n".join(head + body) + "\n"


def _percent(part: int, total: int) -> str:
    return f"{100.0 * part / total:.1f}%" if total else "-"


def thread_dump() -> str:
    """Every Python thread's current stack, innermost call last, like a goroutine dump."""
    frames = sys._current_frames()
    threads = {thread.ident: thread for thread in threading.enumerate()}
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    out = [f"{len(frames)} threads in process {os.getpid()} at {now}", ""]
    # Threads in the order they were started (the main thread first), unknown ones last.
    order = list(threads)
    for ident, frame in sorted(frames.items(), key=lambda kv: order.index(kv[0]) if kv[0] in threads
                               else len(order)):
        thread = threads.get(ident)
        if thread is not None:
            out.append(f'Thread "{thread.name}" ident={ident} native_id={thread.native_id} '
                       f"daemon={str(thread.daemon).lower()}:")
        else:
            out.append(f"Thread (not started by threading) ident={ident}:")
        out += _frame_lines(frame)
        out.append("")
    del frames
    return "\n".join(out)


def _frame_lines(frame) -> list[str]:
    stack = []
    while frame is not None:
        stack.append((frame.f_code, frame.f_lineno))
        frame = frame.f_back
    lines = []
    for code, lineno in reversed(stack):
        name = getattr(code, "co_qualname", code.co_name)
        lines.append(f"  {name} ({short_path(code.co_filename)}:{lineno})")
        source = linecache.getline(code.co_filename, lineno).strip() if lineno else ""
        if source:
            lines.append(f"      {source}")
    return lines
