"""The protos pass `buf lint` with the committed buf.yaml, and no name in them is a keyword of
a language a caller may generate stubs in."""

from __future__ import annotations

import keyword
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from customersegment.v1 import assignment_pb2, common_pb2, directory_pb2, segment_pb2
from google.protobuf.descriptor import Descriptor, FileDescriptor

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"
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


def _buf() -> Path:
    if not BUF.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("buf is not installed (`make test` installs it with npm)")
        pytest.skip("buf is not installed: `make test` installs it where npm is present")
    return BUF


def _lint(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_buf()), "lint"], cwd=directory, capture_output=True, text=True, timeout=120
    )


def test_buf_lint_passes() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_refuses_what_the_standard_rules_forbid(tmp_path: Path) -> None:
    """buf.yaml must not switch off the rules that matter: an enum value without its enum's
    prefix, and an RPC that shares its messages with another one."""
    shutil.copy(ROOT / "buf.yaml", tmp_path)
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    segment_proto = tmp_path / "protos" / "customersegment" / "v1" / "segment.proto"
    text = segment_proto.read_text()
    text = text.replace("SEGMENT_STATUS_ACTIVE = 1;", "ACTIVE = 1;")
    text = text.replace(
        "rpc GetSegment(GetSegmentRequest) returns (GetSegmentResponse);",
        "rpc GetSegment(GetSegmentRequest) returns (GetSegmentResponse);\n"
        "  rpc FetchSegment(GetSegmentRequest) returns (GetSegmentResponse);",
    )
    segment_proto.write_text(text)
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert 'Enum value name "ACTIVE" should be prefixed with "SEGMENT_STATUS_"' in result.stdout
    assert "is used as the request or response type for multiple RPCs" in result.stdout


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
