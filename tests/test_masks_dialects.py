"""Built-in masks mean the same on every backend: each one, generated for DuckDB and for PostgreSQL by
gateway/sql/masks.py, gives the same value for the same input on the real engines (DuckDB in process,
PostgreSQL on 127.0.0.1:5432), for generated strings, dates and timestamps. The keyed hash in particular:
DuckDB's sha256 takes text, PostgreSQL's takes bytea, Trino's takes varbinary, and all must give the same
digest (Trino's SQL is checked by its documented semantics: no Trino server runs here)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import asyncpg
import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from gateway.policy.model import MaskRef
from gateway.sql.masks import mask_expression, parse_type
from tests.pg_warehouse import available
from tests.test_trino_backend_shapes import run_trino_hash

pytestmark = pytest.mark.skipif(not available(), reason="PostgreSQL on 127.0.0.1:5432 is required")

KEY = "gwtestkey-0123456789abcdef"
TEXT = st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=24)
STRING_MASKS = ("redact", "last4", "first4", "email_domain", "hash")


class Engines:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pg: Any = self.loop.run_until_complete(asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test"))
        self.duck = duckdb.connect()

    def both(self, mask: MaskRef | str, trino_type: str, value: Any, pg_cast: str) -> tuple[Any, Any]:
        ref = MaskRef(builtin=mask) if isinstance(mask, str) else mask
        column = exp.column("v")
        results = []
        for dialect in ("duckdb", "postgres"):
            masked, _ = mask_expression(ref, column, parse_type(trino_type), dialect=dialect, hash_key=KEY)
            results.append(masked.sql(dialect))
        duck = self.duck.execute(f"SELECT {results[0]} FROM (SELECT ?::{pg_cast} AS v)", [value]).fetchone()
        pg = self.loop.run_until_complete(self.pg.fetchval(f"SELECT {results[1]} FROM (SELECT $1::{pg_cast} AS v) t",
                                                           value))
        return (duck[0] if duck else None), pg

    def close(self) -> None:
        self.loop.run_until_complete(self.pg.close())
        self.loop.close()
        self.duck.close()


@pytest.fixture(scope="module")
def engines() -> Iterator[Engines]:
    created = Engines()
    yield created
    created.close()


@settings(max_examples=200, deadline=None)
@given(value=TEXT | st.emails(), mask=st.sampled_from(STRING_MASKS))
def test_string_masks_agree(engines: Engines, value: str, mask: str) -> None:
    duck, pg = engines.both(mask, "varchar", value, "varchar")
    assert duck == pg, (mask, value)


@settings(max_examples=40, deadline=None)
@given(value=TEXT)
def test_gateway_hash_templates_agree(engines: Engines, value: str) -> None:
    template = MaskRef(sql="'Clerk#' || substr(gateway_hash({column}), 1, 9)")
    duck, pg = engines.both(template, "varchar", value, "varchar")
    assert duck == pg and len(pg) == 15


@settings(max_examples=60, deadline=None)
@given(value=st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
def test_year_only_agrees_on_dates(engines: Engines, value: date) -> None:
    duck, pg = engines.both("year_only", "date", value, "date")
    assert duck == pg == date(value.year, 1, 1)


@settings(max_examples=60, deadline=None)
@given(value=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_year_only_agrees_on_timestamps(engines: Engines, value: datetime) -> None:
    duck, pg = engines.both("year_only", "timestamp(6)", value, "timestamp")
    assert duck == pg == datetime(value.year, 1, 1)


@settings(max_examples=60, deadline=None)
@given(value=TEXT)
def test_the_keyed_hash_agrees_on_duckdb_postgres_and_trino(engines: Engines, value: str) -> None:
    # Trino is not installed here: its SQL is evaluated by Trino's documented semantics (and, in
    # tests/test_trino_backend_shapes.py, run by DuckDB after transpiling, as a chained gateway does).
    duck, pg = engines.both("hash", "varchar", value, "varchar")
    masked, _ = mask_expression(MaskRef(builtin="hash"), exp.column("v"), parse_type("varchar"), dialect="trino",
                                hash_key=KEY)
    assert duck == pg == run_trino_hash(masked.sql("trino"), value)
