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


def _copy_workspace(tmp_path: Path) -> Path:
    """buf.yaml and protos/ in `tmp_path`; answers the copy of segment.proto."""
    shutil.copy(ROOT / "buf.yaml", tmp_path)
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    return tmp_path / "protos" / "customersegment" / "v1" / "segment.proto"


def _changed(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path.name} any more: update this test"
    path.write_text(text.replace(old, new))


def test_buf_lint_refuses_what_the_standard_rules_forbid(tmp_path: Path) -> None:
    """buf.yaml must not switch off the rules that matter: an enum value without its enum's
    prefix, an RPC that shares its messages with another one, and a field without a comment."""
    segment_proto = _copy_workspace(tmp_path)
    _changed(segment_proto, "SEGMENT_STATUS_ACTIVE = 1;", "ACTIVE = 1;")
    # The new RPC takes GetSegment's comment; GetSegment gets one of its own.
    _changed(
        segment_proto,
        "  rpc GetSegment(",
        "  rpc FetchSegment(GetSegmentRequest) returns (GetSegmentResponse);\n"
        "  // One segment.\n"
        "  rpc GetSegment(",
    )
    _changed(segment_proto, "  // add, remove or replace.\n  string op = 1;", "  string op = 1;")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert 'Enum value name "ACTIVE" should be prefixed with "SEGMENT_STATUS_"' in result.stdout
    assert "is used as the request or response type for multiple RPCs" in result.stdout
    assert 'Field "op" should have a non-empty comment for documentation.' in result.stdout


def _breaking(directory: Path) -> subprocess.CompletedProcess[str]:
    """`buf breaking` of the protos in `directory` against the committed v1 baseline, as
    `make test` runs it (the Makefile says why through an image)."""
    image = directory / "current.binpb"
    subprocess.run(
        [str(_buf()), "build", "--exclude-source-info", "-o", str(image)],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return subprocess.run(
        [str(_buf()), "breaking", str(image), "--against", str(ROOT / "protos" / "v1.binpb")],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_protos_keep_the_v1_baseline(tmp_path: Path) -> None:
    _copy_workspace(tmp_path)
    result = _breaking(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_refuses_a_renamed_field(tmp_path: Path) -> None:
    """A renamed field keeps the wire format but breaks every caller's generated code and the
    JSON names: the baseline check must catch it."""
    segment_proto = _copy_workspace(tmp_path)
    _changed(segment_proto, "string site_code = 6;", "string site = 6;")
    result = _breaking(tmp_path)
    assert result.returncode != 0
    assert 'Field "6" on message "Segment" changed name from "site_code" to "site".' in (
        result.stdout
    )


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
