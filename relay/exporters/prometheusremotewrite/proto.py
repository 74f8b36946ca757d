"""The remote write 1.0 messages (package ``prometheus``), built from descriptors here.

Only what a 1.0 sender writes: WriteRequest, TimeSeries, Label, Sample and
MetricMetadata, with the field numbers of Prometheus' ``prompb``. They live in a pool
of their own, so no other ``prometheus.*`` definition loaded in the process can clash.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto

# MetricMetadata.MetricType
UNKNOWN, COUNTER, GAUGE, HISTOGRAM, GAUGEHISTOGRAM, SUMMARY, INFO, STATESET = range(8)
_METRIC_TYPES = ("UNKNOWN", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM", "SUMMARY", "INFO", "STATESET")


def _field(message, name: str, number: int, type_: int, *, repeated: bool = False, type_name: str = "") -> None:
    field = message.field.add(name=name, number=number, type=type_,
                              label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:
        field.type_name = type_name


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="relay/prometheus_remote_write.proto",
                                              package="prometheus", syntax="proto3")

    write = file.message_type.add(name="WriteRequest")
    _field(write, "timeseries", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.TimeSeries")
    # Field 2 is reserved by the spec (it was an unused field of Cortex's).
    write.reserved_range.add(start=2, end=3)
    _field(write, "metadata", 3, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.MetricMetadata")

    series = file.message_type.add(name="TimeSeries")
    _field(series, "labels", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Label")
    _field(series, "samples", 2, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Sample")

    label = file.message_type.add(name="Label")
    _field(label, "name", 1, _F.TYPE_STRING)
    _field(label, "value", 2, _F.TYPE_STRING)

    sample = file.message_type.add(name="Sample")
    _field(sample, "value", 1, _F.TYPE_DOUBLE)
    _field(sample, "timestamp", 2, _F.TYPE_INT64)  # milliseconds since the epoch

    metadata = file.message_type.add(name="MetricMetadata")
    kinds = metadata.enum_type.add(name="MetricType")
    for number, name in enumerate(_METRIC_TYPES):
        kinds.value.add(name=name, number=number)
    _field(metadata, "type", 1, _F.TYPE_ENUM, type_name=".prometheus.MetricMetadata.MetricType")
    _field(metadata, "metric_family_name", 2, _F.TYPE_STRING)
    _field(metadata, "help", 4, _F.TYPE_STRING)
    _field(metadata, "unit", 5, _F.TYPE_STRING)
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _message(name: str):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"prometheus.{name}"))


WriteRequest = _message("WriteRequest")
TimeSeries = _message("TimeSeries")
Label = _message("Label")
Sample = _message("Sample")
MetricMetadata = _message("MetricMetadata")
