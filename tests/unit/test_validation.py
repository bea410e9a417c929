"""Identifiers, tenants and exact JSON objects."""

from __future__ import annotations

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
