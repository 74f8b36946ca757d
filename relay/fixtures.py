"""Access to the recorded OTLP payloads in ``proto_fixtures/``.

An installed package carries them as ``relay/_fixtures/`` (``setup.py`` copies them there);
a source checkout has them beside the ``relay`` package; else the working directory may.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = ["fixtures_dir", "load", "request_class_for"]

_DIR_NAME = "proto_fixtures"

# Fixture names carry their signal as a prefix, so callers rarely need to say.
_PREFIXES = (
    ("traces", ExportTraceServiceRequest),
    ("metrics", ExportMetricsServiceRequest),
    ("logs", ExportLogsServiceRequest),
)


def fixtures_dir() -> Path:
    """The ``proto_fixtures`` directory; FileNotFoundError if neither place has it."""
    candidates = (
        Path(__file__).resolve().parent / "_fixtures",
        Path(__file__).resolve().parent.parent / _DIR_NAME,
        Path.cwd() / _DIR_NAME,
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"no recorded payloads in the relay package, nor a {_DIR_NAME}/ directory beside it or in the "
        "working directory "
        f"(looked in: {', '.join(str(c) for c in candidates)})"
    )


def request_class_for(name: str) -> type[Message]:
    """The Export*ServiceRequest class a fixture named ``name`` holds."""
    for prefix, request_class in _PREFIXES:
        if name.startswith(prefix):
            return request_class
    raise ValueError(
        f"cannot tell the signal of fixture {name!r}: its name must start with "
        + ", ".join(repr(prefix) for prefix, _ in _PREFIXES)
    )


def load(name: str, signal_request_class: type[Message] | None = None) -> Message:
    """Parse ``proto_fixtures/<name>.binpb`` into its request message.

    The class is chosen from the name's prefix unless given explicitly.
    """
    name = name.removesuffix(".binpb")
    request_class = signal_request_class or request_class_for(name)
    path = fixtures_dir() / f"{name}.binpb"
    if not path.is_file():
        raise FileNotFoundError(f"no fixture named {name!r} ({path} does not exist)")
    message = request_class()
    message.ParseFromString(path.read_bytes())
    return message
