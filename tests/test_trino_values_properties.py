"""Property tests of the Trino value encoder over extreme values of every type: every value either becomes JSON
the real trino client reads back (equal where the type keeps it exactly), or is refused with ValueOutOfRange —
never any other exception (which used to kill the result producer and leave its query RUNNING forever)."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from trino.mapper import RowMapperFactory

from gateway import types as t
from gateway.frontends.trino_values import ValueOutOfRange, column_json, row_encoder

PASS_THROUGH = {"boolean", "bigint", "integer", "varchar", "json"}
ZONES = (None, ZoneInfo("UTC"), ZoneInfo("Pacific/Kiritimati"), ZoneInfo("America/Adak"))

# What DuckDB hands out beyond Python's ranges, or for values it cannot convert: text, and odd objects.
FOREIGN = st.one_of(st.sampled_from(["294247-01-10", "294247-01-10 04:00:54", "24:00:00", "-infinity",
                                     "294247-01-10 04:00:54+00", ""]),
                    st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.booleans(),
                    st.binary(max_size=8), st.decimals())

EXTREME_DATETIMES = st.one_of(st.sampled_from([datetime.min, datetime.max, datetime(1, 1, 1, 0, 0, 1),
                                               datetime(9999, 12, 31, 23, 59, 59, 999999)]), st.datetimes())
AWARE = st.one_of(
    st.sampled_from([datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC),
                     datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
                     datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-12)))]),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)),
                                            ZoneInfo("Europe/Berlin")])))


def scalar_cases() -> st.SearchStrategy[tuple[t.SqlType, Any]]:
    """(type, value) with values of the type (extremes included) and foreign ones DuckDB may return."""
    proper: list[tuple[t.SqlType, st.SearchStrategy[Any]]] = [
        (t.BOOLEAN, st.booleans()),
        (t.BIGINT, st.integers(min_value=-(2**63), max_value=2**63 - 1)),
        (t.INTEGER, st.integers(min_value=-(2**31), max_value=2**31 - 1)),
        (t.DOUBLE, st.floats()),
        (t.REAL, st.floats(width=32)),
        (t.decimal(38, 0), st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1)),
        (t.decimal(38, 10), st.decimals(allow_nan=True, allow_infinity=True, places=10)),
        (t.decimal(20, 0), st.decimals(min_value=0, max_value=2**64 - 1, places=0)),
        (t.VARCHAR, st.text()),
        (t.VARBINARY, st.binary()),
        (t.DATE, st.one_of(st.sampled_from([date.min, date.max]), st.dates())),
        (t.timestamp(0), EXTREME_DATETIMES),
        (t.timestamp(3), EXTREME_DATETIMES),
        (t.timestamp(6), EXTREME_DATETIMES),
        (t.timestamp(9), EXTREME_DATETIMES),
        (t.timestamp(6, with_time_zone=True), AWARE),
        (t.timestamp(3, with_time_zone=True), EXTREME_DATETIMES),  # naive: read as UTC
        (t.time(6), st.one_of(st.sampled_from([time.min, time.max]), st.times())),
        (t.time(6, with_time_zone=True), st.times(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5))]))),
        (t.INTERVAL_DAY_TO_SECOND, st.one_of(st.sampled_from([timedelta.min, timedelta.max]), st.timedeltas())),
        (t.UUID, st.uuids()),
        (t.JSON, st.text()),
    ]
    # Plain types (booleans, integers, strings) pass through unencoded: DuckDB's cursor types them exactly.
    # Every other type has an encoder, which must also cope with what DuckDB returns out of range.
    return st.one_of(*(st.tuples(st.just(kind), values if kind.name in PASS_THROUGH else st.one_of(values, FOREIGN))
                       for kind, values in proper))


def cases() -> st.SearchStrategy[tuple[t.SqlType, Any]]:
    """Scalars, and arrays, maps and rows of them (nested once)."""
    def nest(inner: st.SearchStrategy[tuple[t.SqlType, Any]]) -> st.SearchStrategy[tuple[t.SqlType, Any]]:
        arrays = inner.flatmap(lambda c: st.lists(st.one_of(st.just(c[1]), st.none()), max_size=3).map(
            lambda values, kind=c[0]: (t.array(kind), values)))
        maps = inner.map(lambda c: (t.map_of(t.VARCHAR, c[0]), {"k": c[1]}))
        rows = st.lists(inner, min_size=1, max_size=3).map(
            lambda fields: (t.row([(f"f{i}", kind) for i, (kind, _) in enumerate(fields)]),
                            tuple(value for _, value in fields)))
        return st.one_of(inner, arrays, maps, rows)

    return nest(scalar_cases())


EXACT = {"boolean", "bigint", "integer", "varchar", "varbinary", "date", "decimal"}


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), zone=st.sampled_from(ZONES))
@example(case=(t.decimal(38, 0), Decimal("1e28")), zone=None)  # 29 digits: more than Python's default context
def test_every_value_is_json_the_trino_client_reads_or_a_clear_refusal(case: tuple[t.SqlType, Any],
                                                                      zone: ZoneInfo | None) -> None:
    kind, value = case
    encode = row_encoder([kind], zone)
    try:
        encoded = encode([value])
        text = json.dumps(encoded, allow_nan=False, separators=(",", ":"), default=str)
    except ValueOutOfRange as refused:
        assert refused.error_name == "NUMERIC_VALUE_OUT_OF_RANGE"
        assert "outside the range" in refused.message
        return
    column = column_json("c", kind)
    read_back = RowMapperFactory().create([column], legacy_primitive_types=False).map([json.loads(text)])[0][0]
    if kind.name in EXACT and not isinstance(value, str | bool | float) and value is not None:
        if isinstance(value, Decimal):  # an engine value of another scale is rounded half up, as Trino casts
            with localcontext(prec=80):  # the default 28 digits cannot hold a decimal(38) value to quantize
                expected = value.quantize(Decimal(1).scaleb(-kind.arguments[1]), rounding=ROUND_HALF_UP)
            assert read_back == expected
        elif kind.name == "date" and isinstance(value, date):
            assert read_back == (value.date() if isinstance(value, datetime) else value)
        elif kind.name in ("bigint", "integer", "varbinary", "varchar") and type(value) in (int, bytes, str):
            assert read_back == value
    if kind.name == "timestamp" and kind.arguments[0] >= 6 and isinstance(value, datetime):
        assert read_back == value.replace(tzinfo=None)
    if kind.name == "double" and isinstance(value, float):
        assert read_back == value or (math.isnan(value) and math.isnan(read_back))


@settings(max_examples=500, deadline=None)
@given(rows=st.lists(st.tuples(st.dates(), st.text(max_size=5),
                               st.decimals(allow_nan=False, allow_infinity=False, places=2)), max_size=20))
def test_well_formed_rows_always_encode(rows: list[tuple[date, str, Decimal]]) -> None:
    encode = row_encoder([t.DATE, t.VARCHAR, t.decimal(38, 2)])
    text = json.dumps([encode(r) for r in rows], allow_nan=False)
    mapper = RowMapperFactory().create([column_json(n, k) for n, k in (("d", t.DATE), ("s", t.VARCHAR),
                                                                        ("x", t.decimal(38, 2)))], False)
    assert [tuple(r) for r in mapper.map(json.loads(text))] == [tuple(r) for r in rows]
