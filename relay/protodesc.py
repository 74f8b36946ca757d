"""Protobuf message classes built from descriptors at import time, for the wire formats the
relay speaks without a generated package (Jaeger's ``api_v2``, Zipkin's ``zipkin.proto3``).

Each file gets a private descriptor pool, so a library that registers the project's own
generated file in the default pool cannot clash with it. A field is written as
``(name, number, type, type name or None, repeated)``, in the order of the ``.proto``.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

FieldDescriptor = descriptor_pb2.FieldDescriptorProto


def add_fields(message: descriptor_pb2.DescriptorProto, fields) -> None:
    """Adds ``fields`` to ``message``, a message of a FileDescriptorProto being built."""
    for name, number, type_, type_name, repeated in fields:
        field = message.field.add(name=name, number=number, type=type_,
                                  label=FieldDescriptor.LABEL_REPEATED if repeated else FieldDescriptor.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name


def message_classes(file: descriptor_pb2.FileDescriptorProto, names, dependencies=()) -> dict[str, type]:
    """The classes of the messages ``names`` of ``file`` (top-level, by their short names), from a
    pool of their own holding ``dependencies`` (the generated modules' DESCRIPTORs) and ``file``."""
    pool = descriptor_pool.DescriptorPool()
    for dependency in dependencies:
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(dependency.serialized_pb))
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{name}"))
            for name in names}
