"""The budget alert webhook against a real aiohttp hook on 127.0.0.1.

The hook runs on the test's own event loop, records every POST (headers and JSON
body) and answers what the test chose; while ``hang`` is set, its handler waits
until the test releases it. Backoff waits go through an injected sleep that
records the delay and returns at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry

from relay.config.decode import decode
from relay.ledger.events import BUDGET_EVENT
from relay.ledger.webhook import Webhook, WebhookConfig, payload, slack_message, summary
from relay.telemetry import JsonFormatter, SelfMetrics
from tests.support import free_port

NAME = "genops_ledger/alerts"

ALERT = {
    "event": BUDGET_EVENT, "team": "search", "period": "daily", "cost_usd": 8.1234, "budget_usd": 10.0,
    "threshold": 0.8, "utilization": 0.81234, "period_key": "2026-11-27",
    "timestamp": "2026-11-27T14:03:00Z",
}


# --- the hook ------------------------------------------------------------------------------

@dataclass
class Answer:
    status: int = 200
    body: str = ""
    headers: dict = field(default_factory=dict)


@dataclass
class Post:
    path: str
    headers: dict
    body: dict


class Hook:
    """A fake webhook. ``answers`` are used one per POST, then ``default``."""

    def __init__(self):
        self.posts: list[Post] = []
        self.answers: list[Answer] = []
        self.default = Answer()
        self.hang = False
        self.release = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.posts.append(Post(request.path, dict(request.headers), json.loads(await request.read())))
        answer = self.answers.pop(0) if self.answers else self.default
        if self.hang:
            await self.release.wait()
        return web.Response(status=answer.status, text=answer.body, headers=answer.headers)

    async def __aenter__(self) -> Hook:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.unhang()
        await self._runner.cleanup()

    def unhang(self) -> None:
        self.hang = False
        self.release.set()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


# --- harness -------------------------------------------------------------------------------

class Sleeps:
    """The injected backoff wait: records each delay, waits for nothing."""

    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def make_config(url: str, **settings) -> WebhookConfig:
    config, problems = decode(WebhookConfig, {"url": url, **settings})
    assert problems == [], problems
    return config


class Harness:
    def __init__(self, config: WebhookConfig):
        self.registry = CollectorRegistry()
        self.sleeps = Sleeps()
        # A clock that never moves: every rate-limited log line after the first is held back.
        self.webhook = Webhook(NAME, config, SelfMetrics(self.registry), clock=lambda: 1000.0,
                               sleep=self.sleeps)

    def sent(self) -> float:
        return self.registry.get_sample_value("otelcol_genops_webhook_sent_events_total", {"webhook": NAME}) or 0.0

    def dropped(self, reason: str) -> float:
        return self.registry.get_sample_value("otelcol_genops_webhook_dropped_events_total",
                                              {"webhook": NAME, "reason": reason}) or 0.0


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def deliver(event: dict, *answers: Answer, **settings) -> tuple[Harness, Hook]:
    """Notify ``event`` once and wait for its outcome (delivered or dropped)."""
    async def run():
        async with Hook() as hook:
            hook.answers = list(answers)
            h = Harness(make_config(hook.url(), **settings))
            await h.webhook.start()
            h.webhook.notify(event)
            await until(lambda: h.sent() + h.dropped("permanent") + h.dropped("retries_exhausted") == 1)
            await h.webhook.shutdown()
            return h, hook

    return asyncio.run(run())


def lines(caplog) -> list[str]:
    formatter = JsonFormatter()
    return [formatter.format(record) for record in caplog.records]


# --- config --------------------------------------------------------------------------------

def test_config_defaults():
    config = make_config("https://hooks.slack.com/services/T0/B0/x")
    assert (config.format, config.headers, config.timeout, config.max_queue) == ("generic", {}, 5.0, 1000)
    retry = config.retry
    assert (retry.max_attempts, retry.initial_interval, retry.max_interval, retry.multiplier) == (5, 1.0, 30.0, 2.0)


def test_config_problems_name_their_keys_and_never_quote_secrets():
    _, problems = decode(WebhookConfig, {"url": "https://hooks.example/x", "format": "teams"})
    assert [p.path for p in problems] == [("format",)]
    _, problems = decode(WebhookConfig, {
        "url": "ftp://hooks.example/services/SECRET-PATH", "timeout": "0s", "max_queue": 0,
        "headers": {"bad name": "x", "Authorization": "Bearer SECRET-TOKEN\r\nX: y"}})
    assert {p.path for p in problems} == {
        ("url",), ("timeout",), ("max_queue",), ("headers", "bad name"), ("headers", "Authorization")}
    text = "\n".join(str(p) for p in problems)
    assert "SECRET" not in text and "hooks.example" in text
    _, problems = decode(WebhookConfig, {"url": "https://hooks.example/x", "retry": {
        "max_attempts": 0, "initial_interval": "2s", "max_interval": "1s", "multiplier": 0.5}})
    assert {p.path for p in problems} == {("retry", "max_attempts"), ("retry", "max_interval"),
                                          ("retry", "multiplier")}
    _, problems = decode(WebhookConfig, {"url": "https://user:pw@hooks.example/x#SECRET-FRAGMENT",
                                         "headers": {"Authorization": "Basic SECRET"}})
    assert {p.path for p in problems} == {("url",), ("headers", "Authorization")}
    assert "SECRET" not in "\n".join(str(p) for p in problems)
    _, problems = decode(WebhookConfig, {})
    assert [(p.path, p.message) for p in problems] == [(("url",), "required key is missing")]


# --- payloads ------------------------------------------------------------------------------

def test_generic_payload_is_the_event_as_json_with_the_configured_headers():
    h, hook = deliver(ALERT, headers={"X-Team-Token": "abc"})
    [post] = hook.posts
    assert post.body == ALERT and post.path == "/hook"
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["X-Team-Token"] == "abc"
    assert post.headers["User-Agent"].startswith("genops-relay/")
    assert h.sent() == 1 and h.webhook.queued == 0


def test_slack_payload_has_a_one_line_text_and_a_field_table():
    h, hook = deliver(ALERT, format="slack")
    [post] = hook.posts
    text = ":warning: Budget alert: team search reached 80% of its daily budget ($8.12 of $10.00, 2026-11-27)"
    assert post.body["text"] == text
    [attachment] = post.body["attachments"]
    assert attachment["color"] == "warning" and attachment["fallback"] == text
    assert attachment["fields"] == [{"title": key, "value": str(value), "short": True}
                                    for key, value in ALERT.items() if key != "event"]
    assert h.sent() == 1


def test_summary_lines():
    over = {**ALERT, "project": "web", "customer": "acme", "period": "monthly", "period_key": "2026-11",
            "threshold": 1.0, "cost_usd": 1234.5, "budget_usd": 1000}
    assert summary(over) == (":rotating_light: Budget alert: team search (project web, customer acme) reached "
                             "100% of its monthly budget ($1,234.50 of $1,000.00, 2026-11)")
    early = {**ALERT, "threshold": 0.5, "cost_usd": 0.004, "budget_usd": 0.008}
    assert summary(early).startswith(":information_source: Budget alert: team search reached 50% ")
    assert "($0.0040 of $0.0080, 2026-11-27)" in summary(early)
    failover = {"event": "openrouter_provider_failover", "original_provider": "openai",
                "fallback_provider": "azure", "model": "openai/gpt-4o", "reason": "fallback_used",
                "team": "search", "timestamp": "2026-11-27T14:03:00Z"}
    assert summary(failover) == (":twisted_rightwards_arrows: Provider failover: model openai/gpt-4o went to "
                                 "azure instead of openai (fallback_used, team search)")
    # Without the fields its sentence needs, any event reads as its title and leading fields.
    partial = {"event": "openrouter_provider_failover", "team": "search", "model": "m", "region": "eu"}
    assert summary(partial) == ":information_source: Provider failover: team=search, model=m, region=eu"
    assert summary({"event": "cache_warmed", "entries": 3}) == ":information_source: Cache warmed: entries=3"
    # A budget event missing what its sentence needs reads as a generic line, not an error.
    assert summary({"event": BUDGET_EVENT, "team": "x"}) == ":information_source: Budget alert: team=x"
    # The ledger's own event: empty project and customer stay out of the line and the table.
    ledger = {**ALERT, "project": "", "customer": "", "budget": "search", "daily_cost_usd": 8.1234}
    assert summary(ledger) == summary(ALERT)
    titles = [f["title"] for f in slack_message(ledger)["attachments"][0]["fields"]]
    assert "project" not in titles and "customer" not in titles and "daily_cost_usd" in titles


def test_slack_text_escapes_markup_and_json_has_no_nan():
    event = {**ALERT, "team": "<!channel> & co", "utilization": float("inf")}
    message = slack_message(event)
    assert "&lt;!channel&gt; &amp; co" in message["text"] and "<!channel>" not in json.dumps(message)
    body = json.loads(payload(event, "generic"))  # strict JSON: Infinity would not be
    assert body["utilization"] == "inf"


# --- retries -------------------------------------------------------------------------------

def test_a_500_is_retried_and_the_event_delivered_once():
    h, hook = deliver(ALERT, Answer(500, "oops"))
    assert [post.body for post in hook.posts] == [ALERT, ALERT]
    assert h.sent() == 1 and h.dropped("retries_exhausted") == 0
    assert h.sleeps.delays == [1.0]


def test_429_retry_after_is_honoured():
    h, hook = deliver(ALERT, Answer(429, headers={"Retry-After": "7"}), Answer(503))
    assert len(hook.posts) == 3 and h.sent() == 1
    # The hook's 7 s, then the backoff's own 2 s (1 s doubled).
    assert h.sleeps.delays == [7.0, 2.0]


def test_a_retry_after_longer_than_max_interval_waits_max_interval():
    h, hook = deliver(ALERT, Answer(503, headers={"Retry-After": "3600"}))
    assert len(hook.posts) == 2 and h.sent() == 1
    assert h.sleeps.delays == [30.0]  # an alert an hour late is worth little


def test_retries_back_off_exponentially_up_to_max_attempts_then_drop(component_log):
    h, hook = deliver(ALERT, *[Answer(503)] * 4,
                      retry={"max_attempts": 4, "initial_interval": "1s", "max_interval": "3s"})
    assert len(hook.posts) == 4
    assert h.sleeps.delays == [1.0, 2.0, 3.0]
    assert h.dropped("retries_exhausted") == 1 and h.sent() == 0
    [record] = [r for r in component_log.records if "gave up" in r.getMessage()]
    assert record.fields["attempts"] == 4 and record.fields["error"].startswith("HTTP 503")


def test_a_400_is_dropped_counted_and_logged(component_log):
    h, hook = deliver(ALERT, Answer(400, "invalid_payload\nmore"))
    assert len(hook.posts) == 1 and h.sleeps.delays == []
    assert h.dropped("permanent") == 1 and h.sent() == 0
    [record] = [r for r in component_log.records if "refused" in r.getMessage()]
    assert record.fields["status"] == "400" and record.fields["error"] == "HTTP 400: invalid_payload"
    assert record.component == NAME


# --- a webhook that is down or hangs -------------------------------------------------------

def test_a_hook_that_is_down_never_blocks_notify(component_log):
    async def run():
        h = Harness(make_config(f"http://127.0.0.1:{free_port()}/hook", max_queue=5,
                                retry={"max_attempts": 2}))
        await h.webhook.start()
        for seq in range(1000):
            h.webhook.notify({**ALERT, "seq": seq})
        await until(lambda: h.dropped("retries_exhausted") == 5)
        await h.webhook.shutdown()
        return h

    h = asyncio.run(run())
    assert h.dropped("queue_full") == 995 and h.dropped("shutdown") == 0 and h.sent() == 0
    assert h.sleeps.delays == [1.0] * 5
    full = [r for r in component_log.records if "queue full" in r.getMessage()]
    assert len(full) == 1 and full[0].fields["max_queue"] == 5  # rate-limited, not 995 lines


def test_a_hanging_hook_never_blocks_notify_and_a_full_queue_drops_the_oldest():
    async def run():
        async with Hook() as hook:
            hook.hang = True
            h = Harness(make_config(hook.url(), max_queue=100, timeout="30s"))
            await h.webhook.start()
            h.webhook.notify({**ALERT, "seq": 0})
            await until(lambda: len(hook.posts) == 1)  # the sender now waits on the hook
            for seq in range(1, 1001):
                h.webhook.notify({**ALERT, "seq": seq})
            # All 1000 calls returned while the hook still held the first request unanswered.
            still_hung = (len(hook.posts), h.sent())
            dropped_while_hung = h.dropped("queue_full")
            hook.unhang()
            await until(lambda: h.sent() == 101)
            await h.webhook.shutdown()
            return h, hook, still_hung, dropped_while_hung

    h, hook, still_hung, dropped_while_hung = asyncio.run(run())
    assert still_hung == (1, 0)
    assert dropped_while_hung == 900 and h.dropped("queue_full") == 900
    assert [post.body["seq"] for post in hook.posts] == [0] + list(range(901, 1001))


def test_a_hanging_attempt_ends_at_the_timeout_and_is_retried():
    async def run():
        async with Hook() as hook:
            hook.hang = True
            h = Harness(make_config(hook.url(), timeout="200ms"))
            await h.webhook.start()
            h.webhook.notify(ALERT)
            await until(lambda: len(hook.posts) >= 1 and h.sleeps.delays)
            hook.unhang()
            await until(lambda: h.sent() == 1)
            await h.webhook.shutdown()
            return h, hook

    h, hook = asyncio.run(run())
    assert h.sleeps.delays[0] == 1.0 and len(hook.posts) == len(h.sleeps.delays) + 1


def test_notify_from_another_thread_and_never_raises():
    async def run():
        async with Hook() as hook:
            h = Harness(make_config(hook.url()))
            await h.webhook.start()
            h.webhook.notify(None)   # not an event: logged, not raised
            h.webhook.notify("text")
            thread = threading.Thread(target=h.webhook.notify, args=({**ALERT, "seq": 1},))
            thread.start()
            thread.join(timeout=5)
            await until(lambda: h.sent() == 1)
            await h.webhook.shutdown()
            return h, hook

    h, hook = asyncio.run(run())
    assert [post.body.get("seq") for post in hook.posts] == [1]
    assert h.dropped("permanent") == 2 and h.webhook.queued == 0


# --- shutdown ------------------------------------------------------------------------------

def test_shutdown_delivers_what_is_queued_within_the_grace():
    async def run():
        async with Hook() as hook:
            h = Harness(make_config(hook.url()))
            # Queued before start too: the events wait for the sender.
            h.webhook.notify({**ALERT, "seq": 0})
            await h.webhook.start()
            for seq in range(1, 5):
                h.webhook.notify({**ALERT, "seq": seq})
            await h.webhook.shutdown(grace=10.0)
            return h, hook

    h, hook = asyncio.run(run())
    assert [post.body["seq"] for post in hook.posts] == [0, 1, 2, 3, 4]
    assert h.sent() == 5 and h.dropped("shutdown") == 0


def test_shutdown_counts_what_the_grace_did_not_deliver(component_log):
    async def run():
        async with Hook() as hook:
            hook.hang = True
            h = Harness(make_config(hook.url(), timeout="30s"))
            await h.webhook.start()
            for seq in range(3):
                h.webhook.notify({**ALERT, "seq": seq})
            await until(lambda: len(hook.posts) == 1)
            # The hook never answers: shutdown gives up when its 0.3 s grace ends (delivery
            # within the grace is shown by the test above).
            await asyncio.wait_for(h.webhook.shutdown(grace=0.3), 5.0)
            h.webhook.notify(ALERT)  # after shutdown: dropped at once
            return h

    h = asyncio.run(run())
    assert h.dropped("shutdown") == 4 and h.sent() == 0  # the one in flight, two queued, one late
    [record] = [r for r in component_log.records if "undelivered" in r.getMessage()]
    assert record.fields["dropped"] == 3


# --- secrets -------------------------------------------------------------------------------

def test_header_values_and_the_url_path_never_reach_the_logs(component_log):
    token, key, path = "Bearer SECRET-TOKEN-123", "KEY-456-SECRET", "/services/T0/B0/HOOK-SECRET"

    async def run():
        async with Hook() as hook:
            # A hook that echoes the credential in its refusal, as some do.
            hook.answers = [Answer(401, f"bad credential {token}")]
            headers = {"Authorization": token, "X-Api-Key": key}
            h = Harness(make_config(hook.url(path), headers=headers, format="slack"))
            await h.webhook.start()
            h.webhook.notify(ALERT)
            await until(lambda: h.dropped("permanent") == 1)
            await h.webhook.shutdown()
            down = Harness(make_config(f"http://127.0.0.1:{free_port()}{path}", headers=headers,
                                       retry={"max_attempts": 2}))
            await down.webhook.start()
            down.webhook.notify(ALERT)
            await until(lambda: down.dropped("retries_exhausted") == 1)
            await down.webhook.shutdown()
            return hook

    hook = asyncio.run(run())
    assert hook.posts[0].headers["Authorization"] == token and hook.posts[0].headers["X-Api-Key"] == key
    logged = "\n".join(lines(component_log))
    assert "refused" in logged and "gave up" in logged and "ready" in logged
    for secret in ("SECRET-TOKEN-123", "KEY-456-SECRET", "HOOK-SECRET"):
        assert secret not in logged
