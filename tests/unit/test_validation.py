"""Identifiers, tenants and exact JSON objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from customer_segments.domain import validation
from customer_segments.domain.errors import InvalidArgument


@pytest.mark.parametrize("tenant", ["abc", "a12", "abcdefghijklmnop"])
def test_valid_tenants(tenant: str) -> None:
    assert validation.tenant(tenant) == tenant


@pytest.mark.parametrize("tenant", ["", "ab", "Abc", "1ab", "ab-c", "abcdefghijklmnopq", "abc\n"])
def test_invalid_tenants(tenant: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        validation.tenant(tenant)
    assert raised.value.field == "tenant"


def test_json_object_keeps_integers_exact() -> None:
    parsed = validation.json_object(
        '{"a":20,"b":20.0,"c":123456789012345678901234567890}', "mixins"
    )
    assert type(parsed["a"]) is int and type(parsed["b"]) is float
    assert parsed["c"] == 123456789012345678901234567890
    assert validation.dump_json(parsed) == '{"a":20,"b":20.0,"c":123456789012345678901234567890}'


def test_json_object_empty_text_is_empty_object() -> None:
    assert validation.json_object("", "mixins") == {}


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "1",
        "null",
        "{",
        '{"a":NaN}',
        '{"a":Infinity}',
        '{"a":-1e400}',
        '{"a":"\\u0000"}',
        '{"a":"\\uDFFF"}',
    ],
)
def test_json_object_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        validation.json_object(text, "mixins_json")
    assert raised.value.field == "mixins_json"


def test_json_object_accepts_paired_surrogates() -> None:
    assert validation.json_object('{"a":"\\ud83d\\udc4b"}', "m") == {"a": "👋"}


def _outcome(parse: Callable[[str], Any], text: str) -> tuple[str, Any]:
    try:
        return "value", parse(text)
    except (ValueError, RecursionError) as error:
        return type(error).__name__, str(error)


@pytest.mark.parametrize(
    "text",
    [
        '{"a":{"b":"PREMIUM"}}',
        "{}",
        '{"a":1.5e3,"b":[1,2,{"c":null}],"d":true}',
        '{"a":123456789012345678901234567890}',
        ' {"a":1}',
        '{"a":1} ',
        '{"a":1}\n',
        '{"a":1}{"b":2}',
        '{"a":1}x',
        "{",
        '{"a"}',
        '{"a":NaN}',
        '{"a":-1e400}',
        '{"a":"\x01"}',
        '{"a":"\\u0000"}',
        "[1]",
        "1",
        "",
        '{"a":' + "[" * 5000 + "]" * 5000 + "}",
    ],
)
def test_json_scanned_straight_away_as_decode_answers(text: str) -> None:
    """The fast path of json_value (a document starting with "{", scanned without decode's
    wrapper) answers or fails exactly as the decoder does, error wording included."""
    general = _outcome(validation._DECODER.decode, text)
    assert _outcome(validation._decoded, text) == general


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"a":1}{"b":2}', "is not valid JSON (Extra data: line 1 column 8 (char 7))"),
        ('{"a":NaN}', "is not valid JSON (NaN is not valid JSON)"),
        ('{"a":"\\u0000"}', "must not contain the NUL character (\\u0000)"),
        ('{"a":"\\uDFFF"}', "must not contain unpaired surrogates"),
        ('{"a":' + "[" * 5000 + "]" * 5000 + "}", validation.TOO_DEEP),
        ('{"a":' + "[" * 70 + "]" * 70 + "}", validation.TOO_DEEP),
    ],
)
def test_json_object_problems_read_as_before(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        validation.json_object(text, "mixins_json")
    assert (raised.value.field, raised.value.problem) == ("mixins_json", problem)


def _object_outcome(parse: Callable[[str, str], Any], text: str) -> tuple[str, Any]:
    try:
        return "value", parse(text, "mixins_json")
    except InvalidArgument as error:
        return "invalid", (error.field, error.problem)


def _object_through_json_value(text: str, field: str) -> dict[str, Any]:
    """json_object without its fast path: json_value, then the object check."""
    if not text:
        return {}
    value = validation.json_value(text, field)
    if not isinstance(value, dict):
        raise InvalidArgument(field, "must be a JSON object")
    return value


def _nested(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


@pytest.mark.parametrize(
    "text",
    [
        '{"segmentAttributes":{"membershipStatus":"PREMIUM"}}',
        "{}",
        '{"a":1.5e3,"b":[1,2,{"c":null}],"d":true}',
        '{"a":123456789012345678901234567890}',
        '{"a":"{[{["}',
        ' {"a":1}',
        '{"a":1} ',
        '{"a":1}{"b":2}',
        '{"a":1},{}',
        "{",
        '{"a"}',
        '{"a":NaN}',
        '{"a":Infinity}',
        '{"a":-1e400}',
        '{"a":"\x01"}',
        '{"a":"\\u0000"}',
        '{"a":"\\uDFFF"}',
        '{"a":"\\ud83d\\udc4b"}',
        '{"a":"\\n"}',
        "[1]",
        "1",
        "",
        _nested(validation.MAX_JSON_DEPTH - 1),
        _nested(validation.MAX_JSON_DEPTH),
        _nested(validation.MAX_JSON_DEPTH + 1),
        '{"a":' + "[" * 5000 + "]" * 5000 + "}",
    ],
)
def test_json_object_fast_path_answers_as_json_value(text: str) -> None:
    """json_object's step for the common document answers or refuses exactly as json_value
    and the object check do, problem wording included."""
    general = _object_outcome(_object_through_json_value, text)
    assert _object_outcome(validation.json_object, text) == general


@pytest.mark.parametrize(
    "value", ["c1", "x", " a", "a ", "a\tb", "a\x00", "", "x" * 255, "x" * 256, "é€👋", "\x7f"]
)
def test_identifier_answers_as_the_checks_one_by_one(value: str) -> None:
    def general(text: str, field: str) -> str:
        if not text:
            raise InvalidArgument(field, "is required")
        return validation.optional_identifier(text, field)

    assert _object_outcome(validation.identifier, value) == _object_outcome(general, value)
