"""The cost ledger: two tables in the audit store, next to the audit records and written in the same
transaction as them (so the ledger holds exactly the charges of the records the trail keeps).

    billing.charges        one row per priced query, `event_id` = the audit record's
    billing.attributions   one row per table the query read: its equal share of the cost, to the table's owner

SQLite keeps them as `charges` and `attributions` in the audit file; PostgreSQL in schema `billing`. Both
refuse UPDATE and DELETE. Through the gateway they are `gateway.billing.charges` and
`gateway.billing.attributions` (readable per `policies/tables.yaml`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from gateway.audit.text import storable
from gateway.cost.model import Charge
from gateway.relations import Column, Table
from gateway.types import BIGINT, BOOLEAN, DOUBLE, VARCHAR, SqlType

BILLING_SCHEMA = "billing"

CHARGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("event_id", "text"), ("query_id", "text"), ("charged_at", "time"), ("user_name", "text"),
    ("cost_center", "text"), ("backend", "text"), ("statement_type", "text"), ("resource_group", "text"),
    ("cache_hit", "bool"), ("cost", "float"), ("figures", "json"), ("tags", "json"))
ATTRIBUTION_FIELDS: tuple[tuple[str, str], ...] = (
    ("event_id", "text"), ("charged_at", "time"), ("user_name", "text"), ("cost_center", "text"),
    ("table_name", "text"), ("owner", "text"), ("owner_cost_center", "text"), ("share", "float"), ("cost", "float"))
CHARGE_COLUMNS = ", ".join(name for name, _ in CHARGE_FIELDS)
ATTRIBUTION_COLUMNS = ", ".join(name for name, _ in ATTRIBUTION_FIELDS)


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()
    except TypeError:  # what orjson refuses (a lone surrogate, an int beyond 64 bits)
        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def charge_rows(charges: Sequence[Charge], *, time: Callable[[str], Any],
                bool_as_int: bool) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(charges rows, attributions rows) in field order, as the store's driver takes them (text made storable,
    as the audit record's is)."""
    charge_rows, attribution_rows = [], []
    for c in charges:
        at = time(c.charged_at)
        charge_rows.append(storable((c.event_id, c.query_id, at, c.user_name, c.cost_center, c.backend,
                                     c.statement_type, c.resource_group,
                                     int(c.cache_hit) if bool_as_int else c.cache_hit, c.cost,
                                     _json(dict(c.figures)), _json(dict(c.tags)))))
        for a in c.attributions:
            attribution_rows.append(storable((c.event_id, at, c.user_name, c.cost_center, a.table_name, a.owner,
                                              a.owner_cost_center, a.share, a.cost)))
    return charge_rows, attribution_rows


def sqlite_ddl() -> str:
    types = {"text": "TEXT", "time": "TEXT", "bool": "BOOLEAN", "float": "REAL", "json": "TEXT"}
    charges = ", ".join(f"{n} {types[k]}" for n, k in CHARGE_FIELDS)
    attributions = ", ".join(f"{n} {types[k]}" for n, k in ATTRIBUTION_FIELDS)
    guards = ";".join(f"CREATE TRIGGER IF NOT EXISTS {t}_no_{a} BEFORE {a.upper()} ON {t} "
                      f"BEGIN SELECT RAISE(ABORT, 'billing {t} are append-only'); END"
                      for t in ("charges", "attributions") for a in ("update", "delete"))
    return f"""
CREATE TABLE IF NOT EXISTS charges ({charges}, PRIMARY KEY (event_id));
CREATE INDEX IF NOT EXISTS charges_at ON charges (charged_at);
CREATE TABLE IF NOT EXISTS attributions ({attributions});
CREATE INDEX IF NOT EXISTS attributions_at ON attributions (charged_at);
CREATE INDEX IF NOT EXISTS attributions_event ON attributions (event_id);
{guards};
"""


def postgres_ddl() -> str:
    types = {"text": "text", "time": "timestamptz", "bool": "boolean", "float": "double precision",
             "json": "text"}
    charges = ", ".join(f"{n} {types[k]}" for n, k in CHARGE_FIELDS)
    attributions = ", ".join(f"{n} {types[k]}" for n, k in ATTRIBUTION_FIELDS)
    triggers = "\n".join(
        f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON billing.{t} FOR EACH ROW "
        f"EXECUTE FUNCTION audit.refuse_change();\n"
        f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON billing.{t} FOR EACH STATEMENT "
        f"EXECUTE FUNCTION audit.refuse_change();" for t in ("charges", "attributions"))
    return f"""
CREATE SCHEMA IF NOT EXISTS billing;
CREATE TABLE billing.charges ({charges}, PRIMARY KEY (event_id));
CREATE INDEX charges_at ON billing.charges (charged_at);
CREATE TABLE billing.attributions ({attributions});
CREATE INDEX attributions_at ON billing.attributions (charged_at);
CREATE INDEX attributions_event ON billing.attributions (event_id);
{triggers}
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM PUBLIC;
"""


def billing_tables(*, time_type: SqlType) -> list[Table]:
    """What `gateway.billing` shows, whatever the store."""
    kinds = {"text": VARCHAR, "int": BIGINT, "float": DOUBLE, "bool": BOOLEAN, "json": VARCHAR, "time": time_type}
    return [
        Table(schema=BILLING_SCHEMA, name="charges",
              columns=tuple(Column(n, kinds[k]) for n, k in CHARGE_FIELDS),
              comment="one row per priced query, charged to the consumer's cost center"),
        Table(schema=BILLING_SCHEMA, name="attributions",
              columns=tuple(Column(n, kinds[k]) for n, k in ATTRIBUTION_FIELDS),
              comment="each query's cost split equally over the tables it read, to their owners"),
    ]


def charge_from_row(row: Sequence[Any], *, time: Callable[[Any], str]) -> dict[str, Any]:
    data = dict(zip((n for n, _ in CHARGE_FIELDS), row, strict=True))
    data["charged_at"] = time(data["charged_at"])
    data["cache_hit"] = bool(data["cache_hit"])
    data["figures"] = json.loads(data["figures"]) if data["figures"] else {}
    data["tags"] = json.loads(data["tags"]) if data["tags"] else {}
    return data


def attribution_from_row(row: Sequence[Any], *, time: Callable[[Any], str]) -> dict[str, Any]:
    data = dict(zip((n for n, _ in ATTRIBUTION_FIELDS), row, strict=True))
    data["charged_at"] = time(data["charged_at"])
    return data
