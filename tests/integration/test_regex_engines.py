"""PostgreSQL's regex engine and RE2 (SQLite's) agree on every construct of query/regex.py,
including the places where the engines differ by default (newlines, $, \\d beyond ASCII)."""

from __future__ import annotations

import pytest
import re2
from sqlalchemy import text

from customer_segments.query.regex import compile_regex
from customer_segments.store.store import Store

PATTERNS = [
    r"\s",
    r"[\s]",
    r"\S+",
    r"[\w-]+",
    r"\{",
    r"a{0}b",
    r"a{0,}",
    r"[a\-z]",
    r"[\\]",
    r"é+",
    r"\/",
    r"[^\d]",
    r"^$",
    r"x$",
    r"^.$",
    r"[\]]",
    r"[\^a]",
    r"\.\*\+\?",
    r"(a|b)*c",
    r"[ -~]+",
    r"\W",
    r"\D\d",
    r"^a.b$",
    r"^\d{2,3}$",
    r"[^a]",
]
VALUES = [
    "",
    "a",
    "b",
    "ab",
    "c",
    "x\n",
    "x",
    "\n",
    " ",
    "a-z",
    "\\",
    "é",
    "/",
    "1",
    "{",
    "]",
    "^",
    ".*+?",
    "aabc",
    "~ok",
    "a1",
    "a\nb",
    "١٢",
    "12",
    "1234",
]


async def test_postgresql_and_re2_agree(store: Store) -> None:
    if store.database.dialect != "postgresql":
        pytest.skip("compares PostgreSQL's engine with RE2")
    query = text("SELECT CAST(:value AS text) ~ CAST(:pattern AS text)")
    differences = []
    async with store.read() as connection:
        for source in PATTERNS:
            regex = compile_regex(source)
            for value in VALUES:
                postgresql = (
                    await connection.execute(query, {"value": value, "pattern": regex.postgresql})
                ).scalar()
                if postgresql != (re2.search(regex.re2, value) is not None):
                    differences.append((source, value))
    assert differences == []
