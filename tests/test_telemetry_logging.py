"""The relay's JSON logging: long client-supplied text is cut, aiohttp's lines are JSON and rate-limited."""

from __future__ import annotations

import io
import json
import logging

from aiohttp.http_exceptions import BadHttpMessage

from relay.telemetry import MAX_TEXT, setup_logging


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_client_quoted_in_a_message_cannot_write_megabytes():
    stream = io.StringIO()
    setup_logging("info", stream)
    logging.getLogger("relay.component").warning("refused: %s", "A" * 200_000)
    (entry,) = lines(stream)
    assert len(entry["msg"]) < MAX_TEXT + 100 and entry["msg"].endswith("more characters)")


def test_aiohttp_protocol_errors_are_json_warnings_at_most_once_a_second():
    stream = io.StringIO()
    setup_logging("info", stream)
    log = logging.getLogger("aiohttp.server")
    for _ in range(50):
        try:
            raise BadHttpMessage("Invalid method encountered: " + "\x0a\x80" + "A" * 100_000)
        except BadHttpMessage:
            log.exception("Error handling request from 127.0.0.1")
    entries = lines(stream)
    assert len(entries) == 1  # the other 49 are held back, and counted in the next line let through
    (entry,) = entries
    assert (entry["level"], entry["msg"]) == ("warning", "malformed HTTP request refused")
    assert "error" in entry and len(entry["error"]) < MAX_TEXT + 100
