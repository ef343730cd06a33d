"""SQLAlchemy with the trino dialect: engine, reflection with correct types, text queries."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import types as sqltypes

from tests.conftest import GatewayProcess


def engine(gateway: GatewayProcess) -> Any:
    return sqlalchemy.create_engine(f"trino://alice@{gateway.host}:{gateway.port}/demo/tpch")


def test_inspection_lists_schemas_tables_and_typed_columns(gateway: GatewayProcess) -> None:
    inspector = sqlalchemy.inspect(engine(gateway))
    assert inspector.get_schema_names() == ["information_schema", "samples", "tpch"]
    assert inspector.get_table_names("tpch") == ["customer", "lineitem", "nation", "orders", "part", "partsupp",
                                                 "region", "supplier"]
    assert inspector.get_view_names("tpch") == []
    columns = {c["name"]: c for c in inspector.get_columns("lineitem", "tpch")}
    assert isinstance(columns["l_orderkey"]["type"], sqltypes.BIGINT)
    assert isinstance(columns["l_linenumber"]["type"], sqltypes.INTEGER)
    quantity = columns["l_quantity"]["type"]
    assert isinstance(quantity, sqltypes.DECIMAL) and (quantity.precision, quantity.scale) == (15, 2)
    assert isinstance(columns["l_shipdate"]["type"], sqltypes.DATE)
    assert isinstance(columns["l_comment"]["type"], sqltypes.VARCHAR)
    assert inspector.has_table("nation", "tpch")
    assert not inspector.has_table("nope", "tpch")
    assert "customer" in inspector.get_table_comment("customer", "tpch")["text"]


# The trino dialect has no SQLAlchemy type for Trino's interval types (the same against a real Trino).
@pytest.mark.filterwarnings("ignore:Did not recognize type 'interval'")
def test_sample_types_reflect(gateway: GatewayProcess) -> None:
    columns = {c["name"]: c["type"] for c in sqlalchemy.inspect(engine(gateway)).get_columns("all_types", "samples")}
    assert isinstance(columns["c_boolean"], sqltypes.BOOLEAN)
    assert isinstance(columns["c_real"], sqltypes.REAL)
    assert type(columns["c_double"]).__name__ == "DOUBLE"  # the dialect's own DOUBLE class
    assert isinstance(columns["c_varbinary"], sqltypes.VARBINARY)
    assert isinstance(columns["c_array"], sqltypes.ARRAY)
    assert str(columns["c_timestamp"]) in ("TIMESTAMP", "TIMESTAMP(6)")


def test_text_queries_and_version(gateway: GatewayProcess) -> None:
    with engine(gateway).connect() as connection:
        rows = connection.execute(sqlalchemy.text("SELECT n_name FROM nation WHERE n_regionkey = :r ORDER BY 1"),
                                  {"r": 0}).fetchall()
        assert [r[0] for r in rows] == ["ALGERIA", "ETHIOPIA", "KENYA", "MOROCCO", "MOZAMBIQUE"]
        assert connection.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
        assert connection.dialect.server_version_info is not None


def test_table_reflection_and_core_select(gateway: GatewayProcess) -> None:
    metadata = sqlalchemy.MetaData()
    region = sqlalchemy.Table("region", metadata, autoload_with=engine(gateway), schema="tpch")
    with engine(gateway).connect() as connection:
        rows = connection.execute(sqlalchemy.select(region.c.r_name).order_by(region.c.r_regionkey)).fetchall()
    assert [r[0] for r in rows] == ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]
