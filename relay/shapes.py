"""A metrics request's shape: each resource and each data point's attributes, as raw bytes.

Components that act on data points mostly see the same services send the same series export
after export, so what a point's attributes decide can be kept and reused, if it can be told
cheaply that they are the same as last time. Walking every attribute through the protobuf
runtime would cost more than the work saved. Instead the request's wire form is parsed with
a schema of our own that keeps nothing but each resource and each point's attributes, as raw
bytes, which compare as one value. What the schema does not name is unknown to it and
discarded after parsing; its oneof is the real one, so a metric's kind reads as in the real
message (``metric.histogram.data_points[i].attributes``, and so on).
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from relay import received


def _request_type():
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="relay/metric_shapes.proto", package="relay.shapes",
                                              syntax="proto3")

    def message(name, *fields):
        m = file.message_type.add(name=name)
        for field_name, number, kind, in_oneof in fields:
            field = m.field.add(name=field_name, number=number, label=f.LABEL_REPEATED)
            if kind == "bytes":
                field.type = f.TYPE_BYTES
            else:
                field.type, field.type_name = f.TYPE_MESSAGE, f".relay.shapes.{kind}"
            if in_oneof:
                if not m.oneof_decl:
                    m.oneof_decl.add(name="data")
                field.label, field.oneof_index = f.LABEL_OPTIONAL, 0

    # The attributes' field numbers of NumberDataPoint, HistogramDataPoint and ExponentialHistogramDataPoint
    # (SummaryDataPoint's is NumberDataPoint's, 7).
    for name, number in (("NumberPoint", 7), ("HistogramPoint", 9), ("ExponentialPoint", 1)):
        message(name, ("attributes", number, "bytes", False))
    for name, point in (("Gauge", "NumberPoint"), ("Sum", "NumberPoint"), ("Histogram", "HistogramPoint"),
                        ("ExponentialHistogram", "ExponentialPoint"), ("Summary", "NumberPoint")):
        message(name, ("data_points", 1, point, False))
    message("Metric", ("gauge", 5, "Gauge", True), ("sum", 7, "Sum", True), ("histogram", 9, "Histogram", True),
            ("exponential_histogram", 10, "ExponentialHistogram", True), ("summary", 11, "Summary", True))
    message("ScopeMetrics", ("metrics", 2, "Metric", False))
    message("ResourceMetrics", ("resource", 1, "bytes", False), ("scope_metrics", 2, "ScopeMetrics", False))
    message("Request", ("resource_metrics", 1, "ResourceMetrics", False))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("relay.shapes.Request"))


SHAPES = _request_type()


def shapes_of(request, data: bytes | None = None):
    """The resources of ``request`` as ``SHAPES`` reads its wire form (``data``, else the bytes it
    arrived as, else its serialization); None if they do not line up with the request."""
    if data is None:
        data = received.raw_bytes(request)
    try:
        view = SHAPES.FromString(request.SerializeToString() if data is None else data)
    except DecodeError:
        return None
    view.DiscardUnknownFields()
    return view.resource_metrics if len(view.resource_metrics) == len(request.resource_metrics) else None
