"""The q parser (equality subset) and the sort parameter."""

from __future__ import annotations

import pytest

from customer_segments.domain.errors import InvalidArgument
from customer_segments.domain.listing import Page, SortField, parse_sort
from customer_segments.query.q_parser import Equals, parse_q

FIELDS = frozenset({"customerId", "legalEntityId", "customer.email"})


def test_equality_conditions_are_anded() -> None:
    assert parse_q('customerId:c1  legalEntityId:"le 1" customer.email:"a\\"b"', FIELDS) == [
        Equals("customerId", "c1"),
        Equals("legalEntityId", "le 1"),
        Equals("customer.email", 'a"b'),
    ]


def test_empty_q_is_no_condition() -> None:
    assert parse_q("   ", FIELDS) == []


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("nosuch:1", "position 1"),
        ("customerId:1 nosuch:1", "position 14"),
        ("customerId", "position 1"),
        ("customerId:", "position 12"),
        ('customerId:"open', "position 12"),
        ("customerId:>3", "position 12"),
    ],
)
def test_errors_point_at_the_problem(text: str, where: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_q(text, FIELDS)
    assert raised.value.field == "q" and where in raised.value.message


def test_sort() -> None:
    assert parse_sort("customerId:DESC, legalEntityId", FIELDS) == [
        SortField("customerId", True),
        SortField("legalEntityId", False),
    ]
    assert parse_sort("", FIELDS) == []
    for bad in ("nosuch", "customerId:up", "customerId,"):
        with pytest.raises(InvalidArgument):
            parse_sort(bad, FIELDS)


def test_page_defaults_and_limits() -> None:
    assert Page.parse(0, 0) == Page(1, 60)
    assert Page.parse(3, 1000).offset == 2000
    for number, size in ((0, 1001), (-1, 10), (1, -5)):
        with pytest.raises(InvalidArgument):
            Page.parse(number, size)
