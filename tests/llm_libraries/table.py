"""Print, per captured fixture, the attributes of its LLM call spans as a Markdown table.

    python3 -m tests.llm_libraries.table [NAME ...]

The tables in proto_fixtures/libraries/README.md were made with this. A key's example value
comes from the cached-prompt call when that span has the key, so that cache counts show.
"""

from __future__ import annotations

import argparse
import json
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay import fixtures
from tests.llm_libraries.expectations import llm_spans
from tests.llm_libraries.libraries import BY_NAME

LONGEST = 90  # characters of an example value; message contents and JSON blobs run to kilobytes
WHOLE = ("gen_ai.usage.",)  # keys shown in full however long: Logfire's usage JSON holds the cost


def load(name: str) -> ExportTraceServiceRequest:
    return fixtures.load(f"libraries/{name}", ExportTraceServiceRequest)


def example(key: str, value) -> str:
    if isinstance(value, (list, tuple)):
        text = json.dumps(list(value))
    elif isinstance(value, str):
        text = json.dumps(value)
    else:
        text = repr(value)
    if len(text) > LONGEST and not key.startswith(WHOLE):
        text = text[:LONGEST] + "…"
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def table(name: str) -> str:
    found = llm_spans(name, [load(name)])
    order = {"cached": 0, "plain": 1, "stream": 2}
    found.sort(key=lambda span: order.get(span.kind, 3))
    keys: list[str] = []
    for span in found:
        keys += [key for key in span.attributes if key not in keys]
    lines = ["| key | example value | on calls |", "|---|---|---|"]
    for key in keys:
        having = [span for span in found if key in span.attributes]
        calls = ", ".join(sorted(span.kind or "?" for span in having))
        lines.append(f"| `{key}` | {example(key, having[0].attributes[key])} | {calls} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(BY_NAME)}")
    names = parser.parse_args(argv).names or list(BY_NAME)
    for name in names:
        print(f"### {name}\n\n{table(name)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
