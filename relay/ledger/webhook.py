"""The budget alert webhook: ledger events (a budget threshold crossed, a provider
failover) POSTed as JSON to a Slack incoming webhook or any HTTP endpoint.

``notify`` only appends to a bounded in-memory queue, so a webhook that is down or
hangs never slows the ledger: one background task sends the events one at a time,
each attempt bounded by ``timeout``. 5xx, 429 and answers that never came are
retried (``relay.status.RETRYABLE_WEBHOOK``) by the shared retry sender
(``relay.retry``), with exponential backoff (a ``Retry-After`` is honoured, up to
``max_interval``: an alert an hour late is worth little), at most
``retry.max_attempts`` attempts in all; every other status is permanent (a 3xx
too: redirects are not followed). A full queue drops its OLDEST event: of two
alerts, the newer crossing says more. Every event not delivered is counted by
reason and logged, rate-limited.

Header values and the URL's path and query are never logged: both carry the
secret of a Slack webhook.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict

from relay import status
from relay.config.decode import Duration
from relay.errors import PermanentError, Problem, RetryableError
from relay.ledger.events import BUDGET_EVENT, FAILOVER_EVENT
from relay.net.endpoints import display_url, url_problem
from relay.net.headers import clean as clean_headers
from relay.net.headers import warn_stripped
from relay.net.http_client import header_problems, user_agent
from relay.net.tls import ClientTLS, TLSClientConfig, request_options
from relay.retry import RetryConfig, RetrySender, Stopper
from relay.status import retry_after_from_http
from relay.telemetry import Throttled, component_logger

DROP_REASONS = ("queue_full", "permanent", "retries_exhausted", "shutdown")

# Only the first bytes of an error answer are read: enough for a reason to log.
ANSWER_BYTES = 512
LOG_INTERVAL = 10.0


@dataclass
class WebhookRetry:
    max_attempts: int = 5
    initial_interval: Duration = Duration(1.0)
    max_interval: Duration = Duration(30.0)
    multiplier: float = 2.0

    def validate(self) -> list[Problem]:
        problems = []
        if self.max_attempts < 1:
            problems.append(Problem(("max_attempts",), "must be at least 1"))
        if self.initial_interval <= 0:
            problems.append(Problem(("initial_interval",), "must be positive"))
        if self.max_interval < self.initial_interval:
            problems.append(Problem(("max_interval",), "must not be below initial_interval"))
        if self.multiplier < 1:
            problems.append(Problem(("multiplier",), "must be at least 1"))
        return problems


@dataclass
class WebhookConfig:
    url: str
    format: Literal["slack", "generic"] = "generic"
    headers: dict[str, str] = field(default_factory=dict)
    timeout: Duration = Duration(5.0)
    max_queue: int = 1000
    retry: WebhookRetry = field(default_factory=WebhookRetry)
    # For an https:// URL: the collector's TLS client keys (a private CA, mutual TLS).
    tls: TLSClientConfig = field(default_factory=TLSClientConfig)

    def validate(self) -> list[Problem]:
        problems = []
        if not self.url:
            problems.append(Problem(("url",), "required: an http:// or https:// URL"))
        elif message := url_problem(self.url):
            # url_problem quotes the URL; a webhook's path is its secret.
            problems.append(Problem(("url",), message.replace(display_url(self.url), safe_url(self.url) + "/…")))
        credentials_in_url = "@" in _netloc(self.url)
        problems += header_problems(self.headers, credentials_in_url)
        if self.timeout <= 0:
            # Every attempt must end: a hung webhook would otherwise hold the queue for ever.
            problems.append(Problem(("timeout",), "must be positive"))
        if self.max_queue < 1:
            problems.append(Problem(("max_queue",), "must be at least 1"))
        return problems


def _netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:
        return ""


def safe_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, fit for logs: no credentials, path or query."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(unparsable URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


# --- payloads ------------------------------------------------------------------------------

TITLES = {
    BUDGET_EVENT: "Budget alert",
    FAILOVER_EVENT: "Provider failover",
}
# Shown in a generic summary line at most; the attachment carries every field.
SUMMARY_FIELDS = 6
SUMMARY_VALUE_CHARS = 60


def payload(event: dict, fmt: str) -> bytes:
    """The request body for ``event``: the event itself (generic) or a Slack message."""
    body = slack_message(event) if fmt == "slack" else event
    return json.dumps(_plain(body), ensure_ascii=False, default=str).encode()


def slack_message(event: dict) -> dict:
    """``text`` alone is what every Slack incoming webhook takes; the attachment adds
    each field of the event in a table, colored by severity."""
    text = _slack_escape(summary(event))
    fields = [{"title": str(key), "value": _slack_escape(str(value)), "short": True}
              for key, value in event.items() if key != "event" and value not in ("", None)]
    return {"text": text,
            "attachments": [{"color": _color(event), "fallback": text, "fields": fields}]}


def summary(event: dict) -> str:
    """One human line for ``event``: the budget alert in words, any other event as its
    title and leading fields."""
    name = str(event.get("event") or "event")
    line = None
    if name == BUDGET_EVENT:
        line = _budget_line(event)
    elif name == FAILOVER_EVENT:
        line = _failover_line(event)
    if line:
        return line
    title = TITLES.get(name) or name.replace("_", " ").strip().capitalize()
    shown = [(key, value) for key, value in event.items()
             if key not in ("event", "timestamp") and isinstance(value, (str, int, float, bool))
             and value != ""]
    parts = [f"{key}={_clip(str(value))}" for key, value in shown[:SUMMARY_FIELDS]]
    if len(shown) > SUMMARY_FIELDS:
        parts.append("…")
    return f":information_source: {title}" + (f": {', '.join(parts)}" if parts else "")


def _budget_line(event: dict) -> str | None:
    threshold = _number(event.get("threshold"))
    if threshold is None:
        threshold = _number(event.get("utilization"))
    if threshold is None:
        return None
    period = str(event.get("period") or "").strip()
    details = []
    cost, budget = _number(event.get("cost_usd")), _number(event.get("budget_usd"))
    if cost is not None and budget is not None:
        details.append(f"{_usd(cost)} of {_usd(budget)}")
    elif cost is not None:
        details.append(f"{_usd(cost)} spent")
    if event.get("period_key"):
        details.append(str(event["period_key"]))
    tail = f" ({', '.join(details)})" if details else ""
    return (f"{_icon(threshold)} Budget alert: {_subject(event)} reached {_percent(threshold)} "
            f"of its {period + ' ' if period else ''}budget{tail}")


def _failover_line(event: dict) -> str | None:
    original, fallback = event.get("original_provider"), event.get("fallback_provider")
    if not original or not fallback:
        return None
    model = f" {event['model']}" if event.get("model") else ""
    notes = [str(event[key]) for key in ("reason",) if event.get(key)]
    notes += [f"team {event['team']}"] if event.get("team") else []
    tail = f" ({', '.join(notes)})" if notes else ""
    return f":twisted_rightwards_arrows: Provider failover: model{model} went to {fallback} instead of {original}{tail}"


def _subject(event: dict) -> str:
    team = str(event.get("team") or "")
    scope = [f"{key} {event[key]}" for key in ("project", "customer") if event.get(key)]
    if team:
        return f"team {team}" + (f" ({', '.join(scope)})" if scope else "")
    if scope:
        return ", ".join(scope)
    if event.get("budget"):
        return f"budget {event['budget']}"
    return "a budget"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _percent(ratio: float) -> str:
    return f"{round(ratio * 100, 2):g}%"


def _usd(amount: float) -> str:
    # Sub-cent spend (a handful of cheap calls) would read "$0.00" with two decimals.
    if 0 < abs(amount) < 0.01:
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


def _icon(ratio: float) -> str:
    if ratio >= 1:
        return ":rotating_light:"
    if ratio >= 0.8:
        return ":warning:"
    return ":information_source:"


def _color(event: dict) -> str:
    if event.get("event") != BUDGET_EVENT:
        return "#439FE0"
    ratio = _number(event.get("threshold")) or _number(event.get("utilization")) or 0.0
    return "danger" if ratio >= 1 else "warning" if ratio >= 0.8 else "#439FE0"


def _clip(text: str) -> str:
    return text if len(text) <= SUMMARY_VALUE_CHARS else text[:SUMMARY_VALUE_CHARS - 1] + "…"


def _slack_escape(text: str) -> str:
    # Slack reads <...> as links and mentions; these three are the ones it asks to escape.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(value: Any) -> Any:
    """``value`` with non-finite floats as strings: JSON has no NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- the sender ----------------------------------------------------------------------------

class Webhook:
    """A queue of events and the one task that delivers them.

    ``notify`` may be called from any thread, before ``start`` too (the events wait).
    ``clock`` paces the rate-limited logs; ``sleep`` is the wait between attempts.
    """

    def __init__(self, id_or_name, config: WebhookConfig, telemetry, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep):
        self.name = str(id_or_name)
        self.config = config
        self.log = component_logger(id_or_name)
        self.where = safe_url(config.url)
        self._sleep = sleep
        self._sent = telemetry.counter(
            "otelcol_genops_webhook_sent_events", "Events a budget webhook delivered",
            ["webhook"]).labels(self.name)
        dropped = telemetry.counter(
            "otelcol_genops_webhook_dropped_events", "Events a budget webhook did not deliver, by reason",
            ["webhook", "reason"])
        self._dropped = {reason: dropped.labels(self.name, reason) for reason in DROP_REASONS}
        self._drop_logs = {reason: Throttled(self.log, LOG_INTERVAL, clock) for reason in DROP_REASONS}
        # What error texts must never carry into a log line.
        self._secrets = sorted({v.rstrip("\r\n") for v in config.headers.values() if v.rstrip("\r\n")} | {config.url},
                               key=len, reverse=True)
        # The lock makes "full? drop the oldest, append" one step for callers on other threads.
        self._lock = threading.Lock()
        self._queue: deque[dict] = deque()
        self._inflight: dict | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tls: ClientTLS | None = None
        self._closing = False  # shutdown began: the sender drains the queue, then ends
        self._closed = False   # shutdown ended: events are dropped as they come

    @property
    def queued(self) -> int:
        """Events waiting, the one being sent included."""
        return len(self._queue) + (self._inflight is not None)

    async def start(self) -> None:
        if self._task is not None or self._closed:
            return
        headers = CIMultiDict({"User-Agent": user_agent()})
        configured, _, stripped = clean_headers(self.config.headers, grpc=False)
        warn_stripped(self.log, stripped)
        for key, value in configured.items():
            headers[key] = value  # replaces, case-insensitively: a configured User-Agent wins
        headers["Content-Type"] = "application/json"
        if self.config.url.startswith("https://"):
            self._tls = ClientTLS(self.config.tls, log=self.log)  # a bad file fails the start
        self._session = aiohttp.ClientSession(
            headers=headers, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=float(self.config.timeout)))
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._queue:
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name=f"webhook {self.name}")
        self.log.info("budget webhook ready", fields={"url": self.where, "format": self.config.format})

    async def shutdown(self, grace: float = 2.0) -> None:
        """Deliver what is queued within ``grace`` seconds; what is left is dropped and counted."""
        self._closing = True
        task = self._task
        if task is not None:
            self._wake.set()
            done, _ = await asyncio.wait({task}, timeout=max(grace, 0.0))
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._closed = True
        with self._lock:
            left = len(self._queue) + (self._inflight is not None)
            self._queue.clear()
            self._inflight = None
        if left:
            self._dropped["shutdown"].inc(left)
            self.log.warning("budget webhook stopped with events undelivered", fields={
                "url": self.where, "dropped": left, "grace_seconds": grace})
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def notify(self, event: dict) -> None:
        """Queue ``event`` for delivery. O(1); never blocks, never raises."""
        try:
            item = dict(event)
            if self._closed:
                self._drop("shutdown", "budget webhook is stopped: event dropped", {"event": _name(item)})
                return
            with self._lock:
                oldest = self._queue.popleft() if len(self._queue) >= self.config.max_queue else None
                self._queue.append(item)
            if oldest is not None:
                self._drop("queue_full", "budget webhook queue full: dropped the oldest event", {
                    "event": _name(oldest), "max_queue": self.config.max_queue})
            self._wake_sender()
        except Exception as error:  # noqa: BLE001 - a failed alert must not fail the ledger
            try:
                self._drop("permanent", "budget webhook could not queue an event", {
                    "error": self._scrub(f"{type(error).__name__}: {error}")})
            except Exception:  # noqa: BLE001 - nothing is left to report with
                pass

    def _wake_sender(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return  # not started: start() finds the queue
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    async def _run(self) -> None:
        while True:
            with self._lock:
                event = self._inflight = self._queue.popleft() if self._queue else None
            if event is None:
                if self._closing:
                    return
                self._wake.clear()
                if not self._queue:
                    await self._wake.wait()
                continue
            try:
                await self._deliver(event)
            except Exception as error:  # noqa: BLE001 - one bad event must not end the sender
                self._drop("permanent", "budget webhook failed on an event; dropped", {
                    "event": _name(event), "error": self._scrub(f"{type(error).__name__}: {error}")})
            # Cleared only here: an event cut off by shutdown's cancel is still counted there.
            self._inflight = None

    async def _deliver(self, event: dict) -> None:
        poster = _Poster(self)
        try:
            await self._retry(poster).send(payload(event, self.config.format))
        except PermanentError as failure:
            self._drop("permanent", "budget webhook refused an event; dropped", {
                "event": _name(event), "url": self.where, "status": failure.status,
                "error": self._scrub(str(failure))})
        except RetryableError as error:
            self._drop("retries_exhausted", "budget webhook gave up on an event", {
                "event": _name(event), "url": self.where, "attempts": poster.attempts,
                "error": self._scrub(str(error.__cause__ or error))})
        else:
            self._sent.inc()

    def _retry(self, poster) -> RetrySender:
        """The shared retry sender, without jitter, bounded by attempts; a ``Retry-After`` is
        waited up to ``max_interval``."""
        retry = self.config.retry
        backoff = RetryConfig(initial_interval=retry.initial_interval, max_interval=retry.max_interval,
                              multiplier=retry.multiplier, randomization_factor=0.0,
                              max_elapsed_time=Duration(0.0))

        async def wait(delay: float) -> bool:
            await self._sleep(delay)
            return False  # shutdown cancels the sender's task instead

        return RetrySender(poster, backoff, Stopper(), wait=wait, max_attempts=retry.max_attempts,
                           hint_limit=float(retry.max_interval))

    async def _post(self, body: bytes) -> Exception | None:
        """None on a 2xx; otherwise the failure, classified."""
        session = self._session
        try:
            async with session.post(self.config.url, data=body, allow_redirects=False,
                                    **request_options(self._tls, self.config.url)) as answer:
                code = answer.status
                retry_after = retry_after_from_http(answer.headers.get("Retry-After"))
                text = ""
                if code >= 300:
                    text = (await answer.content.read(ANSWER_BYTES)).decode("utf-8", "replace")
        except (aiohttp.ClientError, OSError) as error:  # OSError covers TimeoutError
            if isinstance(error, TimeoutError):
                return RetryableError(f"no answer within {float(self.config.timeout):g}s")
            return RetryableError(f"could not post: {type(error).__name__}: {error}")
        if 200 <= code < 300:
            return None
        lines = text.strip().splitlines()
        message = f"HTTP {code}" + (f": {_clip(lines[0])}" if lines else "")
        if 300 <= code < 400:
            message += " (a redirect; redirects are not followed: configure the final URL)"
        return status.classify_http(code, message, retry_after, status.RETRYABLE_WEBHOOK)

    def _drop(self, reason: str, message: str, fields: dict) -> None:
        self._dropped[reason].inc()
        self._drop_logs[reason].warning(message, fields)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, self.where if secret == self.config.url else "***")
        return text


class _Poster:
    """The webhook's POST as a sender: what the retry sender tries again."""

    def __init__(self, webhook: Webhook):
        self.webhook = webhook
        self.attempts = 0

    async def send(self, body: bytes) -> None:
        self.attempts += 1
        failure = await self.webhook._post(body)
        if failure is not None:
            raise failure


def _name(event: dict) -> str:
    return str(event.get("event") or "")
