"""The sending queue: accept a request into a bounded queue, deliver it from consumer tasks.

``send`` returns once the request is queued (in memory, or committed to disk
with a ``file_storage`` extension), which is when the client is acknowledged.
A queue without room refuses with ``QueueFullError``, a retryable error, so the
receiver answers UNAVAILABLE before acknowledging and nothing is dropped. With
``block_on_overflow`` it waits for room instead, oldest waiter first; the wait ends
when room frees, when the caller is cancelled (a gRPC client's deadline passing, a
client going away) or at shutdown (``ShutdownError``).

``num_consumers`` tasks take requests oldest first and push each through the
senders below (retry, timeout, transport). ``report(entry, error)`` is told
every outcome; a request is forgotten (and deleted from disk) only once it
was delivered or finally failed, so a request in flight when the process dies
is still on disk at the next start: delivery is at least once.

A persistent store that a full disk held back (a file that could not be
opened at start, deletes that failed) is retried every ``maintain_interval``
seconds; entries found in a file opened only then join the queue.

Shutdown (``close``): retry backoffs end, consumers finish their attempt,
then every request still queued gets one attempt, until the deadline. What is
left stays on disk for the next start; a memory queue reports it dropped.
"""

from __future__ import annotations

import asyncio
import collections
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Awaitable, Callable

from relay import received
from relay.errors import QueueFullError, ShutdownError, TooLargeError
from relay.signals import Signal, signal_of
from relay.storage.disk_queue import CorruptEntry, DiskQueueFile


@dataclass(slots=True)
class Entry:
    signal: Signal
    items: int
    units: int
    request: object = None
    data: bytes | None = None
    key: int = 0                     # the row, on disk


class MemoryStore:
    persistent = False
    needs_maintenance = False

    async def open(self) -> list[Entry]:
        return []

    async def put(self, entry: Entry) -> None:
        pass

    async def load(self, entry: Entry) -> tuple[object, bytes | None]:
        return entry.request, entry.data

    async def remove(self, entry: Entry) -> None:
        pass

    async def close(self) -> None:
        pass


class DiskStore:
    """Runs a ``DiskQueueFile`` on one worker thread, keeping payloads out of memory."""

    persistent = True

    def __init__(self, file: DiskQueueFile, units: Callable[[int, int], int]):
        self.file = file
        self.units = units
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="disk-queue")

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def open(self) -> list[Entry]:
        return self._entries(await self._run(self.file.open))

    def _entries(self, stored) -> list[Entry]:
        return [Entry(s.signal, s.items, self.units(s.items, s.size), key=s.key) for s in stored]

    @property
    def needs_maintenance(self) -> bool:
        return self.file.needs_maintenance

    async def maintain(self) -> list[Entry]:
        return self._entries(await self._run(self.file.maintain))

    async def put(self, entry: Entry) -> None:
        data = entry.data if entry.data is not None else entry.request.SerializeToString()
        entry.key = await self._run(self.file.put, entry.signal, entry.items, data)
        entry.request = entry.data = None  # the disk holds it now; memory stays flat under a backlog

    async def load(self, entry: Entry) -> tuple[object, bytes | None]:
        data = await self._run(self.file.get, entry.key)
        try:
            return entry.signal.request_type.FromString(data), data
        except Exception as error:  # noqa: BLE001 - any parse failure is the same corruption
            raise CorruptEntry(f"entry {entry.key} does not parse: {error}") from None

    async def remove(self, entry: Entry) -> None:
        await self._run(self.file.remove, entry.key)

    async def close(self) -> None:
        await self._run(self.file.close)
        self._thread.shutdown(wait=False)


def sizer(kind: str) -> Callable[[int, int], int]:
    """Units of an entry from (items, bytes)."""
    return {"requests": lambda items, size: 1,
            "items": lambda items, size: items,
            "bytes": lambda items, size: size}[kind]


class QueueSender:
    def __init__(self, deliver: Callable[[object], Awaitable[None]], store, *, capacity: int,
                 sizer_kind: str, consumers: int, report, skipped, left, trouble=None,
                 maintain_interval: float = 1.0, block_on_overflow: bool = False):
        self.deliver = deliver
        self.store = store
        self.capacity = capacity
        self.sizer_kind = sizer_kind
        self.units = sizer(sizer_kind)
        self.consumers = consumers
        self.report = report          # report(entry, error | None): delivered, or dropped for good
        self.skipped = skipped        # skipped(entry, reason): corrupt on disk
        self.left = left              # left(entries, persistent): undelivered at shutdown
        self.trouble = trouble        # trouble(error): the store's maintenance failed (logged, retried)
        self.maintain_interval = maintain_interval
        self.block_on_overflow = block_on_overflow
        self.used = 0
        # Senders waiting for room (block_on_overflow), oldest first.
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self.pending: collections.deque[Entry] = collections.deque()
        self._available = asyncio.Semaphore(0)
        self._tasks: list[asyncio.Task] = []
        self._maintenance: asyncio.Task | None = None
        # Entries mid-attempt; left here if cancelled, so close() still accounts for them.
        self._inflight: dict[int, Entry] = {}
        self._stopping = False
        self._closed = False

    async def start(self) -> None:
        waiting = await self.store.open()
        for entry in waiting:
            self._push(entry)
        self._tasks = [asyncio.create_task(self._consume(), name=f"queue-consumer-{n}")
                       for n in range(self.consumers)]
        if self.store.persistent:
            self._maintenance = asyncio.create_task(self._maintain(), name="queue-maintenance")

    async def _maintain(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.maintain_interval)
            if self._closed or not self.store.needs_maintenance:
                continue
            try:
                for entry in await self.store.maintain():
                    self._push(entry)
            except Exception as error:  # noqa: BLE001 - tried again at the next tick
                if self.trouble is not None:
                    self.trouble(error)

    def _push(self, entry: Entry) -> None:
        self.used += entry.units
        self.pending.append(entry)
        self._available.release()

    async def send(self, request) -> None:
        if self._closed:
            raise ShutdownError("the exporter is shutting down")
        signal = signal_of(request)
        data = received.raw_bytes(request)
        items = signal.count(request, data)
        size = 0
        if self.sizer_kind == "bytes":
            size = len(data) if data is not None else request.ByteSize()
        entry = Entry(signal, items, self.units(items, size), request, data)
        if entry.units > self.capacity:
            # No amount of waiting makes room for it: say so, rather than have the client retry for ever.
            raise TooLargeError(f"request of {entry.units} {self.sizer_kind} exceeds the sending queue's "
                                f"capacity of {self.capacity}")
        # Checked and reserved before an await, so concurrent senders cannot overshoot.
        if self.used + entry.units > self.capacity or self._waiters:
            if not self.block_on_overflow:
                raise QueueFullError(f"sending queue is full ({self.used} of {self.capacity} {self.sizer_kind})")
            await self._wait_for_room(entry.units)
        self.used += entry.units
        try:
            await self.store.put(entry)
        except BaseException:
            self._free(entry.units)
            raise
        self.pending.append(entry)
        self._available.release()

    async def _wait_for_room(self, units: int) -> None:
        """Queue behind earlier waiters; return once ``units`` fit (the caller then reserves them)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            while True:
                await waiter
                if self._closed:
                    raise ShutdownError("the exporter is shutting down")
                if self.used + units <= self.capacity:
                    return
                waiter = asyncio.get_running_loop().create_future()
                self._waiters[0] = waiter  # still first in line
        finally:
            if self._waiters and self._waiters[0] is waiter:
                self._waiters.popleft()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            # Room may be left for the next in line (this one was cancelled, or needed less).
            self._wake_first()

    def _wake_first(self) -> None:
        if self._waiters and not self._waiters[0].done():
            self._waiters[0].set_result(None)

    def _free(self, units: int) -> None:
        self.used -= units
        self._wake_first()

    async def _consume(self) -> None:
        while True:
            await self._available.acquire()
            if self._stopping or not self.pending:
                return
            entry = self.pending.popleft()
            if not await self._attempt(entry):
                # A backoff cut short by shutdown: back to the front, for the drain's attempt.
                self.pending.appendleft(entry)

    async def _attempt(self, entry: Entry) -> bool:
        """One delivery (with the retries below it); False if shutdown cut it short."""
        self._inflight[id(entry)] = entry
        try:
            request, data = await self.store.load(entry)
        except CorruptEntry as error:
            self.skipped(entry, str(error))
            await self._forget(entry)
            return True
        except Exception as error:  # noqa: BLE001 - a read that failed is not corruption
            # Left on disk for the next start rather than deleted; counted, and never a crash loop.
            self.skipped(entry, f"could not read the entry, kept for the next start: {error}")
            del self._inflight[id(entry)]
            self._free(entry.units)
            return True
        token = received.bind(request, data) if data is not None else None
        try:
            await self.deliver(request)
        except ShutdownError:
            del self._inflight[id(entry)]
            return False
        except Exception as error:  # noqa: BLE001 - reported (counted and logged) as dropped
            self.report(entry, error)
        else:
            self.report(entry, None)
        finally:
            if token is not None:
                received.unbind(token)
        await self._forget(entry)
        return True

    async def _forget(self, entry: Entry) -> None:
        del self._inflight[id(entry)]
        self._free(entry.units)
        try:
            await self.store.remove(entry)
        except Exception as error:  # noqa: BLE001 - kept on disk: sent again after a restart
            self.skipped(entry, f"could not remove a delivered entry: {error}")

    async def close(self) -> None:
        """Drain with one attempt per request (retries must already be stopped); keep or report the rest.

        Cancelled at the caller's deadline, it still accounts for every request
        not delivered: on disk they stay for the next start; in memory they are
        reported lost.
        """
        self._closed = True
        self._stopping = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)  # each raises ShutdownError: never acknowledged, nothing lost
        if self._maintenance is not None:
            # Cancelled, not awaited: a step under way finishes on the store's worker thread
            # before ``store.close`` runs there.
            self._maintenance.cancel()
        for _ in self._tasks:
            self._available.release()
        kept: list[Entry] = []
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)

            async def worker():
                while self.pending:
                    entry = self.pending.popleft()
                    if not await self._attempt(entry):
                        kept.append(entry)

            await asyncio.gather(*(worker() for _ in range(self.consumers)))
        finally:
            for task in self._tasks:
                task.cancel()
            left = kept + list(self._inflight.values()) + list(self.pending)
            self.pending.clear()
            if left:
                self.left(left, self.store.persistent)
            await self.store.close()
