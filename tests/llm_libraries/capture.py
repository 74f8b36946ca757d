"""Record what each library really sends, as fixtures in proto_fixtures/libraries/.

    python3 -m tests.llm_libraries.capture [NAME ...]     # all five when no name is given

Each library's driver makes its three calls against the OpenRouter stand-in and exports
to a recording OTLP/HTTP endpoint. The export requests of one run are merged into one
ExportTraceServiceRequest, written as <name>.binpb and as OTLP/JSON <name>.json.
The venvs must exist (python3 -m tests.llm_libraries.venvs).
"""

from __future__ import annotations

import argparse
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from relay import otlpjson
from tests.llm_libraries.libraries import BUILD_COMMAND, BY_NAME, ROOT, Library
from tests.llm_libraries.otlp_sink import HttpTraceSink
from tests.llm_libraries.run import drive
from tests.llm_libraries.standin import StandIn

OUT = ROOT / "proto_fixtures" / "libraries"


def merged(requests: list[ExportTraceServiceRequest]) -> ExportTraceServiceRequest:
    """One request holding every resource_spans entry of ``requests``, in arrival order."""
    out = ExportTraceServiceRequest()
    for request in requests:
        out.resource_spans.extend(request.resource_spans)
    return out


def capture(library: Library) -> ExportTraceServiceRequest:
    with StandIn() as stand_in, HttpTraceSink() as sink:
        drive(library, stand_in.base_url, sink.endpoint)
        # The driver shut its provider down before exiting, which waits for every export's answer.
        if len(stand_in.calls) != 3:
            raise AssertionError(f"{library.name}: the stand-in answered {len(stand_in.calls)} calls, not 3")
        return merged(sink.requests)


def write(name: str, request: ExportTraceServiceRequest) -> None:
    text = otlpjson.encode(request, indent=2) + b"\n"
    if otlpjson.decode(text, ExportTraceServiceRequest) != request:
        raise AssertionError(f"{name}: the OTLP/JSON form does not decode to the binary request")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.binpb").write_bytes(request.SerializeToString(deterministic=True))
    (OUT / f"{name}.json").write_bytes(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(BY_NAME)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BY_NAME))
    if unknown:
        parser.error(f"unknown library {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    libraries = [BY_NAME[name] for name in args.names] or list(BY_NAME.values())
    missing = [library.name for library in libraries if not library.ready()]
    if missing:
        print(f"no venv for {', '.join(missing)}: run {BUILD_COMMAND}", file=sys.stderr)
        return 1
    for library in libraries:
        request = capture(library)
        write(library.name, request)
        spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        print(f"{library.name:16} {spans} spans -> {(OUT / library.name).relative_to(ROOT)}.binpb/.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
