"""The scrape loop: one task per target, each on its own fixed schedule.

A target is first scraped within a fraction of its interval (at most a second) after
start, at an offset derived from the job and address so that many targets do not all
fire at once, then every ``interval``, a scrape running late skipping the ticks it
missed rather than bunching up. A scrape is bounded by the target's ``timeout``.

Each scrape, good or failed, is passed on with the target's ``up``,
``scrape_duration_seconds`` and ``scrape_samples_scraped``. There is no client to
answer when the pipeline refuses: that scrape's data is dropped and counted, and the
next scrape brings fresh values.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import aiohttp

from relay.errors import RelayError
from relay.net.tls import ClientTLS, request_options
from relay.receivers.prometheus.convert import Conversion, StartTimes, TargetLabels, convert, parse
from relay.signals import Signal
from relay.telemetry import Throttled, component_logger

TRANSPORT = "http"
# The text format first; OpenMetrics is parsed too if a target answers with it anyway.
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
USER_AGENT = "genops-relay"
MAX_FIRST_OFFSET = 1.0


class ScrapeError(Exception):
    """Why one scrape produced nothing: refused, timed out, an HTTP error or an unparsable body."""


class _Stopped(Exception):
    """Shutdown began while waiting."""


class TargetState:
    """What the loop keeps about one target between its scrapes."""

    def __init__(self, target):
        self.target = target
        self.labels = TargetLabels(target.job, target.address, target.scheme, target.labels,
                                   target.honor_labels, target.external)
        self.starts = StartTimes()
        self.up: bool | None = None  # unknown until the first scrape
        self.skipped = False

    def offset(self, receiver: str) -> float:
        """A stable offset in [0, min(interval, 1s)) from the receiver, job and address."""
        digest = hashlib.sha256(f"{receiver}\0{self.target.job}\0{self.target.address}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2 ** 64
        return fraction * min(self.target.interval, MAX_FIRST_OFFSET)


class PrometheusReceiver:
    def __init__(self, id_, targets: list, consumer, telemetry, grace: float = 5.0):
        self.id = id_
        self.targets = [TargetState(t) for t in targets]
        self.consumer = consumer
        self.metrics = telemetry
        self.grace = grace
        self.log = component_logger(id_)
        self._refusals = Throttled(self.log, 10.0)
        receiver = str(id_)
        self._accepted = telemetry.receiver_accepted[Signal.METRICS].labels(receiver, TRANSPORT)
        self._refused = telemetry.receiver_refused[Signal.METRICS]
        self._failed = telemetry.counter(
            "otelcol_receiver_prometheus_failed_scrapes",
            "Number of scrapes that failed (refused, timed out, HTTP error or unparsable)",
            ["receiver", "job"])
        self._stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._tls: dict[str, ClientTLS] = {}  # by job, for https targets

    async def start(self) -> None:
        self._stopping.clear()
        for state in self.targets:  # a missing or bad TLS file stops the start, naming it
            target = state.target
            if target.tls is not None and target.job not in self._tls:
                self._tls[target.job] = ClientTLS(target.tls, log=self.log)
        # No connection limit: each target has at most one scrape in flight anyway.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), headers={"User-Agent": USER_AGENT})
        self._tasks = [asyncio.create_task(self._run(state), name=f"scrape {state.target.url}")
                       for state in self.targets]
        self.log.info("scraping targets", fields={
            "targets": len(self.targets), "jobs": sorted({s.target.job for s in self.targets})})

    async def shutdown(self) -> None:
        """Stop at once: waits end now; a scrape already being handed on gets ``grace`` seconds."""
        self._stopping.set()
        try:
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self.grace)
        finally:
            tasks, self._tasks = self._tasks, []
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)
            if self._session is not None:
                session, self._session = self._session, None
                await session.close()

    async def _run(self, state: TargetState) -> None:
        loop = asyncio.get_running_loop()
        interval = state.target.interval
        due = loop.time() + state.offset(str(self.id))
        while not await self._stopped_by(due):
            try:
                await self._scrape(state)
            except _Stopped:
                return
            except Exception:  # a bug must not end this target's scraping for good
                self.log.exception("scrape loop failed", fields={"job": state.target.job,
                                                                 "target": state.target.address})
            due += interval
            late = loop.time() - due
            if late > 0:
                due += (late // interval + 1) * interval

    async def _stopped_by(self, due: float) -> bool:
        """Waits until the loop time ``due``; True if shutdown began first."""
        delay = due - asyncio.get_running_loop().time()
        if self._stopping.is_set():
            return True
        if delay <= 0:
            return False
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
            return True
        except TimeoutError:
            return False

    async def _scrape(self, state: TargetState) -> None:
        target = state.target
        scrape_ns = time.time_ns()
        started = time.monotonic()
        try:
            text, content_type = await self._unless_stopped(self._fetch(target))
            # Parsing a large exposition is pure Python: off the event loop, which serves other receivers.
            conversion = await asyncio.to_thread(_parse_and_convert, text, content_type, state, scrape_ns)
            error = None
        except ScrapeError as failure:
            conversion, error = Conversion(state.labels), failure
        conversion.add_scrape_series(scrape_ns, error is None, time.monotonic() - started)
        self._note(state, error, conversion)
        await self._pass_on(conversion.request)

    async def _fetch(self, target) -> tuple[str, str]:
        headers = {"Accept": ACCEPT, "X-Prometheus-Scrape-Timeout-Seconds": f"{target.timeout:g}"}
        try:
            async with self._session.get(target.url, params=list(target.params) or None, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=target.timeout),
                                         **request_options(self._tls.get(target.job), target.url)) as response:
                if response.status != 200:
                    raise ScrapeError(f"server returned HTTP status {response.status} {response.reason or ''}"
                                      .rstrip())
                body = await response.read()
                content_type = response.headers.get("Content-Type", "")
        except TimeoutError:
            raise ScrapeError(f"no answer within the scrape timeout ({target.timeout:g}s)") from None
        except aiohttp.ClientError as error:
            raise ScrapeError(f"cannot fetch: {error}") from None
        try:
            return body.decode("utf-8"), content_type
        except UnicodeDecodeError as error:
            raise ScrapeError(f"the exposition is not UTF-8: {error}") from None

    async def _unless_stopped(self, awaitable):
        """The awaitable's result; _Stopped (and the awaitable cancelled) once shutdown begins."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((work, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
        if work.cancelled():
            raise _Stopped()
        return work.result()

    def _note(self, state: TargetState, error: ScrapeError | None, conversion: Conversion) -> None:
        """Counts a failure; logs only when a target's state changes."""
        target = state.target
        fields = {"job": target.job, "target": target.address, "url": target.url}
        if error is not None:
            self._failed.labels(str(self.id), target.job).inc()
            if state.up is not False:
                self.log.warning("scrape failed", fields={**fields, "error": str(error)})
        elif state.up is False:
            self.log.info("scrape succeeded again", fields=fields)
        state.up = error is None
        if bool(conversion.skipped) != state.skipped:
            state.skipped = bool(conversion.skipped)
            if conversion.skipped:
                self.log.warning("left out malformed series", fields={
                    **fields, "count": len(conversion.skipped), "first": conversion.skipped[:5]})

    async def _pass_on(self, request) -> None:
        count = Signal.METRICS.count(request)
        try:
            await self.consumer.consume(request)
        except Exception as error:  # classified once, here at the edge
            self._refused.labels(str(self.id), TRANSPORT, type(error).__name__).inc(count)
            if isinstance(error, RelayError):
                self._refusals.warning("pipeline refused scraped metrics; dropped", {
                    "items": count, "error": str(error) or type(error).__name__})
            else:
                self.log.error("pipeline failed unexpectedly; scraped metrics dropped", exc_info=error,
                               fields={"items": count})
            return
        self._accepted.inc(count)


def _parse_and_convert(text: str, content_type: str, state: TargetState, scrape_ns: int) -> Conversion:
    try:
        families = parse(text, content_type)
    except Exception as error:  # noqa: BLE001 - the parser raises more than ValueError on bad input
        raise ScrapeError(f"cannot parse the exposition: {error}") from None
    return convert(families, state.labels, scrape_ns, state.starts)
