"""The q parser and the sort parameter."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from customer_segments.domain.errors import InvalidArgument
from customer_segments.domain.listing import Page, SortField, parse_sort
from customer_segments.query.parser import Searchable, parse_q
from customer_segments.query.regex import compile_regex
from customer_segments.query.syntax import (
    AnyOf,
    Compare,
    Field,
    FieldKind,
    IsNull,
    Matches,
    Operator,
    Presence,
)

KINDS = {
    "customerId": FieldKind.TEXT,
    "legalEntityId": FieldKind.TEXT,
    "customer.email": FieldKind.TEXT,
    "metadata.version": FieldKind.INTEGER,
    "metadata.createdAt": FieldKind.INSTANT,
}
FIELDS = Searchable(KINDS, frozenset({"mixins"}))
SORTABLE = frozenset(KINDS)


def field(name: str) -> Field:
    if name.startswith("mixins."):
        return Field(name, FieldKind.JSON, "mixins", tuple(name.split(".")[1:]))
    return Field(name, KINDS[name])


def test_equality_conditions_are_anded() -> None:
    assert parse_q(
        'customerId:c1  legalEntityId:"le 1" customer.email:"a\\"b"', FIELDS
    ).conditions == (
        Compare(field("customerId"), Operator.EQ, "c1"),
        Compare(field("legalEntityId"), Operator.EQ, "le 1"),
        Compare(field("customer.email"), Operator.EQ, 'a"b'),
    )


def test_every_form_of_the_syntax() -> None:
    q = (
        'customerId:(a,"b c", d) metadata.version:>=2 metadata.version:(>1 AND <=9) '
        'metadata.createdAt:<"2024-05-01T10:00:00.000Z" customer.email:~^a.+@x\\.com$ '
        "legalEntityId:(~with spaces) legalEntityId:null mixins.tier:exists mixins.a.b:missing "
        'mixins.vip:true mixins.n:2.5 mixins.m:-3 mixins.s:gold mixins.t:"20"'
    )
    conditions = parse_q(q, FIELDS).conditions
    version = field("metadata.version")
    assert conditions[:5] == (
        AnyOf(field("customerId"), ("a", "b c", "d")),
        Compare(version, Operator.GE, 2),
        Compare(version, Operator.GT, 1),
        Compare(version, Operator.LE, 9),
        Compare(field("metadata.createdAt"), Operator.LT, datetime(2024, 5, 1, 10, tzinfo=UTC)),
    )
    assert conditions[5] == Matches(field("customer.email"), compile_regex("^a.+@x\\.com$"))
    assert conditions[6] == Matches(field("legalEntityId"), compile_regex("with spaces"))
    assert conditions[7:] == (
        IsNull(field("legalEntityId")),
        Presence(field("mixins.tier"), True),
        Presence(field("mixins.a.b"), False),
        Compare(field("mixins.vip"), Operator.EQ, True),
        Compare(field("mixins.n"), Operator.EQ, Decimal("2.5")),
        Compare(field("mixins.m"), Operator.EQ, -3),
        Compare(field("mixins.s"), Operator.EQ, "gold"),
        Compare(field("mixins.t"), Operator.EQ, "20"),
    )


def test_empty_q_is_no_condition() -> None:
    assert parse_q("   ", FIELDS).conditions == ()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("nosuch:1", "position 1"),
        ("customerId:1 nosuch:1", "position 14"),
        ("customerId", "position 1"),
        ("customerId:", "position 12"),
        ('customerId:"open', "position 12"),
        ("customerId:(a,b", "position 16"),
        ("customerId:(a,)", "position 15"),
        ("metadata.version:>x", "position 19"),
        ("metadata.createdAt:>2024-13-01", "position 21"),
        ("metadata.version:~1", "position 18"),
        ("customerId:~a(b", "position 14"),
        ("customerId:~a{1000}", "position 14"),
        ("customerId:~(a*)*\\1", "position 18"),
        ("mixins.0bad:1", "position 8"),
        ("mixins.a..b:1", "position 10"),
        ("mixins.vip:>true", "position 13"),
        ('customerId:"a"b', "position 15"),
        ("customerId:a\x00", "position 13"),
        ("customerId:(>=a OR <b)", "position 17"),
    ],
)
def test_errors_point_at_the_problem(text: str, where: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_q(text, FIELDS)
    assert raised.value.field == "q" and where in raised.value.message, raised.value.message


@pytest.mark.parametrize(
    ("source", "postgresql", "re2"),
    [
        ("a.b", "a.b", "(?s)a.b"),
        ("\\d+x", "[0-9]+x", "(?s)[0-9]+x"),
        ("(ab|c){2,3}$", "(?:ab|c){2,3}$", "(?s)(?:ab|c){2,3}$"),
        ("[^a-c\\]-]", "[^a-c\\]\\-]", "(?s)[^a-c\\]\\-]"),
        ("x\\.y\\-", "x\\.y-", "(?s)x\\.y-"),
    ],
)
def test_regex_is_written_for_each_engine(source: str, postgresql: str, re2: str) -> None:
    regex = compile_regex(source)
    assert (regex.postgresql, regex.re2) == (postgresql, re2)


def test_conditions_are_limited() -> None:
    short = Searchable({"id": FieldKind.TEXT}, frozenset())
    assert len(parse_q(" ".join(["id:a"] * 500), short).conditions) == 500
    with pytest.raises(InvalidArgument, match="position 2501: at most 500 conditions"):
        parse_q(" ".join(["id:a"] * 501), short)


def test_sort() -> None:
    assert parse_sort("customerId:DESC, legalEntityId", SORTABLE) == [
        SortField("customerId", True),
        SortField("legalEntityId", False),
    ]
    assert parse_sort("", SORTABLE) == []
    for bad in ("nosuch", "customerId:up", "customerId,"):
        with pytest.raises(InvalidArgument):
            parse_sort(bad, SORTABLE)


def test_page_defaults_and_limits() -> None:
    assert Page.parse(0, 0) == Page(1, 60)
    assert Page.parse(3, 1000).offset == 2000
    for number, size in ((0, 1001), (-1, 10), (1, -5)):
        with pytest.raises(InvalidArgument):
            Page.parse(number, size)
