"""OpenTelemetry Python's Jaeger exporters (Thrift and protobuf/gRPC), the real clients the
jaeger receiver is tested with. They are retired and pin an old SDK, so they live in a
virtualenv of their own (``venv``), driven as subprocesses (``drive``)."""
