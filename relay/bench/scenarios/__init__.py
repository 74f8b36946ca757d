"""``genops-relay bench --scenario``: reliability figures from real processes on 127.0.0.1.

- ``outage``: the downstream is down for a stretch of a steady SDK stream.
- ``crash``: persistent queue; the relay is killed with SIGKILL mid-load and restarted.
- ``overload``: a slow downstream under sustained load, held by the memory limiter.

Each prints what was sent, acknowledged, delivered, missing and duplicated.
The tests in tests/e2e/test_reliability.py run the same functions and assert on
the same figures.
"""

from __future__ import annotations

import json

SCENARIOS = ("outage", "crash", "overload")


def run(name: str) -> dict:
    if name == "outage":
        from relay.bench.scenarios.outage import run as scenario
    elif name == "crash":
        from relay.bench.scenarios.crash import run as scenario
    else:
        from relay.bench.scenarios.overload import run as scenario
    return scenario()


def render(result: dict) -> str:
    width = max(map(len, result))
    return "\n".join(f"{key + ':':<{width + 2}} {json.dumps(value) if isinstance(value, dict) else value}"
                     for key, value in result.items())
