"""The subset of Jaeger's ``jaeger.api_v2`` protocol the relay speaks: what the ``jaeger``
exporter sends and the ``jaeger`` receiver's gRPC port takes.

Built from descriptors at import time rather than generated code, so the relay
needs no Jaeger package and no code generator. Field names and numbers are
those of Jaeger's ``model.proto`` and ``collector.proto``, so the bytes on the
wire are what a Jaeger collector's ``CollectorService/PostSpans`` expects.
The messages live in a private descriptor pool: another library that
registers Jaeger's own files in the default pool cannot clash with them.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, duration_pb2, timestamp_pb2

from relay.protodesc import FieldDescriptor, add_fields, message_classes

PACKAGE = "jaeger.api_v2"
SERVICE = f"{PACKAGE}.CollectorService"
POST_SPANS = f"/{SERVICE}/PostSpans"
DEFAULT_PORT = 14250

_F = FieldDescriptor
_STRING, _BOOL, _INT64, _UINT32 = _F.TYPE_STRING, _F.TYPE_BOOL, _F.TYPE_INT64, _F.TYPE_UINT32
_DOUBLE, _BYTES, _MESSAGE, _ENUM = _F.TYPE_DOUBLE, _F.TYPE_BYTES, _F.TYPE_MESSAGE, _F.TYPE_ENUM

# (message, [(field, number, type, type name or None, repeated)]), in the order of model.proto.
_MESSAGES = (
    ("KeyValue", (("key", 1, _STRING, None, False),
                  ("v_type", 2, _ENUM, ".jaeger.api_v2.ValueType", False),
                  ("v_str", 3, _STRING, None, False),
                  ("v_bool", 4, _BOOL, None, False),
                  ("v_int64", 5, _INT64, None, False),
                  ("v_float64", 6, _DOUBLE, None, False),
                  ("v_binary", 7, _BYTES, None, False))),
    ("Log", (("timestamp", 1, _MESSAGE, ".google.protobuf.Timestamp", False),
             ("fields", 2, _MESSAGE, ".jaeger.api_v2.KeyValue", True))),
    ("SpanRef", (("trace_id", 1, _BYTES, None, False),
                 ("span_id", 2, _BYTES, None, False),
                 ("ref_type", 3, _ENUM, ".jaeger.api_v2.SpanRefType", False))),
    ("Process", (("service_name", 1, _STRING, None, False),
                 ("tags", 2, _MESSAGE, ".jaeger.api_v2.KeyValue", True))),
    ("Span", (("trace_id", 1, _BYTES, None, False),
              ("span_id", 2, _BYTES, None, False),
              ("operation_name", 3, _STRING, None, False),
              ("references", 4, _MESSAGE, ".jaeger.api_v2.SpanRef", True),
              ("flags", 5, _UINT32, None, False),
              ("start_time", 6, _MESSAGE, ".google.protobuf.Timestamp", False),
              ("duration", 7, _MESSAGE, ".google.protobuf.Duration", False),
              ("tags", 8, _MESSAGE, ".jaeger.api_v2.KeyValue", True),
              ("logs", 9, _MESSAGE, ".jaeger.api_v2.Log", True),
              ("process", 10, _MESSAGE, ".jaeger.api_v2.Process", False),
              ("process_id", 11, _STRING, None, False),
              ("warnings", 12, _STRING, None, True))),
    ("Batch", (("spans", 1, _MESSAGE, ".jaeger.api_v2.Span", True),
               ("process", 2, _MESSAGE, ".jaeger.api_v2.Process", False))),
    ("PostSpansRequest", (("batch", 1, _MESSAGE, ".jaeger.api_v2.Batch", False),)),
    ("PostSpansResponse", ()),
)

_ENUMS = (
    ("ValueType", (("STRING", 0), ("BOOL", 1), ("INT64", 2), ("FLOAT64", 3), ("BINARY", 4))),
    ("SpanRefType", (("CHILD_OF", 0), ("FOLLOWS_FROM", 1))),
)


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="jaeger/api_v2/relay_subset.proto", package=PACKAGE, syntax="proto3",
        dependency=[timestamp_pb2.DESCRIPTOR.name, duration_pb2.DESCRIPTOR.name])
    for name, values in _ENUMS:
        enum = file.enum_type.add(name=name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    for name, fields in _MESSAGES:
        add_fields(file.message_type.add(name=name), fields)
    service = file.service.add(name="CollectorService")
    service.method.add(name="PostSpans", input_type=f".{PACKAGE}.PostSpansRequest",
                       output_type=f".{PACKAGE}.PostSpansResponse")
    return file


_CLASSES = message_classes(_file(), [name for name, _ in _MESSAGES],
                           (timestamp_pb2.DESCRIPTOR, duration_pb2.DESCRIPTOR))
KeyValue = _CLASSES["KeyValue"]
Log = _CLASSES["Log"]
SpanRef = _CLASSES["SpanRef"]
Process = _CLASSES["Process"]
Span = _CLASSES["Span"]
Batch = _CLASSES["Batch"]
PostSpansRequest = _CLASSES["PostSpansRequest"]
PostSpansResponse = _CLASSES["PostSpansResponse"]

# Enum values, by Jaeger's names.
STRING, BOOL, INT64, FLOAT64, BINARY = 0, 1, 2, 3, 4
CHILD_OF, FOLLOWS_FROM = 0, 1
