"""What PostgreSQL clients expect beyond the protocol itself: syntax errors located in the client's text
(ErrorResponse field P, psql's `LINE 1: ... ^`), unnamed columns named `?column?`, connection commands that
change later audit records (SET/RESET/DISCARD) audited themselves, and bytea values that round-trip through a
DuckDB backend as literals and as bound parameters."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import UserError
from gateway.sql.postgres_input import bytea_input
from tests.pgwire_support import PgGateway, audited_gateway
from tests.test_audit_gateway import stored


@pytest.fixture(scope="module")
def pg(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PgGateway, Path]]:
    yield from audited_gateway(demo_database, tmp_path_factory, "pgwire-fidelity")


@pytest.fixture(scope="module")
def session(pg: tuple[PgGateway, Path]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg[0].dsn("alice"), autocommit=True) as connection:
        yield connection


# -- error positions ------------------------------------------------------------------------------------------


def simple_query_position(connection: psycopg.Connection[Any], text: str) -> tuple[str | None, int | None]:
    """SQLSTATE and position of the error a simple Query of `text` gets."""
    result = connection.pgconn.exec_(text.encode())
    assert result.status == psycopg.pq.ExecStatus.FATAL_ERROR, text
    sqlstate = result.error_field(psycopg.pq.DiagnosticField.SQLSTATE)
    position = result.error_field(psycopg.pq.DiagnosticField.STATEMENT_POSITION)
    return (sqlstate.decode() if sqlstate else None), (int(position) if position else None)


def test_psql_points_at_the_offending_token(pg: tuple[PgGateway, Path]) -> None:
    gw, _ = pg
    done = subprocess.run(["psql", gw.dsn(), "-X", "-c", "SELECT n_name FROM nation WHERE n_nationkey = = 1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("LINE 1: "))
    assert lines[at] == "LINE 1: SELECT n_name FROM nation WHERE n_nationkey = = 1"
    assert lines[at + 1].index("^") == len("LINE 1: SELECT n_name FROM nation WHERE n_nationkey = ")


SPACE = st.sampled_from([" ", "  ", "\n", "\n  ", "\t", " -- note\n", " /* c */ "])


@st.composite
def misplaced_equals(draw: st.DrawFn) -> tuple[str, int]:
    """A simple Query text (maybe after some valid statements) whose last statement has `= =`, and the
    0-based index of the second `=`, where the parser gives up."""
    before = "".join(draw(st.lists(st.sampled_from(["SELECT 1;", "SELECT 'a;b';\n", "SET search_path = tpch;"]),
                                   max_size=3)))
    words = ["SELECT", "n_name", "FROM", "nation", "WHERE", "n_nationkey", "=", "="]
    text = before + draw(SPACE)
    for word in words:
        text += word + draw(SPACE)
    offending = len(text.rstrip(" \n\t")) - 1
    while text[offending] != "=":  # the trailing space may have held a comment
        offending -= 1
    return text + "1", offending


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=misplaced_equals())
def test_error_position_points_at_the_offending_token(session: psycopg.Connection[Any],
                                                     case: tuple[str, int]) -> None:
    text, offending = case
    sqlstate, position = simple_query_position(session, text)
    assert sqlstate == "42601"
    assert position == offending + 1, (text, position)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lead=SPACE, word=st.sampled_from(["SELEC", "SLECT", "FORM"]), with_parameter=st.booleans())
def test_extended_protocol_positions_count_in_the_parse_text(session: psycopg.Connection[Any], lead: str,
                                                            word: str, with_parameter: bool) -> None:
    text = f"{lead}{word} n_name FROM nation" + (" WHERE n_nationkey = %s" if with_parameter else "")
    with pytest.raises(psycopg.errors.SyntaxError) as caught:
        session.execute(text, (1,) if with_parameter else None)
    position = caught.value.diag.statement_position
    assert position is not None and int(position) == len(lead) + 1, (text, position)


# -- ?column? ---------------------------------------------------------------------------------------------------


def test_unnamed_columns_are_named_as_postgresql_names_them(session: psycopg.Connection[Any],
                                                           pg: tuple[PgGateway, Path]) -> None:
    cursor = session.execute("SELECT 1, n_name, n_nationkey + 1, 'x' AS named FROM nation LIMIT 1")
    assert [c.name for c in cursor.description or []] == ["?column?", "n_name", "?column?", "named"]
    cursor = session.execute("SELECT upper(n_name), coalesce(n_name, 'x'), CASE WHEN n_nationkey > 1 THEN 1 END, "
                             "length(n_name) + 1 FROM nation LIMIT 1")
    assert [c.name for c in cursor.description or []] == ["upper", "coalesce", "case", "?column?"]
    assert [c.name for c in session.execute("SELECT count(*), max(n_name) FROM nation").description or []] == \
        ["count", "max"]
    done = subprocess.run(["psql", pg[0].dsn(), "-X", "-c", "SELECT 1 + 1"], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.splitlines()[0].strip() == "?column?", done.stdout


# -- connection commands in the audit ---------------------------------------------------------------------------


def test_set_reset_and_discard_are_audited_without_execution(pg: tuple[PgGateway, Path]) -> None:
    gw, db = pg
    source = f"session-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(gw.dsn(application_name=source), autocommit=True) as connection:
        connection.execute("SET search_path TO tpch")
        connection.execute("SET TIME ZONE 'Europe/Berlin'")
        connection.execute("BEGIN")
        connection.execute("COMMIT")
        connection.execute("SHOW search_path")
        connection.execute("RESET TimeZone")
        connection.execute("DISCARD ALL")
        connection.execute("SET application_name = 'renamed'")
    records = stored(db, source, expect=5)
    assert [(r["sql"], r["statement_type"], r["decision"], r["backend"]) for r in records] == [
        ("SET search_path TO tpch", "set", "success", None),
        ("SET TIME ZONE 'Europe/Berlin'", "set", "success", None),
        ("RESET TimeZone", "reset", "success", None),
        ("DISCARD ALL", "discard", "success", None),
        ("SET application_name = 'renamed'", "set", "success", None),
    ]
    assert stored(db, "renamed") == []  # the SET is recorded under the source it was sent with


# -- bytea ------------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.binary(max_size=64))
def test_bytea_round_trips_as_literal_and_parameter(session: psycopg.Connection[Any], value: bytes) -> None:
    literal = "'\\x" + value.hex() + "'::bytea"
    assert session.execute(f"SELECT {literal}").fetchone() == (value,)
    assert session.execute(f"SELECT {literal}", binary=True).fetchone() == (value,)
    assert session.execute("SELECT %b::bytea", (value,)).fetchone() == (value,)
    assert session.execute("SELECT %s", (value,)).fetchone() == (value,)
    assert session.execute(f"SELECT %b::bytea = {literal}", (value,)).fetchone() == (True,)
    escaped = "".join(f"\\{byte:03o}" for byte in value)  # PostgreSQL's escape format
    assert session.execute(f"SELECT '{escaped}'::bytea").fetchone() == (value,)


@given(value=st.binary(max_size=64),
       text=st.text(alphabet=st.characters(exclude_characters="\\", exclude_categories=["Cs"]), max_size=20))
def test_bytea_input_reads_hex_and_escape_formats(value: bytes, text: str) -> None:
    assert bytea_input("\\x" + value.hex()) == value
    assert bytea_input("\\x" + " ".join(value.hex()[i:i + 2] for i in range(0, len(value) * 2, 2))) == value
    assert bytea_input("".join(f"\\{byte:03o}" for byte in value)) == value
    assert bytea_input(text + "\\\\") == text.encode() + b"\\"
    for invalid in ("\\x4", "\\xzz", "a\\9", "\ud800"):
        with pytest.raises(UserError):
            bytea_input(invalid)
