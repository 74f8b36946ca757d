"""A sampling profiler built on the standard library: it sees every Python thread.

cProfile only traces the thread that enables it, while the relay works in the
asyncio loop thread and in gRPC's threads. So a background thread wakes ``hz``
times a second, reads ``sys._current_frames()`` for every other thread and
counts each stack it sees. Nothing is traced: the numbers are samples.

In ``cpu`` mode a thread's stack counts only when the thread used CPU since
the previous tick (its on-CPU time, read from ``/proc/self/task/<tid>/schedstat``),
so threads blocked on I/O, a lock or a sleep do not bury the work. ``wall``
mode counts every thread at every tick; it is also what ``cpu`` falls back to
where that file cannot be read (not Linux).
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from types import CodeType

MODES = ("cpu", "wall")


@dataclass
class Samples:
    """What one profile saw. A stack is its code objects, outermost first."""

    stacks: collections.Counter = field(default_factory=collections.Counter)
    ticks: int = 0
    elapsed: float = 0.0
    hz: int = 0
    mode: str = "cpu"
    stopped_early: bool = False

    @property
    def total(self) -> int:
        return sum(self.stacks.values())


class ThreadCpu:
    """Nanoseconds each thread has spent on a CPU, by native thread id (Linux).

    The files stay open across ticks and are re-read with pread, which keeps a
    tick cheap; a file whose thread has ended fails to read and is dropped.
    """

    def __init__(self):
        self._fds: dict[int, int] = {}

    @staticmethod
    def available() -> bool:
        return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/schedstat")

    def read(self, native_id: int) -> int | None:
        fd = self._fds.get(native_id)
        try:
            if fd is None:
                fd = self._fds[native_id] = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)
            return int(os.pread(fd, 128, 0).split()[0])
        except (OSError, ValueError, IndexError):
            self.forget(native_id)
            return None

    def keep_only(self, native_ids) -> None:
        for native_id in set(self._fds) - set(native_ids):
            self.forget(native_id)

    def forget(self, native_id: int) -> None:
        fd = self._fds.pop(native_id, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for native_id in list(self._fds):
            self.forget(native_id)


def _stack(frame) -> tuple[CodeType, ...]:
    codes = []
    while frame is not None:
        codes.append(frame.f_code)
        frame = frame.f_back
    codes.reverse()
    return tuple(codes)


def sample(seconds: float, hz: int, mode: str, stop: threading.Event, clock=time.monotonic) -> Samples:
    """Sample every other thread ``hz`` times a second for ``seconds``, or until ``stop`` is set.

    Run it in a thread of its own: it blocks for the whole window.
    """
    cpu = ThreadCpu() if mode == "cpu" and ThreadCpu.available() else None
    result = Samples(hz=hz, mode="cpu" if cpu is not None else "wall")
    own = threading.get_ident()
    last_cpu: dict[int, int | None] = {}
    interval = 1.0 / hz
    start = clock()
    deadline = start + seconds
    next_tick = start
    try:
        if cpu is not None:
            # The baseline, so that the first tick can already tell busy threads from idle ones.
            for thread in threading.enumerate():
                if thread.ident != own and thread.native_id is not None:
                    last_cpu[thread.native_id] = cpu.read(thread.native_id)
        while True:
            now = clock()
            if now >= deadline:
                break
            # Behind schedule (the GIL was busy): tick now and count on from here, not in a burst.
            next_tick = max(next_tick + interval, now)
            if stop.wait(min(next_tick, deadline) - now):
                result.stopped_early = True
                break
            _tick(result, own, cpu, last_cpu)
    finally:
        if cpu is not None:
            cpu.close()
        result.elapsed = clock() - start
    return result


def _tick(result: Samples, own: int, cpu: ThreadCpu | None, last_cpu: dict[int, int | None]) -> None:
    native = {thread.ident: thread.native_id for thread in threading.enumerate()}
    frames = sys._current_frames()
    frame = None
    try:
        for ident, frame in frames.items():
            if ident == own:
                continue
            native_id = native.get(ident)
            if cpu is not None and native_id is not None:
                before = last_cpu.get(native_id)
                now = last_cpu[native_id] = cpu.read(native_id)
                # Idle since the last tick, or first seen now (this read is only its baseline).
                if before is None or now is None or now <= before:
                    continue
            result.stacks[_stack(frame)] += 1
    finally:
        # Frames hold their locals alive: let go of them before sleeping.
        del frames, frame
    if cpu is not None:
        alive = {n for n in native.values() if n is not None}
        cpu.keep_only(alive)
        for gone in set(last_cpu) - alive:
            del last_cpu[gone]
    result.ticks += 1
