"""Search, sort and paging agree with a plain in-memory evaluation of the same query.

One random but fixed set of assignments (with directory entries and mixins of every JSON type)
is loaded once per database; hypothesis then draws queries in the full q syntax, sorts and
page sizes, and checks offset pages, the cursor walk forwards and the walk back against the
evaluation of the parsed query in Python (RE2 for the regular expressions, as on SQLite; the
PostgreSQL half thereby checks that its engine agrees).
"""

from __future__ import annotations

import asyncio
import functools
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
import pytest_asyncio
import re2
from customersegment.v1 import assignment_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from customer_segments.domain.errors import InvalidArgument
from customer_segments.domain.listing import Page, parse_sort
from customer_segments.domain.principal import Principal, Scope
from customer_segments.query.parser import parse_q
from customer_segments.query.syntax import (
    AnyOf,
    Compare,
    Condition,
    Field,
    IsNull,
    Matches,
    Operator,
    Presence,
    Query,
    Scalar,
)
from customer_segments.services.assignments import list_assignments
from customer_segments.services.segments import list_segments
from customer_segments.store.assignments import SEARCHABLE, SORT_FIELD_NAMES
from customer_segments.store.database import StatementTimedOut
from customer_segments.store.segments import SEARCHABLE as SEGMENT_SEARCHABLE
from customer_segments.store.segments import SORT_FIELD_NAMES as SEGMENT_SORT_FIELD_NAMES
from customer_segments.store.store import Store
from customer_segments.store.tables import (
    customer_assignments,
    customers,
    legal_entities,
    segments,
)
from tests.conftest import Stubs

SEGMENT = "big"
START = datetime(2024, 1, 1, tzinfo=UTC)
CUSTOMER_IDS = [f"c{n:02d}" for n in range(40)] + ["Ab-1", "ab_2", "zé", "x.y"]
LEGAL_ENTITY_IDS = ["le1", "le2", "LE3"]
NAMES = ["Anna", "anna", "Bob", "Émile", "Zoë", "ann", "Carl"]
TIERS = ["gold", "silver", "bronze", "Gold"]


def reader(tenant: str) -> Principal:
    """The use cases take the caller; a reader of the tenant sees all of it."""
    return Principal(tenant, frozenset({Scope.READ.value}))


@dataclass(frozen=True)
class Row:
    customer_id: str
    legal_entity_id: str
    assignment_type: str
    mixins: dict[str, Any]
    version: int
    created_at: datetime
    modified_at: datetime
    first_name: str | None
    last_name: str | None
    email: str | None
    legal_entity_name: str | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.customer_id, self.legal_entity_id)


def _mixins(rng: random.Random) -> dict[str, Any]:
    mixins: dict[str, Any] = {}
    if rng.random() < 0.8:
        mixins["tier"] = rng.choice(TIERS)
    if rng.random() < 0.7:
        mixins["score"] = rng.choice([rng.randint(-5, 100), round(rng.uniform(-5, 100), 1)])
    if rng.random() < 0.6:
        mixins["vip"] = rng.choice([True, False, None])
    if rng.random() < 0.5:
        mixins["nested"] = {"level": rng.choice([1, 2, 3, "3", "high"])}
    elif rng.random() < 0.2:
        mixins["nested"] = rng.choice([["level"], "flat", 7])
    if rng.random() < 0.5:
        mixins["since"] = (START + timedelta(days=rng.randint(0, 400))).strftime("%Y-%m-%d")
    return mixins


def make_rows(seed: int = 20261127) -> list[Row]:
    rng = random.Random(seed)
    directory = {
        customer_id: (
            rng.choice([*NAMES, None]),
            rng.choice([*NAMES, None]),
            rng.choice([f"{customer_id}@example.com", None]),
        )
        for customer_id in CUSTOMER_IDS
        if rng.random() < 0.6
    }
    legal_entity_names = {"le1": "Acme", "LE3": "acme"}
    rows: dict[tuple[str, str], Row] = {}
    for _ in range(130):
        customer_id = rng.choice(CUSTOMER_IDS)
        legal_entity_id = rng.choice(["", "", *LEGAL_ENTITY_IDS])
        created = START + timedelta(minutes=rng.randint(0, 50), milliseconds=rng.randint(0, 999))
        first, last, email = directory.get(customer_id, (None, None, None))
        rows[(customer_id, legal_entity_id)] = Row(
            customer_id,
            legal_entity_id,
            rng.choice(["MANUAL", "MANUAL", "AUTOMATIC"]),
            _mixins(rng),
            rng.randint(1, 4),
            created,
            created + timedelta(minutes=rng.choice([0, 0, 5, 30])),
            first,
            last,
            email,
            legal_entity_names.get(legal_entity_id),
        )
    return list(rows.values())


ROWS = make_rows()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def loaded(store: Store) -> tuple[Store, str]:
    tenant = "p" + secrets.token_hex(6)
    now = datetime.now(UTC)
    async with store.write() as connection:
        await connection.execute(
            insert(segments),
            {
                "tenant": tenant,
                "id": SEGMENT,
                "name": {"en": "Big"},
                "description": {},
                "status": "ACTIVE",
                "site_code": "main",
                "mixins": {},
                "metadata_mixins": {},
                "version": 1,
                "created_at": now,
                "modified_at": now,
            },
        )
        await connection.execute(
            insert(customer_assignments),
            [
                {
                    "tenant": tenant,
                    "segment_id": SEGMENT,
                    "customer_id": row.customer_id,
                    "legal_entity_id": row.legal_entity_id,
                    "assignment_type": row.assignment_type,
                    "mixins": row.mixins,
                    "metadata_mixins": {},
                    "version": row.version,
                    "created_at": row.created_at,
                    "modified_at": row.modified_at,
                }
                for row in ROWS
            ],
        )
        people = {
            row.customer_id: row
            for row in ROWS
            if (row.first_name, row.last_name, row.email) != (None, None, None)
        }
        if people:
            await connection.execute(
                insert(customers),
                [
                    {
                        "tenant": tenant,
                        "id": row.customer_id,
                        "first_name": row.first_name,
                        "last_name": row.last_name,
                        "email": row.email,
                    }
                    for row in people.values()
                ],
            )
        await connection.execute(
            insert(legal_entities),
            [
                {"tenant": tenant, "id": "le1", "name": "Acme"},
                {"tenant": tenant, "id": "LE3", "name": "acme"},
            ],
        )
    return store, tenant


# --- the in-memory evaluation ---

ABSENT = object()
PLAIN: dict[str, Callable[[Row], Any]] = {
    "customerId": lambda row: row.customer_id,
    "customer.id": lambda row: row.customer_id,
    "legalEntityId": lambda row: row.legal_entity_id or None,
    "legalEntity.id": lambda row: row.legal_entity_id or None,
    "assignmentType": lambda row: row.assignment_type,
    "customer.firstName": lambda row: row.first_name,
    "customer.lastName": lambda row: row.last_name,
    "customer.email": lambda row: row.email,
    "legalEntity.name": lambda row: row.legal_entity_name,
    "metadata.createdAt": lambda row: row.created_at,
    "metadata.modifiedAt": lambda row: row.modified_at,
    "metadata.version": lambda row: row.version,
}
# What sorting sees: the stored legal entity id, "" for B2C.
SORTED: dict[str, Callable[[Row], Any]] = {
    **PLAIN,
    "legalEntityId": lambda row: row.legal_entity_id,
    "legalEntity.id": lambda row: row.legal_entity_id,
}
CANONICAL = {"customer.id": "customerId", "legalEntity.id": "legalEntityId"}
OPERATORS: dict[Operator, Callable[[Any, Any], bool]] = {
    Operator.EQ: lambda a, b: a == b,
    Operator.GT: lambda a, b: a > b,
    Operator.GE: lambda a, b: a >= b,
    Operator.LT: lambda a, b: a < b,
    Operator.LE: lambda a, b: a <= b,
}


def _json_at(mixins: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = mixins
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return ABSENT
        value = value[key]
    return value


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _json_matches(value: Any, operator: Operator, wanted: Scalar) -> bool:
    if isinstance(wanted, bool):
        return isinstance(value, bool) and value == wanted
    if isinstance(wanted, int | Decimal):
        number = _number(value)
        return number is not None and OPERATORS[operator](number, Decimal(wanted))
    return isinstance(value, str) and OPERATORS[operator](value, wanted)


@dataclass(frozen=True)
class Model:
    """Rows of one resource and how the evaluation reads their fields."""

    rows: list[Any]
    plain: dict[str, Callable[[Any], Any]]  # what q sees (None when absent)
    sorted: dict[str, Callable[[Any], Any]]  # what sort sees
    sortable: frozenset[str]
    ties: tuple[str, ...]  # the key, which breaks ties
    key: Callable[[Any], Any]


ASSIGNMENTS = Model(
    ROWS, PLAIN, SORTED, SORT_FIELD_NAMES, ("customerId", "legalEntityId"), lambda row: row.key
)


def _holds(condition: Condition, row: Any, plain: dict[str, Callable[[Any], Any]]) -> bool:
    field: Field = condition.field
    value = _json_at(row.mixins, field.path) if field.document else plain[field.name](row)
    if isinstance(condition, IsNull):
        return value is None or value is ABSENT
    if isinstance(condition, Presence):
        present = value is not ABSENT if field.document else value is not None
        return present == condition.present
    if isinstance(condition, Matches):
        return isinstance(value, str) and re2.search(condition.pattern.re2, value) is not None
    if field.document:
        if isinstance(condition, AnyOf):
            return any(_json_matches(value, Operator.EQ, wanted) for wanted in condition.values)
        return _json_matches(value, condition.operator, condition.value)
    if value is None:
        return False
    if isinstance(condition, AnyOf):
        return value in condition.values
    assert isinstance(condition, Compare)
    return OPERATORS[condition.operator](value, condition.value)


def evaluate(query: Query, sort: str, model: Model = ASSIGNMENTS) -> list[Any]:
    matching = [
        row for row in model.rows if all(_holds(c, row, model.plain) for c in query.conditions)
    ]
    fields: list[tuple[str, bool]] = []
    for field in parse_sort(sort, model.sortable):
        name = CANONICAL.get(field.field, field.field)
        if name not in [f for f, _ in fields]:
            fields.append((name, field.descending))
    tie_descending = fields[-1][1] if fields else False
    for name in model.ties:
        if name not in [f for f, _ in fields]:
            fields.append((name, tie_descending))

    def compare(a: Any, b: Any) -> int:
        for name, descending in fields:
            x, y = model.sorted[name](a), model.sorted[name](b)
            if x == y:
                continue
            # Nulls first ascending, last descending.
            before = x is None if x is None or y is None else x < y
            return (-1 if before else 1) * (-1 if descending else 1)
        return 0

    return [model.key(row) for row in sorted(matching, key=functools.cmp_to_key(compare))]


# --- random valid queries ---

TEXT_FIELDS = [
    "customerId",
    "customer.id",
    "legalEntityId",
    "legalEntity.id",
    "assignmentType",
    "customer.firstName",
    "customer.lastName",
    "customer.email",
    "legalEntity.name",
]
JSON_FIELDS = [
    "mixins.tier",
    "mixins.score",
    "mixins.vip",
    "mixins.nested.level",
    "mixins.since",
    "mixins.nested",
    "mixins.nope",
]
TEXT_VALUES = sorted(
    {row.customer_id for row in ROWS}
    | set(LEGAL_ENTITY_IDS)
    | {"MANUAL", "AUTOMATIC", "Acme", "c1", "c3", "", "zz"}
    | {name for name in NAMES}
    | {row.email for row in ROWS if row.email}
)
JSON_LITERALS = [
    *TIERS,
    "high",
    "3",
    "2024-03-01",
    "true",
    "1",
    "3",
    "-5",
    "0",
    "50",
    "20.5",
    "99.9",
    "false",
    "2",
    "nope",
]
INSTANTS = sorted({row.created_at for row in ROWS} | {row.modified_at for row in ROWS})


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def text_values(draw: st.DrawFn, pool: list[str]) -> str:
    text = draw(st.sampled_from(pool))
    return _quoted(text) if not text or draw(st.booleans()) else text


@st.composite
def json_values(draw: st.DrawFn) -> str:
    literal = draw(st.sampled_from(JSON_LITERALS))
    return _quoted(literal) if draw(st.integers(0, 4)) == 0 else literal


@st.composite
def instants(draw: st.DrawFn, pool: list[datetime]) -> str:
    moment = draw(st.sampled_from(pool)) + timedelta(
        milliseconds=draw(st.sampled_from([0, 0, 1, -1]))
    )
    return _quoted(moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


@st.composite
def regexes(draw: st.DrawFn) -> str:
    atoms = [
        "a",
        "A",
        "c",
        "0",
        "1",
        "2",
        "e",
        "l",
        "@",
        "\\.",
        ".",
        "\\d",
        "\\w",
        "[a-c]",
        "[^0-3]",
        "[ée]",
        "-",
        "_",
        "o",
    ]
    quantifiers = ["", "", "", "*", "+", "?", "{1,2}", "{2}"]

    def sequence() -> str:
        parts = []
        for _ in range(draw(st.integers(1, 4))):
            atom = draw(st.sampled_from(atoms))
            if draw(st.integers(0, 6)) == 0:
                atom = f"({atom}{draw(st.sampled_from(atoms))}|{draw(st.sampled_from(atoms))})"
            parts.append(atom + draw(st.sampled_from(quantifiers)))
        return "".join(parts)

    pattern = sequence()
    if draw(st.integers(0, 4)) == 0:
        pattern += "|" + sequence()
    if draw(st.booleans()):
        pattern = "^" + pattern
    if draw(st.integers(0, 3)) == 0:
        pattern += "$"
    return pattern


@dataclass(frozen=True)
class Vocabulary:
    """What random queries of one resource are made of."""

    text_fields: list[str]
    texts: list[str]
    instant_fields: list[str]
    instants: list[datetime]


ASSIGNMENT_WORDS = Vocabulary(
    TEXT_FIELDS, TEXT_VALUES, ["metadata.createdAt", "metadata.modifiedAt"], INSTANTS
)


@st.composite
def conditions(draw: st.DrawFn, words: Vocabulary = ASSIGNMENT_WORDS) -> str:
    kind = draw(st.sampled_from(["text", "text", "json", "json", "instant", "version"]))
    if kind == "text":
        field, values = draw(st.sampled_from(words.text_fields)), text_values(words.texts)
    elif kind == "json":
        field, values = draw(st.sampled_from(JSON_FIELDS)), json_values()
    elif kind == "instant":
        field = draw(st.sampled_from(words.instant_fields))
        values = instants(words.instants)
    else:
        field, values = "metadata.version", st.integers(0, 5).map(str)
    form = draw(st.sampled_from(["eq", "eq", "any", "cmp", "range", "regex", "word"]))
    if form == "word":
        return f"{field}:{draw(st.sampled_from(['null', 'exists', 'missing']))}"
    if form == "regex" and kind in ("text", "json"):
        pattern = draw(regexes())
        if draw(st.booleans()):
            return f"{field}:(~{pattern})"
        return f"{field}:~{pattern}"
    if form == "any":
        return f"{field}:({','.join(draw(st.lists(values, min_size=1, max_size=4)))})"
    if form in ("cmp", "range"):
        values = values.filter(lambda value: value not in ("true", "false"))  # equality only
        low = draw(st.sampled_from([">", ">="]))
        high = draw(st.sampled_from(["<", "<="]))
        if form == "range":
            return f"{field}:({low}{draw(values)} AND {high}{draw(values)})"
        return f"{field}:{draw(st.sampled_from([low, high]))}{draw(values)}"
    return f"{field}:{draw(values)}"


queries = st.lists(conditions(), max_size=3).map(" ".join)
SORTABLE = sorted(SORT_FIELD_NAMES - set(CANONICAL))
sorts = st.lists(
    st.tuples(st.sampled_from(SORTABLE), st.sampled_from(["", ":asc", ":DESC", ":desc"])),
    max_size=2,
    unique_by=lambda pair: pair[0],
).map(lambda fields: ",".join(name + direction for name, direction in fields))

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def keys(page: Any) -> list[tuple[str, str]]:
    return [
        (a.customer.id, a.legal_entity.id if a.legal_entity is not None else "") for a in page.items
    ]


@SETTINGS
@given(q=queries, sort=sorts, size=st.integers(6, 40), number=st.integers(1, 4))
async def test_store_answers_like_the_evaluation(
    loaded: tuple[Store, str], q: str, sort: str, size: int, number: int
) -> None:
    store, tenant = loaded
    expected = evaluate(parse_q(q, SEARCHABLE), sort)

    async def listed(page: Page, token: str = "", total: bool = False) -> Any:
        return await list_assignments(
            store,
            reader(tenant),
            tenant,
            SEGMENT,
            q=q,
            sort=sort,
            page=page,
            page_token=token,
            include_total_count=total,
        )

    offset_page = await listed(Page(number, size), total=True)
    assert keys(offset_page) == expected[(number - 1) * size : number * size], (
        q,
        sort,
        size,
        number,
    )
    assert offset_page.total_count == len(expected)

    # Forwards by cursor from the first page, then back from the last one.
    pages = [await listed(Page(1, size))]
    while pages[-1].cursors.next:
        pages.append(await listed(Page(1, size), pages[-1].cursors.next))
        assert pages[-1].total_count is None
    assert [key for page in pages for key in keys(page)] == expected, (q, sort, size)
    walked_back = [keys(pages[-1])]
    previous = pages[-1].cursors.previous
    while previous:
        page = await listed(Page(1, size), previous)
        walked_back.insert(0, keys(page))
        previous = page.cursors.previous
    assert [key for page in walked_back for key in page] == expected


@SETTINGS
@given(
    q=st.one_of(
        st.text(max_size=60),
        st.text(
            st.sampled_from(list('customerId:mixins.a()~,"<>= AND\\[]{}^$.*+?|0123-null')),
            max_size=40,
        ),
        queries.map(lambda q: q[: len(q) // 2] + "(" + q[len(q) // 2 :]),
    ),
    sort=st.one_of(st.just(""), st.text(max_size=20), sorts),
    token=st.one_of(st.just(""), st.text(max_size=30)),
)
async def test_invalid_input_is_only_ever_invalid_argument(
    loaded: tuple[Store, str], q: str, sort: str, token: str
) -> None:
    store, tenant = loaded
    try:
        await list_assignments(
            store,
            reader(tenant),
            tenant,
            SEGMENT,
            q=q,
            sort=sort,
            page=Page(1, 5),
            page_token=token,
        )
    except InvalidArgument as error:
        assert error.field in ("q", "sort", "page_token"), error


@SETTINGS
@given(position=st.integers(0, 10_000), replacement=st.characters(codec="ascii"))
async def test_a_tampered_cursor_is_refused(
    loaded: tuple[Store, str], position: int, replacement: str
) -> None:
    store, tenant = loaded
    first = await list_assignments(
        store, reader(tenant), tenant, SEGMENT, sort="metadata.modifiedAt", page=Page(1, 5)
    )
    token = first.cursors.next
    index = position % len(token)
    tampered = token[:index] + replacement + token[index + 1 :]
    if tampered == token:
        return
    with pytest.raises(InvalidArgument) as raised:
        await list_assignments(
            store,
            reader(tenant),
            tenant,
            SEGMENT,
            sort="metadata.modifiedAt",
            page=Page(1, 5),
            page_token=tampered,
        )
    assert raised.value.field == "page_token"


async def test_a_cursor_of_another_query_is_refused(loaded: tuple[Store, str]) -> None:
    store, tenant = loaded
    first = await list_assignments(
        store, reader(tenant), tenant, SEGMENT, q="assignmentType:MANUAL", page=Page(1, 5)
    )
    for q, sort in (
        ("assignmentType:AUTOMATIC", ""),
        ("assignmentType:MANUAL", "customerId:desc"),
    ):
        with pytest.raises(InvalidArgument, match="another query"):
            await list_assignments(
                store,
                reader(tenant),
                tenant,
                SEGMENT,
                q=q,
                sort=sort,
                page=Page(1, 5),
                page_token=first.cursors.next,
            )


# Runs for minutes unless cancelled.
_ENDLESS_SQL = {
    "postgresql": "SELECT pg_sleep(120)",
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1e10) "
    "SELECT count(*) FROM n",
}


async def test_an_expensive_read_that_runs_too_long_is_cancelled(store: Store) -> None:
    """PostgreSQL's statement timeout; on SQLite, the progress handler's deadline."""
    with pytest.raises(StatementTimedOut):
        async with store.expensive_read(20) as connection:
            await asyncio.wait_for(
                connection.exec_driver_sql(_ENDLESS_SQL[store.database.dialect]), 60
            )
    async with store.expensive_read(60_000) as connection:  # the limit went with the read
        await connection.exec_driver_sql(
            "SELECT pg_sleep(0.05)" if store.database.dialect == "postgresql" else "SELECT 1"
        )


async def test_long_queries_stay_within_what_the_databases_take(loaded: tuple[Store, str]) -> None:
    store, tenant = loaded
    # 993 values: one OR per value used to nest deeper than SQLite's limit of 1,000.
    many_values = ",".join([*(str(n) for n in range(990)), "gold", "x", "true"])
    page = await list_assignments(
        store,
        reader(tenant),
        tenant,
        SEGMENT,
        q=f"mixins.score:({many_values})",
        page=Page(1, 1000),
    )
    expected = evaluate(parse_q(f"mixins.score:({many_values})", SEARCHABLE), "")
    assert keys(page) == expected and expected
    q = " ".join(["mixins.tier:gold"] * 230)  # as many mixins conditions as fit in q
    await list_assignments(store, reader(tenant), tenant, SEGMENT, q=q, page=Page(1, 5))


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    q=st.one_of(st.text(st.characters(exclude_categories=["Cs"]), max_size=60), queries),
    sort=st.one_of(st.just(""), st.text(st.characters(exclude_categories=["Cs"]), max_size=20)),
    token=st.one_of(st.just(""), st.text(st.characters(exclude_categories=["Cs"]), max_size=30)),
)
async def test_over_grpc_a_list_is_answered_or_invalid_argument(
    loaded: tuple[Store, str], stubs: Stubs, q: str, sort: str, token: str
) -> None:
    _, tenant = loaded
    request = assignment_pb2.ListAssignmentsRequest(
        tenant=tenant, segment_id=SEGMENT, q=q, sort=sort, page_token=token, page_size=5
    )
    try:
        await stubs.assignments.ListAssignments(request)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()


# --- segments: the same machinery on the other resource ---


@dataclass(frozen=True)
class SegmentRow:
    id: str
    site_code: str
    status: str
    validity_from: datetime | None
    validity_to: datetime | None
    mixins: dict[str, Any]
    version: int
    created_at: datetime
    modified_at: datetime


def make_segments(seed: int = 7) -> list[SegmentRow]:
    rng = random.Random(seed)
    rows = []
    for n in range(45):
        created = START + timedelta(hours=rng.randint(0, 30))
        starts = rng.choice([None, START + timedelta(days=rng.randint(0, 9))])
        rows.append(
            SegmentRow(
                rng.choice(["s", "S", "seg-"]) + f"{n:02d}",
                rng.choice(["main", "b2b", "Main"]),
                rng.choice(["ACTIVE", "INACTIVE"]),
                starts,
                rng.choice([None, START + timedelta(days=rng.randint(5, 20))]),
                _mixins(rng),
                rng.randint(1, 3),
                created,
                created + timedelta(hours=rng.choice([0, 1, 5])),
            )
        )
    return rows


SEGMENT_ROWS = make_segments()
SEGMENT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": lambda row: row.id,
    "siteCode": lambda row: row.site_code,
    "status": lambda row: row.status,
    "validity.from": lambda row: row.validity_from,
    "validity.to": lambda row: row.validity_to,
    "metadata.createdAt": lambda row: row.created_at,
    "metadata.modifiedAt": lambda row: row.modified_at,
    "metadata.version": lambda row: row.version,
}
SEGMENTS = Model(
    SEGMENT_ROWS,
    SEGMENT_FIELDS,
    SEGMENT_FIELDS,
    SEGMENT_SORT_FIELD_NAMES,
    ("id",),
    lambda row: row.id,
)
INSTANT_FIELDS = ["validity.from", "validity.to", "metadata.createdAt", "metadata.modifiedAt"]
SEGMENT_WORDS = Vocabulary(
    ["id", "siteCode", "status"],
    sorted({row.id for row in SEGMENT_ROWS} | {"main", "b2b", "ACTIVE", "INACTIVE", "s1", ""}),
    INSTANT_FIELDS,
    sorted(
        {SEGMENT_FIELDS[field](row) for row in SEGMENT_ROWS for field in INSTANT_FIELDS} - {None}
    ),
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def segments_loaded(store: Store) -> tuple[Store, str]:
    tenant = "q" + secrets.token_hex(6)
    async with store.write() as connection:
        await connection.execute(
            insert(segments),
            [
                {
                    "tenant": tenant,
                    "id": row.id,
                    "name": {"en": row.id},
                    "description": {},
                    "validity_from": row.validity_from,
                    "validity_to": row.validity_to,
                    "status": row.status,
                    "site_code": row.site_code,
                    "mixins": row.mixins,
                    "metadata_mixins": {},
                    "version": row.version,
                    "created_at": row.created_at,
                    "modified_at": row.modified_at,
                }
                for row in SEGMENT_ROWS
            ],
        )
    return store, tenant


segment_sorts = st.lists(
    st.tuples(st.sampled_from(sorted(SEGMENT_SORT_FIELD_NAMES)), st.sampled_from(["", ":desc"])),
    max_size=2,
    unique_by=lambda pair: pair[0],
).map(lambda fields: ",".join(name + direction for name, direction in fields))


@SETTINGS
@given(
    q=st.lists(conditions(SEGMENT_WORDS), max_size=3).map(" ".join),
    sort=segment_sorts,
    size=st.integers(4, 20),
)
async def test_segments_answer_like_the_evaluation(
    segments_loaded: tuple[Store, str], q: str, sort: str, size: int
) -> None:
    store, tenant = segments_loaded
    expected = evaluate(parse_q(q, SEGMENT_SEARCHABLE), sort, SEGMENTS)

    async def listed(page: Page, token: str = "") -> Any:
        return await list_segments(
            store,
            reader(tenant),
            tenant,
            q=q,
            sort=sort,
            page=page,
            page_token=token,
            include_total_count=True,
        )

    first = await listed(Page(2, size))
    assert [segment.id for segment in first.items] == expected[size : 2 * size], (q, sort)
    assert first.total_count == len(expected)
    pages = [await listed(Page(1, size))]
    while pages[-1].cursors.next:
        pages.append(await listed(Page(1, size), pages[-1].cursors.next))
    assert [segment.id for page in pages for segment in page.items] == expected, (q, sort)
    back = pages[-1]
    walked = [segment.id for segment in back.items]
    while back.cursors.previous:
        back = await listed(Page(1, size), back.cursors.previous)
        walked[:0] = [segment.id for segment in back.items]
    assert walked == expected, (q, sort)
