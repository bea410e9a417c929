"""The use cases check their caller themselves: called directly, not through gRPC, with a
principal that lacks the scope, of another tenant, or a customer's, they refuse, change
nothing, and log refused writes.

The expected scopes are written out here rather than read from the service's table, so that a
wrong table fails.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from customer_segments.domain.assignment import Batch, BulkRemoveInput, BulkUpsertInput
from customer_segments.domain.errors import PermissionDenied
from customer_segments.domain.listing import Page
from customer_segments.domain.principal import Principal, Scope
from customer_segments.domain.segment import (
    BulkSegmentResult,
    BulkSegmentUpsert,
    SegmentInput,
    SegmentStatus,
)
from customer_segments.domain.segment_document import PatchInput
from customer_segments.domain.webhooks import DeliveryStatus, WebhookInput
from customer_segments.services import (
    assignments,
    bulk_assignments,
    bulk_segments,
    directory,
    events,
    segments,
    webhooks,
)
from customer_segments.services.authorization import UseCase, authorize
from customer_segments.store.database import Database, utc_now
from customer_segments.store.notifier import EventNotifier
from customer_segments.store.store import Store
from customer_segments.store.webhooks import DeliveryKey

READ, READ_OWN, MANAGE = Scope.READ.value, Scope.READ_OWN.value, Scope.MANAGE.value
ALL = frozenset({READ, READ_OWN, MANAGE})
SCOPES = {"read": READ, "read_own": READ_OWN, "manage": MANAGE, "other": "customersegment.x"}
USE_CASE_MODULES = (
    assignments,
    bulk_assignments,
    bulk_segments,
    segments,
    directory,
    webhooks,
    events,
)
# Async functions of those modules that are not use cases: they run inside one that checked.
HELPERS = {
    "require_segment",
    "write_assignment",
    "insert_segment",
    "write_segment",
    "remove_segment",
    # The server's own background work, for no caller.
    "prune_events",
    "prune_once",
}


def admin(tenant: str) -> Principal:
    return Principal(tenant, ALL, subject="admin")


def customer(tenant: str, scope: str = READ_OWN, legal_entity_id: str | None = None) -> Principal:
    """A token of customer c1 (by default a customer token; any one scope)."""
    return Principal(tenant, frozenset({scope}), subject="c1", legal_entity_id=legal_entity_id)


def _segment(status: SegmentStatus = SegmentStatus.ACTIVE) -> SegmentInput:
    return SegmentInput({"en": "N"}, {}, None, None, status, "main", "", "")


async def _single(batch: Batch[Any]) -> AsyncIterator[Batch[Any]]:
    yield batch


async def _drain(results: AsyncIterator[Any]) -> list[Any]:
    return [result async for result in results]


async def _decided(results: AsyncIterator[BulkSegmentResult]) -> list[BulkSegmentResult]:
    """A segment bulk call reports an unreachable database per item (503), not for the call."""
    drained = await _drain(results)
    if any(result.code == 503 for result in drained):
        raise RuntimeError(f"the database was unreachable for an item: {drained}")
    return drained


def _stopped_notifier(store: Store) -> EventNotifier:
    """A watch then sends what is stored and ends, as when the server stops."""
    notifier = EventNotifier(store)
    notifier.close()
    return notifier


UseCaseCall = Callable[[Store, Principal, str], Awaitable[Any]]
# The webhook endpoint of the world (with a FAILED delivery of event 1).
HOOK = WebhookInput("https://hooks.example/in", "", {}, (), None)

USE_CASES: dict[UseCase, tuple[frozenset[str], UseCaseCall]] = {
    UseCase.GET_ASSIGNMENT: (
        frozenset({READ}),
        lambda s, p, t: assignments.get_assignment(s, p, t, "gold", "c1"),
    ),
    UseCase.LIST_ASSIGNMENTS: (
        frozenset({READ, READ_OWN}),
        lambda s, p, t: assignments.list_assignments(s, p, t, "gold", page=Page(1, 10)),
    ),
    UseCase.SEARCH_ASSIGNMENTS: (
        frozenset({READ}),
        lambda s, p, t: assignments.search_assignments(
            s, p, t, "gold", q="customerId:c1", page=Page(1, 10)
        ),
    ),
    UseCase.UPSERT_ASSIGNMENT: (
        frozenset({MANAGE}),
        lambda s, p, t: assignments.upsert_assignment(s, p, t, "gold", "new"),
    ),
    UseCase.REMOVE_ASSIGNMENT: (
        frozenset({MANAGE}),
        lambda s, p, t: assignments.remove_assignment(s, p, t, "gold", "c1"),
    ),
    UseCase.BULK_UPSERT_ASSIGNMENTS: (
        frozenset({MANAGE}),
        lambda s, p, t: _drain(
            bulk_assignments.bulk_upsert_assignments(
                s, p, _single(Batch([BulkUpsertInput("new", "", "", "", None)], t, "gold"))
            )
        ),
    ),
    UseCase.BULK_REMOVE_ASSIGNMENTS: (
        frozenset({MANAGE}),
        lambda s, p, t: _drain(
            bulk_assignments.bulk_remove_assignments(
                s, p, _single(Batch([BulkRemoveInput("c1", "")], t, "gold"))
            )
        ),
    ),
    UseCase.CREATE_SEGMENT: (
        frozenset({MANAGE}),
        lambda s, p, t: segments.create_segment(s, p, t, "", _segment()),
    ),
    UseCase.UPSERT_SEGMENT: (
        frozenset({MANAGE}),
        lambda s, p, t: segments.upsert_segment(s, p, t, "scratch", _segment(), None),
    ),
    UseCase.PATCH_SEGMENT: (
        frozenset({MANAGE}),
        lambda s, p, t: segments.patch_segment(
            s, p, t, "gold", [PatchInput("replace", "/siteCode", '"other"')]
        ),
    ),
    UseCase.GET_SEGMENT: (
        frozenset({READ, READ_OWN}),
        lambda s, p, t: segments.get_segment(s, p, t, "gold"),
    ),
    UseCase.LIST_SEGMENTS: (
        frozenset({READ, READ_OWN}),
        lambda s, p, t: segments.list_segments(s, p, t, page=Page(1, 10)),
    ),
    UseCase.DELETE_SEGMENT: (
        frozenset({MANAGE}),
        lambda s, p, t: segments.delete_segment(s, p, t, "inactive", force=True),
    ),
    UseCase.BULK_CREATE_SEGMENTS: (
        frozenset({MANAGE}),
        lambda s, p, t: _decided(
            bulk_segments.bulk_create_segments(s, p, t, [lambda: ("", _segment())])
        ),
    ),
    UseCase.BULK_UPSERT_SEGMENTS: (
        frozenset({MANAGE}),
        lambda s, p, t: _decided(
            bulk_segments.bulk_upsert_segments(
                s, p, t, [lambda: BulkSegmentUpsert("scratch", _segment(), None)]
            )
        ),
    ),
    UseCase.BULK_DELETE_SEGMENTS: (
        frozenset({MANAGE}),
        lambda s, p, t: _decided(
            bulk_segments.bulk_delete_segments(s, p, t, ["inactive"], force=True)
        ),
    ),
    UseCase.UPSERT_CUSTOMER: (
        frozenset({MANAGE}),
        lambda s, p, t: directory.upsert_customer(s, p, t, "c1", "F", "L", "e@x"),
    ),
    UseCase.UPSERT_LEGAL_ENTITY: (
        frozenset({MANAGE}),
        lambda s, p, t: directory.upsert_legal_entity(s, p, t, "le1", "N"),
    ),
    UseCase.CREATE_WEBHOOK: (
        frozenset({MANAGE}),
        lambda s, p, t: webhooks.create_webhook(s, p, t, HOOK),
    ),
    UseCase.LIST_WEBHOOKS: (frozenset({MANAGE}), lambda s, p, t: webhooks.list_webhooks(s, p, t)),
    UseCase.GET_WEBHOOK: (
        frozenset({MANAGE}),
        lambda s, p, t: webhooks.get_webhook(s, p, t, "hook1"),
    ),
    UseCase.UPDATE_WEBHOOK: (
        frozenset({MANAGE}),
        lambda s, p, t: webhooks.update_webhook(s, p, t, "hook1", HOOK, None),
    ),
    UseCase.DELETE_WEBHOOK: (
        frozenset({MANAGE}),
        lambda s, p, t: webhooks.delete_webhook(s, p, t, "hook1", None),
    ),
    UseCase.LIST_DELIVERIES: (
        frozenset({MANAGE}),
        lambda s, p, t: webhooks.list_deliveries(s, p, t, "hook1", None, 0, ""),
    ),
    UseCase.RETRY_DELIVERY: (
        frozenset({MANAGE}),
        lambda s, p, t: webhooks.retry_delivery(s, p, t, "hook1", 1),
    ),
    UseCase.WATCH_EVENTS: (
        frozenset({READ}),
        lambda s, p, t: _drain(events.watch_events(s, p, t, _stopped_notifier(s))),
    ),
}
# Reads that need the manage scope (an integration's configuration) write no audit line.
MANAGE_READS = {UseCase.LIST_WEBHOOKS, UseCase.GET_WEBHOOK, UseCase.LIST_DELIVERIES}
WRITES = {
    use_case for use_case, (scopes, _) in USE_CASES.items() if scopes == {MANAGE}
} - MANAGE_READS


@pytest_asyncio.fixture(loop_scope="session")
async def world(store: Store, tenant: str) -> Store:
    """Segments `gold` (ACTIVE, holding c1 as B2C and for le1) and `inactive` (holding c1),
    written through the use cases themselves."""
    await segments.create_segment(store, admin(tenant), tenant, "gold", _segment())
    inactive = _segment(SegmentStatus.INACTIVE)
    await segments.create_segment(store, admin(tenant), tenant, "inactive", inactive)
    for segment_id, legal_entity_id in (("gold", ""), ("gold", "le1"), ("inactive", "")):
        await assignments.upsert_assignment(
            store, admin(tenant), tenant, segment_id, "c1", legal_entity_id
        )
    async with store.write() as connection:  # past the use cases: no audit line
        await store.webhooks.create(
            connection, tenant, "hook1", HOOK, "whsec_" + "A" * 32, utc_now()
        )
        await store.webhooks.record(
            connection,
            DeliveryKey(tenant, "hook1", 1),
            "e1",
            DeliveryStatus.FAILED,
            8,
            None,
            500,
            "answered 500",
            utc_now(),
        )
    return store


async def _state(store: Store, tenant: str) -> tuple[Any, ...]:
    """Everything of the tenant a refused call could have changed."""
    listed = await segments.list_segments(store, admin(tenant), tenant, page=Page(1, 100))
    found = []
    for segment in listed.items:
        page = await assignments.list_assignments(
            store, admin(tenant), tenant, segment.id, page=Page(1, 100)
        )
        found.append((segment, page.items))
    return tuple(found)


def _use_case_functions() -> dict[str, inspect.Signature]:
    return {
        f"{module.__name__}.{name}": inspect.signature(function)
        for module in USE_CASE_MODULES
        for name, function in vars(module).items()
        if not name.startswith("_")
        and name not in HELPERS
        and getattr(function, "__module__", None) == module.__name__
        and (inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function))
    }


def test_every_use_case_is_in_the_matrix_and_takes_the_principal() -> None:
    assert set(USE_CASES) == set(UseCase)
    functions = _use_case_functions()
    assert len(functions) == len(UseCase)
    for name, signature in functions.items():
        assert list(signature.parameters)[:2] == ["store", "principal"], name


def test_a_use_case_missing_from_the_table_is_denied() -> None:
    with pytest.raises(PermissionDenied, match="unknown scope"):
        authorize(admin("acme"), "NotListed", "acme")  # type: ignore[arg-type]


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("use_case", USE_CASES)
async def test_each_scope_against_each_use_case(
    world: Store, tenant: str, use_case: UseCase, scope: str, caplog: pytest.LogCaptureFixture
) -> None:
    allowed, call = USE_CASES[use_case]
    principal = customer(tenant, SCOPES[scope])  # sub c1: in gold, which is active
    before = await _state(world, tenant)
    with caplog.at_level(logging.INFO, logger="customer_segments.audit"):
        if SCOPES[scope] in allowed:
            await call(world, principal, tenant)
            outcome = "ok"
        else:
            with pytest.raises(PermissionDenied, match="lacks the scope"):
                await call(world, principal, tenant)
            assert await _state(world, tenant) == before
            outcome = "PermissionDenied"
    lines = [record.getMessage() for record in caplog.records]
    if use_case in WRITES:
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"write {use_case.value} tenant={tenant} subject='c1'")
        assert lines[0].endswith(f"outcome={outcome}")
    else:
        assert lines == []


@pytest.mark.parametrize("use_case", USE_CASES)
async def test_a_principal_of_another_tenant_is_refused(
    world: Store, tenant: str, use_case: UseCase, caplog: pytest.LogCaptureFixture
) -> None:
    before = await _state(world, tenant)
    refused = pytest.raises(PermissionDenied, match=f"not valid for tenant '{tenant}'")
    with caplog.at_level(logging.INFO, logger="customer_segments.audit"), refused:
        await USE_CASES[use_case][1](world, admin("another"), tenant)
    assert await _state(world, tenant) == before
    lines = [record.getMessage() for record in caplog.records]
    if use_case in WRITES:
        assert len(lines) == 1, lines
        assert lines[0].startswith(
            f"write {use_case.value} tenant=another requested_tenant='{tenant}' "
            "subject='admin' request_id=None segment="
        )
        assert lines[0].endswith("outcome=PermissionDenied")
    else:
        assert lines == []


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store whose database cannot be reached: any use of it fails."""
    url = (
        f"sqlite:///{tmp_path}/no/such/directory/x.db"
        if request.param == "sqlite"
        else "postgresql://postgres@127.0.0.1:1/nothing"
    )
    store = Store(Database(url))
    yield store
    await store.close()


@pytest.mark.parametrize("use_case", USE_CASES)
async def test_the_caller_is_checked_before_the_database(
    unreachable: Store, use_case: UseCase
) -> None:
    allowed, call = USE_CASES[use_case]
    lacking = next(scope for scope in (READ, READ_OWN, MANAGE) if scope not in allowed)
    for principal in (customer("acme", lacking), admin("another")):
        with pytest.raises(PermissionDenied):
            await call(unreachable, principal, "acme")
    try:  # with the right principal the check passes, and the database is touched
        await call(unreachable, admin("acme"), "acme")
    except PermissionDenied:
        raise
    except Exception:
        pass
    else:
        pytest.fail("the unreachable database answered")


async def test_customer_tokens_are_refused_outside_their_own_view(
    world: Store, tenant: str
) -> None:
    c1 = customer(tenant)
    for call in (
        assignments.list_assignments(world, c1, tenant, "inactive", page=Page(1, 10)),
        segments.get_segment(world, c1, tenant, "inactive"),
        segments.list_segments(world, c1, tenant, customer_id="c2", page=Page(1, 10)),
        assignments.get_assignment(world, c1, tenant, "gold", "c1"),
        assignments.search_assignments(world, c1, tenant, "gold", page=Page(1, 10)),
    ):
        with pytest.raises(PermissionDenied):
            await call
    no_sub = Principal(tenant, frozenset({READ_OWN}))
    with pytest.raises(PermissionDenied, match="claim 'sub'"):
        await assignments.list_assignments(world, no_sub, tenant, "gold", page=Page(1, 10))
    listed = await assignments.list_assignments(world, c1, tenant, "gold", page=Page(1, 10))
    assert [(a.customer.id, a.legal_entity) for a in listed.items] == [("c1", None)]


async def test_a_customer_gets_one_answer_for_every_segment_outside_their_view(
    world: Store, tenant: str
) -> None:
    """A segment that does not exist, an inactive one, an active one without the customer, and
    one with the customer for another legal entity: the same refusal, so nothing to probe."""
    await segments.create_segment(world, admin(tenant), tenant, "silver", _segment())
    messages = set()
    for segment_id, legal_entity_id in (
        ("nosuch", None),
        ("inactive", None),
        ("silver", None),
        ("gold", "le3"),
    ):
        principal = customer(tenant, legal_entity_id=legal_entity_id)
        for call in (
            assignments.list_assignments(world, principal, tenant, segment_id, page=Page(1, 10)),
            segments.get_segment(world, principal, tenant, segment_id),
        ):
            with pytest.raises(PermissionDenied) as refused:
                await call
            messages.add(refused.value.message)
        listed = await segments.list_segments(
            world, principal, tenant, q=f"id:{segment_id}", page=Page(1, 10)
        )
        assert listed.items == []
    assert len(messages) == 1, messages
    own = await assignments.list_assignments(
        world, customer(tenant, legal_entity_id="le1"), tenant, "gold", page=Page(1, 10)
    )
    assert [(a.customer.id, a.legal_entity and a.legal_entity.id) for a in own.items] == [
        ("c1", "le1")
    ]


async def test_a_later_batch_of_another_tenant_is_refused(world: Store, tenant: str) -> None:
    async def batches() -> AsyncIterator[Batch[BulkUpsertInput]]:
        yield Batch([BulkUpsertInput("first", "", "", "", None)], tenant, "gold")
        yield Batch([BulkUpsertInput("second", "", "", "", None)], "another", "gold")

    with pytest.raises(PermissionDenied, match="not valid for tenant 'another'"):
        await _drain(bulk_assignments.bulk_upsert_assignments(world, admin(tenant), batches()))
    listed = await assignments.list_assignments(
        world, admin(tenant), tenant, "gold", q="customerId:second", page=Page(1, 10)
    )
    assert listed.items == []
