"""The embedded demo warehouse: TPC-H generated locally at first start, plus a table of every column type.

`tpchgen-cli` (a PyPI wheel carrying the Rust generator) writes Parquet in about a second at scale 0.01;
DuckDB loads it into a database file that the gateway then opens read-only. A file lock keeps two gateways
started at once from generating the same file twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

log = logging.getLogger("gateway.demo")

TPCH_TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem")

TABLE_COMMENTS = {
    "region": "TPC-H regions (5 rows)",
    "nation": "TPC-H nations (25 rows), each in a region",
    "supplier": "TPC-H suppliers",
    "customer": "TPC-H customers, with phone numbers and account balances",
    "part": "TPC-H parts",
    "partsupp": "TPC-H part suppliers: which supplier offers which part, at what cost",
    "orders": "TPC-H orders",
    "lineitem": "TPC-H order lines",
}

# One row of every type the demo offers, for type round-trip tests and for users to try.
ALL_TYPES_SQL = """
CREATE TABLE samples.all_types AS
SELECT * FROM (VALUES
  (true, 1::TINYINT, 2::SMALLINT, 3::INTEGER, 4::BIGINT, 1.5::FLOAT, 2.25::DOUBLE, 'NaN'::DOUBLE,
   'Infinity'::DOUBLE, 123.45::DECIMAL(10,2), 12345678901234567890.123456789::DECIMAL(38,9), 'hello',
   'ünïcødé ✓', '\\x00\\x01\\xFF'::BLOB, DATE '2024-02-29', TIME '13:45:30.123456',
   TIMESTAMP '2024-02-29 13:45:30.123456', '2024-02-29 13:45:30.123'::TIMESTAMP_MS,
   '2024-02-29 13:45:30.123456+00'::TIMESTAMPTZ, '8c7d9a3e-0a5f-4c1e-9f0b-6a2b1c3d4e5f'::UUID,
   [1, 2, 3], ['a', NULL], MAP {'k1': 1, 'k2': 2}, {'x': 1, 'y': 'b'}, INTERVAL '1 day 2 hours 3 seconds'),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, '-Infinity'::DOUBLE, NULL, -0.5::DECIMAL(10,2), NULL, NULL, '',
   ''::BLOB, DATE '1970-01-01', TIME '00:00:00', TIMESTAMP '1970-01-01 00:00:00', NULL, NULL, NULL, [], NULL,
   NULL, NULL, NULL)
) AS v(c_boolean, c_tinyint, c_smallint, c_integer, c_bigint, c_real, c_double, c_double_special,
       c_double_infinity, c_decimal, c_decimal_wide, c_varchar, c_unicode, c_varbinary, c_date, c_time,
       c_timestamp, c_timestamp_ms, c_timestamp_tz, c_uuid, c_array, c_array_varchar, c_map, c_row, c_interval)
"""


def _tpchgen() -> str:
    beside_python = Path(sys.executable).parent / "tpchgen-cli"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("tpchgen-cli")
    if found is None:
        raise RuntimeError("tpchgen-cli is not installed (it comes with the gateway's dependencies)")
    return found


def build_demo_database(path: Path, *, schema: str, scale: float) -> None:
    """Create the demo database at `path` unless it exists; safe to call from several processes at once."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return
        log.info("generating TPC-H scale %s into %s (first start only)", scale, path)
        with tempfile.TemporaryDirectory(prefix="tpch-", dir=path.parent) as work:
            parquet = Path(work) / "parquet"
            subprocess.run(
                [_tpchgen(), "parquet", "-s", str(scale), "-o", str(parquet)],
                check=True, capture_output=True,
            )
            staging = Path(work) / "demo.duckdb"
            connection = duckdb.connect(str(staging))
            try:
                _load(connection, parquet, schema=schema)
            finally:
                connection.close()
            os.replace(staging, path)


def _load(connection: duckdb.DuckDBPyConnection, parquet: Path, *, schema: str) -> None:
    connection.execute(f'CREATE SCHEMA "{schema}"')
    for table in TPCH_TABLES:
        source = str(parquet / f"{table}.parquet").replace("'", "''")
        connection.execute(f"CREATE TABLE \"{schema}\".{table} AS SELECT * FROM read_parquet('{source}')")
        comment = TABLE_COMMENTS[table].replace("'", "''")
        connection.execute(f"COMMENT ON TABLE \"{schema}\".{table} IS '{comment}'")
    connection.execute("CREATE SCHEMA samples")
    connection.execute(ALL_TYPES_SQL)
    connection.execute("COMMENT ON TABLE samples.all_types IS 'One row of every column type the demo offers'")
    connection.execute("CHECKPOINT")
