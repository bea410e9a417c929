"""Segment repository."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from customer_segments.domain.listing import Slice, SortField, Window
from customer_segments.domain.segment import Segment, SegmentFields, SegmentStatus
from customer_segments.domain.trusted import Trusted
from customer_segments.query.parser import Searchable
from customer_segments.query.sql import SqlField, SqlFields, where
from customer_segments.query.syntax import FieldKind, Query
from customer_segments.store.database import Database, load_document
from customer_segments.store.listing import SortColumn, read_slice, sort_keys
from customer_segments.store.tables import customer_assignments, segments

sg = segments

_TEXT, _INSTANT, _INTEGER = FieldKind.TEXT, FieldKind.INSTANT, FieldKind.INTEGER
_SORT_COLUMNS: dict[str, SortColumn] = {
    "id": SortColumn(sg.c.id, _TEXT),
    "siteCode": SortColumn(sg.c.site_code, _TEXT),
    "status": SortColumn(sg.c.status, _TEXT),
    "validity.from": SortColumn(sg.c.validity_from, _INSTANT, nullable=True),
    "validity.to": SortColumn(sg.c.validity_to, _INSTANT, nullable=True),
    "metadata.createdAt": SortColumn(sg.c.created_at, _INSTANT),
    "metadata.modifiedAt": SortColumn(sg.c.modified_at, _INSTANT),
    "metadata.version": SortColumn(sg.c.version, _INTEGER),
}
SORT_FIELD_NAMES = frozenset(_SORT_COLUMNS)
_TIE_BREAKERS = (_SORT_COLUMNS["id"],)
# Searchable: the sort fields, and mixins.<path>.
SEARCHABLE = Searchable(
    {name: column.kind for name, column in _SORT_COLUMNS.items()}, frozenset({"mixins"})
)
_SQL_FIELDS = SqlFields(
    {
        name: SqlField(column.column, nullable=column.nullable)
        for name, column in _SORT_COLUMNS.items()
    },
    {"mixins": sg.c.mixins},
)


class SegmentFilter(NamedTuple):
    query: Query
    # Only segments this customer is assigned to: for this legal entity when given, B2C only
    # when "", with or without a legal entity when None.
    customer_id: str = ""
    legal_entity_id: str | None = None
    # Only segments that are ACTIVE and within their validity at this moment.
    active_at: datetime | None = None


def _filters(tenant: str, segment_filter: SegmentFilter) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = [sg.c.tenant == tenant]
    filters += where(segment_filter.query, _SQL_FIELDS)
    moment = segment_filter.active_at
    if moment is not None:
        filters += [
            sg.c.status == SegmentStatus.ACTIVE.value,
            or_(sg.c.validity_from.is_(None), sg.c.validity_from <= moment),
            or_(sg.c.validity_to.is_(None), sg.c.validity_to >= moment),
        ]
    if segment_filter.customer_id:
        ca = customer_assignments
        assigned = [
            ca.c.tenant == sg.c.tenant,
            ca.c.segment_id == sg.c.id,
            ca.c.customer_id == segment_filter.customer_id,
        ]
        if segment_filter.legal_entity_id is not None:
            assigned.append(ca.c.legal_entity_id == segment_filter.legal_entity_id)
        filters.append(exists().where(*assigned))
    return filters


def _to_segment(row: Row[Any]) -> Segment:
    return _from_mapping(row._mapping)


_segment = Trusted(Segment)


def _as_read(value: Any) -> Any:
    return value


def _from_mapping(row: Mapping[Any, Any], document: Callable[[Any], Any] = _as_read) -> Segment:
    """`document`: what makes a JSON column's value of the row a document (the row's own
    value, already decoded, unless the statement read it as text)."""
    return _segment(
        name=document(row["name"]),
        description=document(row["description"]),
        validity_from=row["validity_from"],
        validity_to=row["validity_to"],
        status=SegmentStatus(row["status"]),
        site_code=row["site_code"],
        mixins=document(row["mixins"]),
        metadata_mixins=document(row["metadata_mixins"]),
        id=row["id"],
        version=row["version"],
        created_at=row["created_at"],
        modified_at=row["modified_at"],
    )


_DOCUMENTS = frozenset({"name", "description", "mixins", "metadata_mixins"})

# States of segments kept by a repository (_known_segment); then it starts again empty.
KNOWN_SEGMENTS = 10_000

_State = tuple[str, str, int, datetime, datetime]


def _segments_of_customer(*, legal_entity: bool, active: bool) -> Select[Any]:
    """The first page of a customer's segments by id, all values bound, as `list` reads it
    for such a filter (same rows, same order) without building a statement per call."""
    ca = customer_assignments
    assigned = [ca.c.tenant == bindparam("tenant"), ca.c.customer_id == bindparam("customer_id")]
    if legal_entity:
        assigned.append(ca.c.legal_entity_id == bindparam("legal_entity_id"))
    filters: list[ColumnElement[bool]] = [
        sg.c.tenant == bindparam("tenant"),
        sg.c.id.in_(select(ca.c.segment_id).where(*assigned)),
    ]
    if active:
        moment = bindparam("moment", type_=sg.c.validity_from.type)
        filters += [
            sg.c.status == bindparam("active_status"),
            or_(sg.c.validity_from.is_(None), sg.c.validity_from <= moment),
            or_(sg.c.validity_to.is_(None), sg.c.validity_to >= moment),
        ]
    # The JSON columns as text: decoded only for a segment not seen in this state yet
    # (SegmentRepository._known_segment).
    columns = [cast(c, Text).label(c.name) if c.name in _DOCUMENTS else c for c in sg.c]
    return (
        select(*columns)
        .where(*filters)
        .order_by(sg.c.id)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )


def _params(tenant: str, segment_id: str, fields: SegmentFields, now: datetime) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "id": segment_id,
        "name": fields.name,
        "description": fields.description,
        "validity_from": fields.validity_from,
        "validity_to": fields.validity_to,
        "status": fields.status.value,
        "site_code": fields.site_code,
        "mixins": fields.mixins,
        "metadata_mixins": fields.metadata_mixins,
        "version": 1,
        "created_at": now,
        "modified_at": now,
    }


def _of_customer_only(
    segment_filter: SegmentFilter, sort: Sequence[SortField], window: Window
) -> bool:
    """A first page of the segments of a customer in the default order: _of_customer's."""
    by_customer_only = segment_filter.customer_id and not segment_filter.query.conditions
    return bool(by_customer_only) and not sort and window.boundary is None


class SegmentRepository:
    def __init__(self, database: Database) -> None:
        insert = database.insert
        # "Which segments is this customer in?", asked on every price lookup: compiled once
        # and run on the driver (FastRead), for each shape of the filter. Measured at
        # 5 of 20 segments: 860 instead of 1,280 us of server CPU per ListSegments by customer.
        self._known: dict[_State, Segment] = {}
        self._of_customer = {
            (legal_entity, active): database.fast_read(
                _segments_of_customer(legal_entity=legal_entity, active=active)
            )
            for legal_entity in (False, True)
            for active in (False, True)
        }
        by_key = and_(sg.c.tenant == bindparam("tenant"), sg.c.id == bindparam("id"))
        self._get = select(sg).where(by_key)
        # SELECT ... FOR UPDATE on PostgreSQL; SQLite has one writer at a time anyway.
        self._get_locked = self._get.with_for_update()
        self._exists = select(sg.c.status).where(by_key)
        # FOR KEY SHARE, the lock a foreign key check takes: the segment cannot be deleted
        # until the transaction ends, while other writes to its assignments go on.
        self._held = self._exists.with_for_update(key_share=True, read=True)
        self._delete = delete(sg).where(by_key)
        statement = insert(sg)
        self._insert = statement.on_conflict_do_nothing(
            index_elements=[sg.c.tenant, sg.c.id]
        ).returning(*sg.c)
        replaced = {
            column: statement.excluded[column]
            for column in (
                "name",
                "description",
                "validity_from",
                "validity_to",
                "status",
                "site_code",
                "mixins",
                "metadata_mixins",
                "modified_at",
            )
        }
        replaced["version"] = sg.c.version + 1
        self._upsert = statement.on_conflict_do_update(
            index_elements=[sg.c.tenant, sg.c.id], set_=replaced
        ).returning(*sg.c)
        self._upsert_if_version = statement.on_conflict_do_update(
            index_elements=[sg.c.tenant, sg.c.id],
            set_=replaced,
            where=sg.c.version == bindparam("expected_version"),
        ).returning(*sg.c)

    async def get(
        self, connection: AsyncConnection, tenant: str, segment_id: str, *, lock: bool = False
    ) -> Segment | None:
        """`lock`: until the transaction ends, no other write to the segment gets in."""
        statement = self._get_locked if lock else self._get
        row = (await connection.execute(statement, {"tenant": tenant, "id": segment_id})).first()
        return None if row is None else _to_segment(row)

    async def exists(
        self, connection: AsyncConnection, tenant: str, segment_id: str, *, hold: bool = False
    ) -> bool:
        """`hold`: the segment stays until the transaction ends (a write of its assignments
        must not race its deletion into a foreign key violation)."""
        params = {"tenant": tenant, "id": segment_id}
        statement = self._held if hold else self._exists
        return (await connection.execute(statement, params)).first() is not None

    async def insert(
        self,
        connection: AsyncConnection,
        tenant: str,
        segment_id: str,
        fields: SegmentFields,
        now: datetime,
    ) -> Segment | None:
        """None when a segment with this id exists already."""
        params = _params(tenant, segment_id, fields, now)
        row = (await connection.execute(self._insert, params)).first()
        return None if row is None else _to_segment(row)

    async def upsert(
        self,
        connection: AsyncConnection,
        tenant: str,
        segment_id: str,
        fields: SegmentFields,
        expected_version: int | None,
        now: datetime,
    ) -> Segment | None:
        """None when `expected_version` is set and the stored version differs."""
        params = _params(tenant, segment_id, fields, now)
        if expected_version is None:
            return _to_segment((await connection.execute(self._upsert, params)).one())
        params["expected_version"] = expected_version
        row = (await connection.execute(self._upsert_if_version, params)).first()
        return None if row is None else _to_segment(row)

    async def delete(self, connection: AsyncConnection, tenant: str, segment_id: str) -> bool:
        result = await connection.execute(self._delete, {"tenant": tenant, "id": segment_id})
        return result.rowcount > 0

    async def list(
        self,
        connection: AsyncConnection,
        tenant: str,
        segment_filter: SegmentFilter,
        sort: Sequence[SortField],
        window: Window,
    ) -> Slice[Segment]:
        if _of_customer_only(segment_filter, sort, window):
            return await self._first_segments_of_customer(
                connection, tenant, segment_filter, window
            )
        return await read_slice(
            connection,
            select(sg).where(*_filters(tenant, segment_filter)),
            sort_keys(sort, _SORT_COLUMNS, _TIE_BREAKERS),
            window,
            _to_segment,
        )

    async def read_of_customer(
        self,
        tenant: str,
        segment_filter: SegmentFilter,
        sort: Sequence[SortField],
        window: Window,
    ) -> Slice[Segment] | None:
        """`list` on a read connection of its own (FastRead.all_alone) when it is a first page
        of the segments of a customer (the hot shape: no q, no sort, no cursor); None for any
        other listing, which needs `list`."""
        if not _of_customer_only(segment_filter, sort, window):
            return None
        return await self._first_segments_of_customer(None, tenant, segment_filter, window)

    async def _first_segments_of_customer(
        self,
        connection: AsyncConnection | None,
        tenant: str,
        segment_filter: SegmentFilter,
        window: Window,
    ) -> Slice[Segment]:
        """On `connection`; None: on a read connection of its own."""
        legal_entity_id, moment = segment_filter.legal_entity_id, segment_filter.active_at
        statement = self._of_customer[(legal_entity_id is not None, moment is not None)]
        parameters = {
            "tenant": tenant,
            "customer_id": segment_filter.customer_id,
            "legal_entity_id": legal_entity_id,
            "moment": moment,
            "active_status": SegmentStatus.ACTIVE.value,
            "limit": window.size + 1,
            "offset": window.offset,
        }
        rows = (
            await statement.all_alone(parameters)
            if connection is None
            else await statement.all(connection, parameters)
        )
        page = rows[: window.size]
        # The keys of the default sort (by id), for the cursors.
        known = self._known_segment
        return Slice(
            [known(tenant, row) for row in page],
            len(rows) > window.size,
            tuple((row["id"],) for row in page),
        )

    def _known_segment(self, tenant: str, row: Mapping[str, Any]) -> Segment:
        """The segment of a row of _segments_of_customer, built once per state: (tenant, id,
        version, created_at, modified_at), as convert.SegmentMessages keys its messages (every
        write adds 1 to the version; a segment deleted and created again has another
        created_at). Shared between calls: never change one."""
        state = (tenant, row["id"], row["version"], row["created_at"], row["modified_at"])
        segment = self._known.get(state)
        if segment is None:
            if len(self._known) >= KNOWN_SEGMENTS:
                self._known.clear()
            segment = self._known[state] = _from_mapping(row, load_document)
        return segment

    async def count(
        self, connection: AsyncConnection, tenant: str, segment_filter: SegmentFilter
    ) -> int:
        statement = select(func.count()).select_from(sg).where(*_filters(tenant, segment_filter))
        return int((await connection.execute(statement)).scalar_one())
