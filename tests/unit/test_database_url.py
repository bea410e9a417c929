"""Database URLs as users write them."""

from __future__ import annotations

import pytest

from customer_segments.store.database import describe, normalize_database_url


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://user@host:5432/db", "postgresql+asyncpg"),
        ("postgres://user@host/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://user@host/db", "postgresql+asyncpg"),
        ("sqlite:///relative/file.db", "sqlite+aiosqlite"),
        ("sqlite:////absolute/file.db", "sqlite+aiosqlite"),
    ],
)
def test_async_driver_is_picked(url: str, driver: str) -> None:
    assert normalize_database_url(url).drivername == driver


@pytest.mark.parametrize("url", ["mysql://x@y/z", "sqlite://", "sqlite:///:memory:", "not a url"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        normalize_database_url(url)


def test_describe_hides_the_password() -> None:
    assert "secret" not in describe("postgresql://user:secret@host/db")
