"""Five real instrumentation libraries from PyPI, each in its own venv, through a relay process.

For each library: the openai client makes three calls (plain, streamed, cached prompt) to the
OpenRouter stand-in; the library exports its spans over OTLP/HTTP to a relay running
otlp -> genops -> otlp; a recording sink gets what the relay sent on. Every LLM call span
must carry the library's team (from OTEL_RESOURCE_ATTRIBUTES) and the cost the library's
attributes allow (tests/llm_libraries/expectations.py). The venvs are built by
``python3 -m tests.llm_libraries.venvs`` (.ci/run does it before pytest).
"""

from __future__ import annotations

import os

import pytest
import yaml

from relay.signals import Signal
from tests.llm_libraries import expectations
from tests.llm_libraries.expectations import EXPECTATIONS, llm_spans
from tests.llm_libraries.libraries import BUILD_COMMAND, BY_NAME, Library
from tests.llm_libraries.run import drive
from tests.llm_libraries.standin import StandIn
from tests.support import RelayProcess, free_port


def relay_config(grpc_port: int, http_port: int, health_port: int, sink_endpoint: str) -> str:
    return yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                             "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        "processors": {"genops": expectations.GENOPS_SETTINGS},
        "exporters": {"otlp": {"endpoint": sink_endpoint, "tls": {"insecure": True}}},
        "extensions": {"health_check": {"endpoint": f"127.0.0.1:{health_port}"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["genops"], "exporters": ["otlp"]}},
            "telemetry": {"metrics": {"level": "none"}},
        },
    }, sort_keys=False)


def require_venv(library: Library) -> None:
    if library.ready():
        return
    message = f"no virtualenv for {library.name} (.venvs/{library.name}): build it with `{BUILD_COMMAND}`"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{message}; .ci/run builds them before pytest, so under CI this is a failure")
    pytest.skip(message)


@pytest.mark.parametrize("name", list(EXPECTATIONS))
def test_library_spans_leave_the_relay_attributed_and_priced(name, tmp_path, sink):
    library = BY_NAME[name]
    require_venv(library)
    http_port, health_port = free_port(), free_port()
    relay = RelayProcess(relay_config(free_port(), http_port, health_port, sink.endpoint), tmp_path,
                         health_port).start()
    try:
        with StandIn() as stand_in:
            drive(library, stand_in.base_url, f"http://127.0.0.1:{http_port}/v1/traces")
    finally:
        # A clean stop delivers everything the relay acknowledged before it exits.
        code = relay.stop()
    assert code == 0, relay.log_text()
    requests = sink.requests[Signal.TRACES]

    assert [call.kind for call in stand_in.calls] == ["plain", "stream", "cached"]
    id_key = EXPECTATIONS[name].response_id_key
    if id_key:
        calls = stand_in.by_id()
        for span in llm_spans(name, requests):
            call = calls.get(span.attributes.get(id_key))
            assert call is not None and call.kind == span.kind, (
                f"{span.kind} call span {span.name!r}: {id_key}={span.attributes.get(id_key)!r} is not "
                f"the stand-in's {span.kind} call")
    assert expectations.problems(name, requests) == []
