"""A recording OTLP/HTTP traces endpoint on 127.0.0.1, for capturing what a library really sends."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from relay import otlpjson
from tests.llm_libraries.loopback import LoopbackServer


class HttpTraceSink(LoopbackServer):
    """Accepts ``POST /v1/traces`` (protobuf or JSON, gzip or not); ``requests`` in arrival order."""

    name = "otlp-sink"

    def __init__(self):
        super().__init__()
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        self._cond = threading.Condition()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def handler(self):
        return _handler(self)

    def add(self, request: ExportTraceServiceRequest, content_type: str) -> None:
        with self._cond:
            self.requests.append(request)
            self.content_types.append(content_type)
            self._cond.notify_all()

    def spans(self) -> int:
        with self._cond:
            return sum(len(ss.spans) for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans)

    def wait_for_spans(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.spans() < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


def _handler(sink: HttpTraceSink):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # the base class's name
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.headers.get("content-encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            content_type = self.headers.get("content-type", "").split(";")[0].strip()
            if self.path != "/v1/traces":
                return self._answer(404, b"", "text/plain")
            if content_type == "application/json":
                request = otlpjson.decode(body, ExportTraceServiceRequest)
            else:
                request = ExportTraceServiceRequest.FromString(body)
            sink.add(request, content_type)
            self._answer(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

        def _answer(self, code: int, data: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
