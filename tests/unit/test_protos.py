"""No name in the protos is a keyword of a language a caller may generate stubs in."""

from __future__ import annotations

import keyword
from collections.abc import Iterator

from customersegment.v1 import assignment_pb2, common_pb2, directory_pb2, segment_pb2
from google.protobuf.descriptor import Descriptor, FileDescriptor

FILES: list[FileDescriptor] = [
    module.DESCRIPTOR for module in (assignment_pb2, common_pb2, directory_pb2, segment_pb2)
]


# Reserved words that a generator would have to mangle (`from_`, `getFrom_()`), or that break
# the plain property access of generated code. Contextual keywords that are legal property
# names (TypeScript's `type`, `from`, `of`; Python's soft keywords) are not listed.
def _words(text: str) -> set[str]:
    return set(text.split())


GO = _words(
    "break case chan const continue default defer else fallthrough for func go goto if import "
    "interface map package range return select struct switch type var"
)
JAVA = _words(
    "abstract assert boolean break byte case catch char class const continue default do double "
    "else enum extends final finally float for goto if implements import instanceof int "
    "interface long native new package private protected public return short static strictfp "
    "super switch synchronized this throw throws transient try void volatile while true false "
    "null var yield record"
)
TYPESCRIPT = _words(
    "break case catch class const continue debugger default delete do else enum export extends "
    "false finally for function if import in instanceof new null return super switch this "
    "throw true try typeof var void while with implements interface let package private "
    "protected public static yield await"
)
KEYWORDS = set(keyword.kwlist) | GO | JAVA | TYPESCRIPT


def _messages(descriptors: list[Descriptor]) -> Iterator[Descriptor]:
    for descriptor in descriptors:
        yield descriptor
        yield from _messages(list(descriptor.nested_types))


def _names() -> Iterator[tuple[str, str]]:
    """(where, name) of every message, field, enum, enum value, service and method."""
    for file in FILES:
        for message in _messages(list(file.message_types_by_name.values())):
            yield file.name, message.name
            for field in message.fields:
                yield message.full_name, field.name
        for enum in file.enum_types_by_name.values():
            yield file.name, enum.name
            for value in enum.values:
                yield enum.full_name, value.name
        for service in file.services_by_name.values():
            yield file.name, service.name
            for method in service.methods:
                yield service.full_name, method.name


def test_no_name_is_a_keyword_in_python_go_java_or_typescript() -> None:
    names = list(_names())
    assert any(name == "legal_entity_id" for _, name in names)  # the walk sees fields
    clashes = [f"{where}.{name}" for where, name in names if name.lower() in KEYWORDS]
    assert clashes == []
