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

With ``sending_queue.batch`` (``Batching``) a consumer takes the oldest request and
gathers further queued requests of the same signal, and ones arriving within
``flush_timeout`` of the first, until ``min_size`` (in the batch's sizer: items or
bytes); it merges them into one export, split so that none exceeds ``max_size``.
Only one consumer gathers at a time, so a trickle of requests fills one batch
rather than ``num_consumers`` small ones; up to ``num_consumers`` batches are in
delivery at once. The entries of a batch leave the store only once its every
export was delivered or finally failed. Profiles requests are sent alone: each
carries its own dictionary, which merging would have to renumber.

A persistent store that a full disk held back (a file that could not be
opened at start, deletes that failed) is retried every ``maintain_interval``
seconds; entries found in a file opened only then join the queue.

Shutdown (``close``): retry backoffs end, a batch being gathered is sent as it
is, consumers finish their attempt, then every request still queued gets one
attempt (batched, without waiting for more), until the deadline. What is left
stays on disk for the next start; a memory queue reports it dropped. A batch
cut short by shutdown after some of its parts were delivered is kept whole:
those parts are sent again (delivery is at least once).
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Awaitable, Callable

from relay import received
from relay.errors import QueueFullError, ShutdownError, TooLargeError
from relay.signals import Signal, signal_of
from relay.split import by_size, merge, split
from relay.storage.disk_queue import CorruptEntry, DiskQueueFile


@dataclass(slots=True)
class Entry:
    signal: Signal
    items: int
    units: int
    request: object = None
    data: bytes | None = None
    key: int = 0                     # the row, on disk
    size: int = 0                    # serialized bytes, where a sizer counts them


@dataclass(frozen=True, slots=True)
class Batching:
    """``sending_queue.batch`` as the consumers apply it; sizes count ``sizer`` units (items or bytes)."""

    flush_timeout: float
    min_size: int
    max_size: int
    sizer: str


async def wait_for(event: asyncio.Event, timeout: float) -> None:
    """Return once ``event`` is set or ``timeout`` seconds have passed (a batch's wait for more)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass


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
        return [Entry(s.signal, s.items, self.units(s.items, s.size), key=s.key, size=s.size) for s in stored]

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
                 maintain_interval: float = 1.0, block_on_overflow: bool = False,
                 batching: Batching | None = None, clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[asyncio.Event, float], Awaitable[None]] = wait_for):
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
        self.batching = batching
        self.batch_units = sizer(batching.sizer) if batching is not None else None
        self.clock = clock            # clock() and wait(event, timeout): a batch's flush_timeout
        self.wait = wait
        self.used = 0
        # Senders waiting for room (block_on_overflow), oldest first.
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self.pending: collections.deque[Entry] = collections.deque()
        self._available = asyncio.Semaphore(0)
        # Held by the one consumer gathering a batch; set when a request is queued.
        self._gathering = asyncio.Lock()
        self._arrived = asyncio.Event()
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
        self._arrived.set()

    async def send(self, request) -> None:
        if self._closed:
            raise ShutdownError("the exporter is shutting down")
        signal = signal_of(request)
        data = received.raw_bytes(request)
        items = signal.count(request, data)
        size = 0
        if self.sizer_kind == "bytes" or (self.batching is not None and self.batching.sizer == "bytes"):
            size = len(data) if data is not None else request.ByteSize()
        entry = Entry(signal, items, self.units(items, size), request, data, size=size)
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
        self._arrived.set()

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
            async with self._gathering:
                await self._available.acquire()
                if self._stopping or not self.pending:
                    return
                entries = await self._gather(self.pending.popleft(), consumer=True)
            kept = await self._attempt(entries)
            # A backoff cut short by shutdown: back to the front, for the drain's attempt.
            self.pending.extendleft(reversed(kept))

    async def _gather(self, first: Entry, *, consumer: bool) -> list[Entry]:
        """``first`` and, with batching, the queued requests that join its batch.

        A consumer (``consumer``) also waits up to ``flush_timeout`` for more; the
        drain at shutdown takes only what is queued. Gathered entries are in flight
        from here on, so a consumer cancelled while waiting still has them accounted for.
        """
        self._inflight[id(first)] = first
        entries = [first]
        batching = self.batching
        if batching is None or first.signal is Signal.PROFILES:
            return entries
        size = self.batch_units(first.items, first.size)
        deadline = self.clock() + batching.flush_timeout
        while size < batching.min_size:
            taken = self._take_like(first.signal, batching.min_size - size)
            if taken:
                for entry in taken:
                    if consumer and not self._available.locked():
                        await self._available.acquire()  # the entry's own release: returns at once
                    self._inflight[id(entry)] = entry
                    size += self.batch_units(entry.items, entry.size)
                entries.extend(taken)
                continue
            remaining = deadline - self.clock()
            if not consumer or self._stopping or remaining <= 0:
                break
            self._arrived.clear()
            await self.wait(self._arrived, remaining)
        return entries

    def _take_like(self, signal: Signal, room: int) -> list[Entry]:
        """Queued entries of ``signal``, oldest first, until they fill ``room``; others keep their place."""
        taken: list[Entry] = []
        passed: list[Entry] = []
        while self.pending and room > 0:
            entry = self.pending.popleft()
            if entry.signal is signal:
                taken.append(entry)
                room -= self.batch_units(entry.items, entry.size)
            else:
                passed.append(entry)
        self.pending.extendleft(reversed(passed))
        return taken

    async def _attempt(self, entries: list[Entry]) -> list[Entry]:
        """Deliver the batch ``entries`` (with the retries below); the entries shutdown cut short."""
        loaded = []
        for entry in entries:
            try:
                request, data = await self.store.load(entry)
            except CorruptEntry as error:
                self.skipped(entry, str(error))
                await self._forget(entry)
                continue
            except Exception as error:  # noqa: BLE001 - a read that failed is not corruption
                # Left on disk for the next start rather than deleted; counted, and never a crash loop.
                self.skipped(entry, f"could not read the entry, kept for the next start: {error}")
                del self._inflight[id(entry)]
                self._free(entry.units)
                continue
            loaded.append((entry, request, data))
        if not loaded:
            return []
        held = [entry for entry, _, _ in loaded]
        for request, data, count in self._exports(loaded):
            # One entry sent as it is reports as itself; a batch or part, as what it holds.
            outcome = held[0] if len(held) == 1 and count == held[0].items else Entry(held[0].signal, count, 0)
            token = received.bind(request, data) if data is not None else None
            try:
                await self.deliver(request)
            except ShutdownError:
                for entry in held:
                    del self._inflight[id(entry)]
                return held
            except Exception as error:  # noqa: BLE001 - reported (counted and logged) as dropped
                self.report(outcome, error)
            else:
                self.report(outcome, None)
            finally:
                if token is not None:
                    received.unbind(token)
        for entry in held:
            await self._forget(entry)
        return []

    def _exports(self, loaded: list) -> list[tuple[object, bytes | None, int]]:
        """(request, wire bytes or None, items) for each export the loaded entries make."""
        signal = loaded[0][0].signal
        items = sum(entry.items for entry, _, _ in loaded)
        if len(loaded) == 1:
            merged, data = loaded[0][1], loaded[0][2]
        else:
            merged = merge([request for _, request, _ in loaded])
            raws = [data for _, _, data in loaded]
            # An export request is one repeated field: the parts' bytes one after another are their merge.
            data = None if any(raw is None for raw in raws) else b"".join(raws)
        batching = self.batching
        if batching is None or not batching.max_size or signal is Signal.PROFILES:
            return [(merged, data, items)]
        if batching.sizer == "items":
            chunks = split(merged, batching.max_size) if items > batching.max_size else [merged]
        else:
            size = len(data) if data is not None else merged.ByteSize()
            chunks = by_size(merged, batching.max_size) if size > batching.max_size else [merged]
        if len(chunks) == 1:
            return [(merged, data, items)]
        return [(chunk, None, signal.count(chunk)) for chunk in chunks]

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
        self._arrived.set()  # a batch being gathered is sent as it is
        kept: list[Entry] = []
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)

            async def worker():
                while self.pending:
                    entries = await self._gather(self.pending.popleft(), consumer=False)
                    kept.extend(await self._attempt(entries))

            await asyncio.gather(*(worker() for _ in range(self.consumers)))
        finally:
            for task in self._tasks:
                task.cancel()
            left = kept + list(self._inflight.values()) + list(self.pending)
            self.pending.clear()
            if left:
                self.left(left, self.store.persistent)
            await self.store.close()
