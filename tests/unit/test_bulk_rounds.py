"""The rounds a bulk chunk is written in: the n-th occurrence of a key in round n."""

from __future__ import annotations

from customer_segments.domain.assignment import AssignmentKey, AssignmentWrite
from customer_segments.services.bulk_assignments import _rounds


def _writes(*customer_ids: str) -> list[tuple[int, AssignmentWrite]]:
    return [
        (index, AssignmentWrite(AssignmentKey("t", "s", customer_id, ""), {}, {}, "{}", "{}", None))
        for index, customer_id in enumerate(customer_ids, start=1)
    ]


def _customers(rounds: list[list[tuple[int, AssignmentWrite]]]) -> list[list[tuple[int, str]]]:
    return [[(index, write.key.customer_id) for index, write in items] for items in rounds]


def test_distinct_keys_are_one_round_in_request_order() -> None:
    writes = _writes("c", "a", "b")
    assert _rounds(writes) == [writes]


def test_repeated_keys_go_to_later_rounds_in_order() -> None:
    """The general path, beside the shortcut above: one key repeated among distinct ones."""
    assert _customers(_rounds(_writes("a", "b", "a", "c", "a", "b"))) == [
        [(1, "a"), (2, "b"), (4, "c")],
        [(3, "a"), (6, "b")],
        [(5, "a")],
    ]


def test_the_same_customer_for_two_legal_entities_is_not_a_repeat() -> None:
    b2c, b2b = _writes("a", "a")
    b2b = (2, b2b[1]._replace(key=b2b[1].key._replace(legal_entity_id="le")))
    assert _rounds([b2c, b2b]) == [[b2c, b2b]]
