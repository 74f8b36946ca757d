"""Jaeger's wire formats, below the components that speak them: the ``jaeger.api_v2``
protobuf messages (``proto``) the exporter sends and the receiver takes, and the Thrift
``jaeger.thrift`` batches (``thrift``) Jaeger clients send over HTTP and UDP."""
