"""The unmodified `trino` DB-API client: session statements, parameters, metadata, errors, cancel."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb
import pytest
import trino
from trino.exceptions import TrinoUserError

from tests.conftest import GatewayProcess


def fetch(connection: Any, sql: str, parameters: Any = None) -> list[list[Any]]:
    cursor = connection.cursor()
    cursor.execute(sql, parameters) if parameters is not None else cursor.execute(sql)
    return [list(r) for r in cursor.fetchall()]


def test_use_changes_the_session(connect: Any) -> None:
    connection = connect(catalog=None, schema=None)
    with pytest.raises(TrinoUserError) as error:
        fetch(connection, "SELECT count(*) FROM nation")
    assert error.value.error_name == "MISSING_SCHEMA_NAME"
    fetch(connection, "USE demo.tpch")
    assert fetch(connection, "SELECT count(*) FROM nation") == [[25]]
    fetch(connection, "USE samples")
    assert fetch(connection, "SELECT count(*) FROM all_types") == [[2]]
    with pytest.raises(TrinoUserError) as error:
        fetch(connection, "USE demo.nope")
    assert error.value.error_name == "SCHEMA_NOT_FOUND"


def test_set_and_reset_session(connect: Any) -> None:
    connection = connect()
    fetch(connection, "SET SESSION query_max_run_time = '10m'")
    assert connection._client_session.properties == {"query_max_run_time": "10m"}
    assert ["query_max_run_time", "10m"] in [r[:2] for r in fetch(connection, "SHOW SESSION")]
    fetch(connection, "RESET SESSION query_max_run_time")
    assert connection._client_session.properties == {}


def test_client_parameters(connect: Any) -> None:
    connection = connect()
    rows = fetch(connection, "SELECT n_name FROM nation WHERE n_nationkey = ? OR n_name = ? ORDER BY 1",
                 [3, "PERU"])
    assert rows == [["CANADA"], ["PERU"]]
    rows = fetch(connection, "SELECT ?, ?, ?", [Decimal("1.50"), date(2024, 1, 2), "it's"])
    assert rows == [[Decimal("1.50"), date(2024, 1, 2), "it's"]]


def test_prepare_execute_deallocate(connect: Any) -> None:
    connection = connect()
    fetch(connection, "PREPARE by_key FROM SELECT n_name FROM nation WHERE n_nationkey = ?")
    assert "by_key" in connection._client_session.prepared_statements
    assert fetch(connection, "EXECUTE by_key USING 7") == [["GERMANY"]]
    assert fetch(connection, "DESCRIBE INPUT by_key") == [[0, "unknown"]]
    assert fetch(connection, "DESCRIBE OUTPUT by_key") == [["n_name", "", "", "", "varchar", 0, False]]
    with pytest.raises(TrinoUserError):
        fetch(connection, "EXECUTE by_key USING 1, 2")
    fetch(connection, "DEALLOCATE PREPARE by_key")
    assert "by_key" not in connection._client_session.prepared_statements
    # (the client keeps sending a deallocated statement in later requests, so check with another name)
    with pytest.raises(TrinoUserError) as error:
        fetch(connection, "EXECUTE never_prepared USING 7")
    assert error.value.error_name == "NOT_FOUND"


def test_read_only_transactions(connect: Any) -> None:
    connection = connect(isolation_level=trino.transaction.IsolationLevel.READ_COMMITTED)
    assert fetch(connection, "SELECT count(*) FROM region") == [[5]]
    connection.commit()
    assert fetch(connection, "SELECT count(*) FROM region") == [[5]]
    connection.rollback()


def test_metadata_statements(connect: Any) -> None:
    connection = connect()
    assert fetch(connection, "SHOW CATALOGS") == [["demo"], ["system"]]
    assert fetch(connection, "SHOW SCHEMAS FROM demo") == [["information_schema"], ["samples"], ["tpch"]]
    assert fetch(connection, "SHOW SCHEMAS LIKE 'tp%'") == [["tpch"]]
    tables = [r[0] for r in fetch(connection, "SHOW TABLES")]
    assert tables == ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]
    assert fetch(connection, "SHOW TABLES FROM demo.tpch LIKE 'part%'") == [["part"], ["partsupp"]]
    assert fetch(connection, "DESCRIBE nation")[1] == ["n_name", "varchar", "", ""]
    assert fetch(connection, "SHOW COLUMNS FROM demo.tpch.region LIKE 'r_n%'") == [["r_name", "varchar", "", ""]]
    with pytest.raises(TrinoUserError) as error:
        fetch(connection, "SHOW TABLES FROM nope")
    assert error.value.error_name == "SCHEMA_NOT_FOUND"
    with pytest.raises(TrinoUserError) as error:
        fetch(connection, "DESCRIBE nope")
    assert error.value.error_name == "TABLE_NOT_FOUND"


def test_information_schema_and_system_tables(connect: Any) -> None:
    connection = connect()
    columns = fetch(connection, "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                                "WHERE table_schema = 'tpch' AND table_name = 'lineitem' ORDER BY ordinal_position")
    assert columns[4] == ["l_quantity", "decimal(15,2)", "YES"]
    assert fetch(connection, "SELECT table_cat FROM system.jdbc.catalogs ORDER BY table_cat") == [["demo"],
                                                                                                   ["system"]]
    jdbc = fetch(connection, "SELECT table_name FROM system.jdbc.tables WHERE table_cat = 'demo' "
                             "AND table_schem LIKE 'tp\\_h' ESCAPE '\\' AND table_name LIKE 'nat%'")
    assert jdbc == []  # 'tp\_h' does not match 'tpch': the escape is honoured
    jdbc = fetch(connection, "SELECT table_name, table_type FROM system.jdbc.tables WHERE table_cat = 'demo' "
                             "AND table_schem LIKE 'tpch' ESCAPE '\\' AND table_name LIKE 'nat%'")
    assert jdbc == [["nation", "TABLE"]]
    jdbc_columns = fetch(connection, "SELECT * FROM system.jdbc.columns WHERE table_schem = 'tpch' "
                                     "AND table_name = 'customer' AND column_name = 'c_acctbal'")
    assert len(jdbc_columns[0]) == 24
    assert jdbc_columns[0][4] == 3 and jdbc_columns[0][5] == "decimal(15,2)"
    comments = fetch(connection, "SELECT comment FROM system.metadata.table_comments WHERE catalog_name = 'demo' "
                                 "AND schema_name = 'tpch' AND table_name = 'customer'")
    assert comments and "customer" in comments[0][0]
    assert fetch(connection, "SELECT count(*) FROM system.jdbc.table_types") == [[2]]
    assert fetch(connection, "SELECT table_catalog FROM system.information_schema.tables LIMIT 1") == [["system"]]


def test_session_functions_answer_for_the_gateway(connect: Any) -> None:
    connection = connect(user="bob")
    rows = fetch(connection, "SELECT current_user, current_catalog, current_schema, version()")
    assert rows[0][:3] == ["bob", "demo", "tpch"]
    import gateway
    assert rows[0][3] == gateway.__version__


def test_unnamed_columns_get_trino_names(connect: Any) -> None:
    cursor = connect().cursor()
    cursor.execute("SELECT 1, n_name, count(*) AS c, upper(n_name) FROM nation GROUP BY n_name LIMIT 1")
    cursor.fetchall()
    assert [d[0] for d in cursor.description] == ["_col0", "n_name", "c", "_col3"]


def test_user_errors_raise_trino_user_error(connect: Any) -> None:
    connection = connect()
    for sql, name in [("SELECT * FROM nope", "TABLE_NOT_FOUND"), ("SELECT FROM", "SYNTAX_ERROR"),
                      ("DELETE FROM nation", "READ_ONLY_VIOLATION")]:
        with pytest.raises(TrinoUserError) as error:
            fetch(connection, sql)
        assert error.value.error_name == name


def test_type_round_trip(connect: Any, demo_database: Path) -> None:
    rows = fetch(connect(), "SELECT * FROM samples.all_types ORDER BY c_boolean NULLS LAST")
    direct = duckdb.connect(str(demo_database), read_only=True)
    try:
        expected = direct.execute("SELECT * FROM samples.all_types ORDER BY c_boolean NULLS LAST").fetchall()
    finally:
        direct.close()
    first, first_expected = rows[0], list(expected[0])
    # values DuckDB and the trino client represent alike
    for index in (0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 22, 24):
        assert first[index] == first_expected[index], index
    assert first[5] == pytest.approx(1.5) and first[6] == 2.25
    assert first[7] != first[7]  # NaN
    assert first[8] == float("inf") and rows[1][7] == float("-inf")
    assert first[18] == datetime.fromisoformat("2024-02-29 13:45:30.123456+00:00")
    assert first[19] == UUID("8c7d9a3e-0a5f-4c1e-9f0b-6a2b1c3d4e5f")
    assert tuple(first[23]) == (1, "b")
    assert first[15] == time_of_day(13, 45, 30, 123456)
    assert first[24] == timedelta(days=1, hours=2, seconds=3)
    assert rows[1][13] == b"" and rows[1][11] is None


def test_time_zone_header_renders_timestamps_with_zone(connect: Any) -> None:
    rows = fetch(connect(timezone="Europe/Paris"), "SELECT c_timestamp_tz FROM samples.all_types WHERE c_boolean")
    value = rows[0][0]
    assert value.utcoffset() == timedelta(hours=1)
    assert value == datetime.fromisoformat("2024-02-29 13:45:30.123456+00:00")


def test_cursor_cancel_stops_the_query(connect: Any, gateway: GatewayProcess) -> None:
    cursor = connect().cursor()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            cursor.execute("SELECT count(*) FROM lineitem a, lineitem b WHERE a.l_comment || b.l_comment = 'x'")
            cursor.fetchall()
        except BaseException as error:  # the client raises when the query is cancelled
            errors.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    while cursor.query_id is None or gateway.metric("gateway_backend_busy_threads", 'backend="demo"') < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cursor.cancel()
    worker.join(10)
    assert not worker.is_alive()
    deadline = time.monotonic() + 5
    while gateway.metric("gateway_backend_busy_threads", 'backend="demo"') > 0:
        assert time.monotonic() < deadline, "DuckDB kept working after the cancel"
        time.sleep(0.05)


def test_large_result_through_the_client(connect: Any) -> None:
    cursor = connect().cursor()
    cursor.execute("SELECT * FROM lineitem")
    count = sum(1 for _ in cursor)
    assert count == 60175
