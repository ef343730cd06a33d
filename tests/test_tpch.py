"""All 22 TPC-H queries return through the gateway exactly what DuckDB returns for them directly, for a user
whom the policies let see every row and column (admin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

QUERIES = sorted((Path(__file__).parent / "tpch").glob("q*.sql"))


def direct(database: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = duckdb.connect(str(database), read_only=True)
    try:
        connection.execute("USE demo.tpch")
        return connection.execute(sqlglot.transpile(sql, read="trino", write="duckdb")[0]).fetchall()
    finally:
        connection.close()


def test_there_are_22_queries() -> None:
    assert [q.stem for q in QUERIES] == [f"q{n:02d}" for n in range(1, 23)]


@pytest.mark.parametrize("query", QUERIES, ids=[q.stem for q in QUERIES])
def test_tpch_query_matches_duckdb(query: Path, connect: Any, demo_database: Path) -> None:
    sql = query.read_text()
    cursor = connect(user="admin").cursor()
    cursor.execute(sql)
    through_gateway = [tuple(row) for row in cursor.fetchall()]
    expected = direct(demo_database, sql)
    assert through_gateway == expected
    assert len(expected) > 0
