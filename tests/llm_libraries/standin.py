"""A stand-in for OpenRouter's chat completions endpoint, on 127.0.0.1.

It answers ``POST /api/v1/chat/completions`` in OpenRouter's shape: a ``gen-...`` id,
the top-level ``provider``, and ``usage`` with token details and the billed ``cost``.
Streamed answers are server-sent events; the usage chunk comes last, and only when
``stream_options.include_usage`` asks for it, as OpenRouter does.

Every answer is recorded as a ``Call``, so a test can tell what each LLM span should say.
Token counts are fixed per kind of call and differ between kinds, and the billed cost
is at rates of its own (``BILLED``), so a cost priced by the relay can never be
mistaken for the one the provider reported.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.llm_libraries.loopback import LoopbackServer

MODEL = "openai/gpt-4o-mini"
PROVIDER = "OpenAI"
PATH = "/api/v1/chat/completions"
# A prompt that contains this marker is answered as if the provider's prompt cache hit.
CACHE_MARKER = "[cached-prompt]"

# USD per million tokens the stand-in bills at; deliberately unlike any rate a test configures.
BILLED = {"input": 0.37, "output": 1.13, "cache_read": 0.05}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float:
        uncached = self.prompt_tokens - self.cached_tokens
        return (uncached * BILLED["input"] + self.cached_tokens * BILLED["cache_read"]
                + self.completion_tokens * BILLED["output"]) / 1_000_000


# Counts as OpenAI reports them: cached tokens are part of prompt_tokens, reasoning
# tokens part of completion_tokens.
USAGE = {
    "plain": Usage(prompt_tokens=1200, completion_tokens=300, reasoning_tokens=64),
    "stream": Usage(prompt_tokens=850, completion_tokens=210),
    "cached": Usage(prompt_tokens=4096, completion_tokens=150, cached_tokens=3072),
}


@dataclass(frozen=True)
class Call:
    id: str
    kind: str          # a key of USAGE
    stream: bool
    include_usage: bool
    request_model: str
    usage: Usage


def usage_json(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cost": usage.cost,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens, "image_tokens": 0},
    }


def _kind(body: dict) -> str:
    text = json.dumps(body.get("messages", []))
    if CACHE_MARKER in text:
        return "cached"
    return "stream" if body.get("stream") else "plain"


class StandIn(LoopbackServer):
    """``start()`` binds a free port; ``calls`` lists every answered request, in order."""

    name = "openrouter-standin"

    def __init__(self):
        super().__init__()
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._serial = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def handler(self):
        return _handler(self)

    def record(self, body: dict) -> Call:
        kind = _kind(body)
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        # Unique per call, shaped like OpenRouter's generation ids.
        call_id = f"gen-{int(time.time())}-{next(self._serial):04d}{secrets.token_hex(8)}"
        call = Call(call_id, kind, stream, include_usage, str(body.get("model", "")), USAGE[kind])
        with self._lock:
            self.calls.append(call)
        return call

    def by_id(self) -> dict[str, Call]:
        with self._lock:
            return {call.id: call for call in self.calls}


def completion(call: Call, created: int) -> dict:
    return {
        "id": call.id, "provider": PROVIDER, "model": MODEL, "object": "chat.completion",
        "created": created, "system_fingerprint": "fp_standin",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop", "native_finish_reason": "stop",
                     "message": {"role": "assistant", "content": f"Answer to the {call.kind} call.",
                                 "refusal": None, "reasoning": None}}],
        "usage": usage_json(call.usage),
    }


def chunks(call: Call, created: int) -> list[dict]:
    def chunk(choices: list, **extra) -> dict:
        return {"id": call.id, "provider": PROVIDER, "model": MODEL, "object": "chat.completion.chunk",
                "created": created, "system_fingerprint": "fp_standin", "choices": choices, **extra}

    words = ["Answer ", "to the ", f"{call.kind} ", "call."]
    out = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                   "native_finish_reason": None, "logprobs": None}])]
    out += [chunk([{"index": 0, "delta": {"content": word}, "finish_reason": None,
                    "native_finish_reason": None, "logprobs": None}]) for word in words]
    out.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop", "native_finish_reason": "stop",
                       "logprobs": None}]))
    if call.include_usage:
        out.append(chunk([], usage=usage_json(call.usage)))
    return out


def _handler(standin: StandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # the base class's name
            pass  # a quiet test server; calls are in standin.calls

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if self.path.split("?")[0] != PATH:
                return self._send(404, {"error": {"code": 404, "message": f"no route {self.path}"}})
            try:
                body = json.loads(raw)
            except ValueError:
                return self._send(400, {"error": {"code": 400, "message": "body is not JSON"}})
            call = standin.record(body)
            created = int(time.time())
            if not call.stream:
                return self._send(200, completion(call, created))
            payload = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks(call, created))
            payload += b"data: [DONE]\n\n"
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _send(self, code: int, document: dict) -> None:
            data = json.dumps(document).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
