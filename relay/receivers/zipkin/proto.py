"""Zipkin's ``zipkin.proto3`` messages: what a client posts to ``/api/v2/spans`` as
``application/x-protobuf`` (a ``ListOfSpans``).

Built from descriptors at import time rather than generated code, so the relay needs no Zipkin
package and no code generator. Names and field numbers are those of Zipkin's ``zipkin.proto``
(openzipkin/zipkin-api), so the bytes are what any Zipkin reporter sends. The messages live in
a private descriptor pool: a library that registers Zipkin's own generated file in the default
pool (the OpenTelemetry Zipkin exporter does) cannot clash with them.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from relay.protodesc import FieldDescriptor, add_fields, message_classes

PACKAGE = "zipkin.proto3"

_F = FieldDescriptor
_STRING, _BOOL, _BYTES, _MESSAGE, _ENUM = _F.TYPE_STRING, _F.TYPE_BOOL, _F.TYPE_BYTES, _F.TYPE_MESSAGE, _F.TYPE_ENUM
_FIXED64, _UINT64, _INT32 = _F.TYPE_FIXED64, _F.TYPE_UINT64, _F.TYPE_INT32

# (message, [(field, number, type, type name or None, repeated)]), in the order of zipkin.proto.
_MESSAGES = (
    ("Span", (("trace_id", 1, _BYTES, None, False),
              ("parent_id", 2, _BYTES, None, False),
              ("id", 3, _BYTES, None, False),
              ("kind", 4, _ENUM, ".zipkin.proto3.Span.Kind", False),
              ("name", 5, _STRING, None, False),
              ("timestamp", 6, _FIXED64, None, False),
              ("duration", 7, _UINT64, None, False),
              ("local_endpoint", 8, _MESSAGE, ".zipkin.proto3.Endpoint", False),
              ("remote_endpoint", 9, _MESSAGE, ".zipkin.proto3.Endpoint", False),
              ("annotations", 10, _MESSAGE, ".zipkin.proto3.Annotation", True),
              ("tags", 11, _MESSAGE, ".zipkin.proto3.Span.TagsEntry", True),
              ("debug", 12, _BOOL, None, False),
              ("shared", 13, _BOOL, None, False))),
    ("Endpoint", (("service_name", 1, _STRING, None, False),
                  ("ipv4", 2, _BYTES, None, False),
                  ("ipv6", 3, _BYTES, None, False),
                  ("port", 4, _INT32, None, False))),
    ("Annotation", (("timestamp", 1, _FIXED64, None, False),
                    ("value", 2, _STRING, None, False))),
    ("ListOfSpans", (("spans", 1, _MESSAGE, ".zipkin.proto3.Span", True),)),
    ("ReportResponse", ()),
)

# Span.Kind, by Zipkin's names.
KINDS = (("SPAN_KIND_UNSPECIFIED", 0), ("CLIENT", 1), ("SERVER", 2), ("PRODUCER", 3), ("CONSUMER", 4))


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="zipkin/relay_zipkin.proto", package=PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES:
        message = file.message_type.add(name=name)
        add_fields(message, fields)
        if name == "Span":
            kind = message.enum_type.add(name="Kind")
            for value_name, number in KINDS:
                kind.value.add(name=value_name, number=number)
            # map<string, string> tags: a nested entry message marked as a map entry.
            entry = message.nested_type.add(name="TagsEntry")
            entry.options.map_entry = True
            add_fields(entry, (("key", 1, _STRING, None, False), ("value", 2, _STRING, None, False)))
    return file


_CLASSES = message_classes(_file(), [name for name, _ in _MESSAGES])
Span = _CLASSES["Span"]
Endpoint = _CLASSES["Endpoint"]
Annotation = _CLASSES["Annotation"]
ListOfSpans = _CLASSES["ListOfSpans"]
KIND_NAMES = {number: name for name, number in KINDS}
