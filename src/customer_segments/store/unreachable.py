"""Why the configured database cannot be used, said so that an operator knows what to do.

A driver's own message rarely names the database ("[Errno 111] Connect call failed", "unable
to open database file"); these are the mistakes met at start-up, each in one line."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from customer_segments.store.database import normalize_database_url


def _driver_error(error: BaseException) -> BaseException:
    """The driver's exception under SQLAlchemy's wrappers."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        error = error.orig
    # SQLAlchemy's asyncpg adapter keeps asyncpg's own exception as the cause.
    cause = error.__cause__
    return cause if isinstance(cause, asyncpg.PostgresError) else error


def missing_before_connecting(url: str) -> str | None:
    """What is certainly wrong before any connection is tried: an SQLite file in a folder that
    does not exist (found by the driver, it also leaves a thread behind that fails loudly)."""
    parsed = normalize_database_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    folder = Path(parsed.database or "").resolve().parent
    if folder.is_dir():
        return None
    return (
        f"the SQLite database {parsed.database} cannot be made: its folder {folder} "
        "does not exist; create it or correct --database-url"
    )


def explain(url: str, error: BaseException) -> str | None:
    """One line naming the database and the problem, or None for an error of another kind."""
    parsed = normalize_database_url(url)
    where = make_url(url).render_as_string(hide_password=True)  # as the user wrote it
    found = _driver_error(error)
    if parsed.get_backend_name() == "sqlite":
        if not isinstance(error, (DBAPIError, OSError)):
            return None
        missing = missing_before_connecting(url)
        if missing is not None:
            return missing
        return f"the SQLite database {parsed.database} cannot be opened ({found})"
    server = f"PostgreSQL at {parsed.host or 'localhost'}:{parsed.port or 5432}"
    if isinstance(found, asyncpg.InvalidCatalogNameError):
        return (
            f'the database "{parsed.database}" does not exist on {server}: create it '
            f"(createdb {parsed.database}), then run `customer-segments migrate`"
        )
    if isinstance(found, asyncpg.InvalidAuthorizationSpecificationError):  # bad password too
        return f"{server} refused the login of {where}: {found}; check the user and password"
    if isinstance(found, socket.gaierror):
        return f"the database host {parsed.host!r} of {where} is unknown ({found.strerror})"
    if isinstance(found, OSError):  # TimeoutError included
        if isinstance(found, TimeoutError):
            reason = "timed out"
        else:
            reason = os.strerror(found.errno) if found.errno else found.strerror or str(found)
        return (
            f"cannot reach {server} ({reason}): is it running, and is --database-url {where} right?"
        )
    if isinstance(found, asyncpg.PostgresError):
        return f"{server} refused {where}: {found}"
    return None
