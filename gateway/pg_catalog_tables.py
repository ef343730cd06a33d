"""The PostgreSQL view of the gateway's catalog: pg_catalog and a PostgreSQL-style information_schema,
materialised from a `CatalogSnapshot` into the metadata engine beside the Trino metadata tables.

Every local table has the PostgreSQL columns plus three hidden ones (`__gw_catalog`, `__gw_schema`,
`__gw_table`) naming what each row describes; the planner (gateway/pg_catalog.py) exposes only the
PostgreSQL columns, and only rows about the current database's tables the caller may read. Rows with a NULL
`__gw_catalog` describe builtins (types, pg_catalog itself) and are shown to everyone.

OIDs are stable: builtins have PostgreSQL's own, everything else is derived from its name (`derived_oid`),
so a client that caches OIDs across connections, or across catalog refreshes, finds the same objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import duckdb

from gateway.catalog import INFORMATION_SCHEMA, CatalogSnapshot
from gateway.pg_types import BUILTIN_TYPES, BY_OID, MAX_OCTET_LENGTH, PgBuiltinType, numeric_facts, pg_type_for
from gateway.relations import Column, Table
from gateway.types import SqlType

PG_CATALOG = "pg_catalog"
HIDDEN = ("__gw_catalog", "__gw_schema", "__gw_table")

# builtin OIDs (src/include/catalog/*.dat)
PG_CATALOG_OID = 11
PUBLIC_OID = 2200
PG_CLASS_OID = 1259  # classoid of pg_description rows about relations
PG_NAMESPACE_CLASS_OID = 2615
HEAP_AM_OID = 2
DEFAULT_COLLATION_OID = 100
FIRST_NORMAL_OID = 16384  # PostgreSQL's first OID for user objects
UTF8_ENCODING = 6

V, I4, I2, I8, BOOL = "VARCHAR", "INTEGER", "SMALLINT", "BIGINT", "BOOLEAN"
OID = "BIGINT"  # PostgreSQL's oid is unsigned 32-bit: int8 holds every value
OID_ARRAY, I2_ARRAY, TEXT_ARRAY = "BIGINT[]", "SMALLINT[]", "VARCHAR[]"

Columns = list[tuple[str, str]]

# (schema, table) -> its PostgreSQL columns. Column lists follow PostgreSQL 16.
PG_TABLES: dict[tuple[str, str], Columns] = {
    (PG_CATALOG, "pg_namespace"): [("oid", OID), ("nspname", V), ("nspowner", OID), ("nspacl", TEXT_ARRAY)],
    (PG_CATALOG, "pg_class"): [
        ("oid", OID), ("relname", V), ("relnamespace", OID), ("reltype", OID), ("reloftype", OID),
        ("relowner", OID), ("relam", OID), ("relfilenode", OID), ("reltablespace", OID), ("relpages", I4),
        ("reltuples", "REAL"), ("relallvisible", I4), ("reltoastrelid", OID), ("relhasindex", BOOL),
        ("relisshared", BOOL), ("relpersistence", V), ("relkind", V), ("relnatts", I2), ("relchecks", I2),
        ("relhasrules", BOOL), ("relhastriggers", BOOL), ("relhassubclass", BOOL), ("relrowsecurity", BOOL),
        ("relforcerowsecurity", BOOL), ("relispopulated", BOOL), ("relreplident", V), ("relispartition", BOOL),
        ("relrewrite", OID), ("relfrozenxid", I8), ("relminmxid", I8), ("relacl", TEXT_ARRAY),
        ("reloptions", TEXT_ARRAY), ("relpartbound", V)],
    (PG_CATALOG, "pg_attribute"): [
        ("attrelid", OID), ("attname", V), ("atttypid", OID), ("attstattarget", I4), ("attlen", I2),
        ("attnum", I2), ("attndims", I4), ("attcacheoff", I4), ("atttypmod", I4), ("attbyval", BOOL),
        ("attalign", V), ("attstorage", V), ("attcompression", V), ("attnotnull", BOOL), ("atthasdef", BOOL),
        ("atthasmissing", BOOL), ("attidentity", V), ("attgenerated", V), ("attisdropped", BOOL),
        ("attislocal", BOOL), ("attinhcount", I4), ("attcollation", OID), ("attacl", TEXT_ARRAY),
        ("attoptions", TEXT_ARRAY), ("attfdwoptions", TEXT_ARRAY)],
    (PG_CATALOG, "pg_type"): [
        ("oid", OID), ("typname", V), ("typnamespace", OID), ("typowner", OID), ("typlen", I2),
        ("typbyval", BOOL), ("typtype", V), ("typcategory", V), ("typispreferred", BOOL), ("typisdefined", BOOL),
        ("typdelim", V), ("typrelid", OID), ("typsubscript", V), ("typelem", OID), ("typarray", OID),
        ("typinput", OID), ("typoutput", OID), ("typreceive", OID), ("typsend", OID), ("typmodin", OID),
        ("typmodout", OID), ("typanalyze", OID), ("typalign", V), ("typstorage", V), ("typnotnull", BOOL),
        ("typbasetype", OID),
        ("typtypmod", I4), ("typndims", I4), ("typcollation", OID), ("typdefaultbin", V), ("typdefault", V),
        ("typacl", TEXT_ARRAY)],
    (PG_CATALOG, "pg_proc"): [
        ("oid", OID), ("proname", V), ("pronamespace", OID), ("proowner", OID), ("prolang", OID),
        ("procost", "REAL"), ("prorows", "REAL"), ("provariadic", OID), ("prosupport", V), ("prokind", V),
        ("prosecdef", BOOL), ("proleakproof", BOOL), ("proisstrict", BOOL), ("proretset", BOOL),
        ("provolatile", V), ("proparallel", V), ("pronargs", I2), ("pronargdefaults", I2), ("prorettype", OID),
        ("proargtypes", OID_ARRAY), ("proallargtypes", OID_ARRAY), ("proargmodes", TEXT_ARRAY),
        ("proargnames", TEXT_ARRAY), ("proargdefaults", V), ("protrftypes", OID_ARRAY), ("prosrc", V),
        ("probin", V), ("prosqlbody", V), ("proconfig", TEXT_ARRAY), ("proacl", TEXT_ARRAY)],
    (PG_CATALOG, "pg_index"): [
        ("indexrelid", OID), ("indrelid", OID), ("indnatts", I2), ("indnkeyatts", I2), ("indisunique", BOOL),
        ("indnullsnotdistinct", BOOL), ("indisprimary", BOOL), ("indisexclusion", BOOL), ("indimmediate", BOOL),
        ("indisclustered", BOOL), ("indisvalid", BOOL), ("indcheckxmin", BOOL), ("indisready", BOOL),
        ("indislive", BOOL), ("indisreplident", BOOL), ("indkey", I2_ARRAY), ("indcollation", OID_ARRAY),
        ("indclass", OID_ARRAY), ("indoption", I2_ARRAY), ("indexprs", V), ("indpred", V)],
    (PG_CATALOG, "pg_constraint"): [
        ("oid", OID), ("conname", V), ("connamespace", OID), ("contype", V), ("condeferrable", BOOL),
        ("condeferred", BOOL), ("convalidated", BOOL), ("conrelid", OID), ("contypid", OID), ("conindid", OID),
        ("conparentid", OID), ("confrelid", OID), ("confupdtype", V), ("confdeltype", V), ("confmatchtype", V),
        ("conislocal", BOOL), ("coninhcount", I4), ("connoinherit", BOOL), ("conkey", I2_ARRAY),
        ("confkey", I2_ARRAY), ("conpfeqop", OID_ARRAY), ("conppeqop", OID_ARRAY), ("conffeqop", OID_ARRAY),
        ("confdelsetcols", I2_ARRAY), ("conexclop", OID_ARRAY), ("conbin", V)],
    (PG_CATALOG, "pg_description"): [("objoid", OID), ("classoid", OID), ("objsubid", I4), ("description", V)],
    (PG_CATALOG, "pg_database"): [
        ("oid", OID), ("datname", V), ("datdba", OID), ("encoding", I4), ("datlocprovider", V),
        ("datistemplate", BOOL), ("datallowconn", BOOL), ("datconnlimit", I4), ("datfrozenxid", I8),
        ("datminmxid", I8), ("dattablespace", OID), ("datcollate", V), ("datctype", V), ("daticulocale", V),
        ("daticurules", V), ("datcollversion", V), ("datacl", TEXT_ARRAY)],
    (PG_CATALOG, "pg_am"): [("oid", OID), ("amname", V), ("amhandler", V), ("amtype", V)],
    (PG_CATALOG, "pg_tables"): [
        ("schemaname", V), ("tablename", V), ("tableowner", V), ("tablespace", V), ("hasindexes", BOOL),
        ("hasrules", BOOL), ("hastriggers", BOOL), ("rowsecurity", BOOL)],
    (PG_CATALOG, "pg_views"): [("schemaname", V), ("viewname", V), ("viewowner", V), ("definition", V)],
    (PG_CATALOG, "pg_attrdef"): [("oid", OID), ("adrelid", OID), ("adnum", I2), ("adbin", V)],
    (PG_CATALOG, "pg_enum"): [("oid", OID), ("enumtypid", OID), ("enumsortorder", "REAL"), ("enumlabel", V)],
    (PG_CATALOG, "pg_range"): [
        ("rngtypid", OID), ("rngsubtype", OID), ("rngmultitypid", OID), ("rngcollation", OID),
        ("rngsubopc", OID), ("rngcanonical", V), ("rngsubdiff", V)],
    (PG_CATALOG, "pg_inherits"): [("inhrelid", OID), ("inhparent", OID), ("inhseqno", I4),
                                  ("inhdetachpending", BOOL)],
    (PG_CATALOG, "pg_collation"): [
        ("oid", OID), ("collname", V), ("collnamespace", OID), ("collowner", OID), ("collprovider", V),
        ("collisdeterministic", BOOL), ("collencoding", I4), ("collcollate", V), ("collctype", V),
        ("colliculocale", V), ("collicurules", V), ("collversion", V)],
    (PG_CATALOG, "pg_tablespace"): [("oid", OID), ("spcname", V), ("spcowner", OID), ("spcacl", TEXT_ARRAY),
                                    ("spcoptions", TEXT_ARRAY)],
    (PG_CATALOG, "pg_depend"): [("classid", OID), ("objid", OID), ("objsubid", I4), ("refclassid", OID),
                                ("refobjid", OID), ("refobjsubid", I4), ("deptype", V)],
    # what psql's \d asks about a table besides its columns: row security policies, extended statistics,
    # publications, triggers, rules. The gateway's tables have none.
    (PG_CATALOG, "pg_policy"): [("oid", OID), ("polname", V), ("polrelid", OID), ("polcmd", V),
                                ("polpermissive", BOOL), ("polroles", OID_ARRAY), ("polqual", V),
                                ("polwithcheck", V)],
    (PG_CATALOG, "pg_statistic_ext"): [("oid", OID), ("stxrelid", OID), ("stxname", V), ("stxnamespace", OID),
                                       ("stxowner", OID), ("stxstattarget", I4), ("stxkeys", I2_ARRAY),
                                       ("stxkind", TEXT_ARRAY), ("stxexprs", V)],
    (PG_CATALOG, "pg_publication"): [("oid", OID), ("pubname", V), ("pubowner", OID), ("puballtables", BOOL),
                                     ("pubinsert", BOOL), ("pubupdate", BOOL), ("pubdelete", BOOL),
                                     ("pubtruncate", BOOL), ("pubviaroot", BOOL)],
    (PG_CATALOG, "pg_publication_rel"): [("oid", OID), ("prpubid", OID), ("prrelid", OID), ("prqual", V),
                                         ("prattrs", I2_ARRAY)],
    (PG_CATALOG, "pg_publication_namespace"): [("oid", OID), ("pnpubid", OID), ("pnnspid", OID)],
    (PG_CATALOG, "pg_trigger"): [("oid", OID), ("tgrelid", OID), ("tgparentid", OID), ("tgname", V),
                                 ("tgfoid", OID), ("tgtype", I2), ("tgenabled", V), ("tgisinternal", BOOL),
                                 ("tgconstrrelid", OID), ("tgconstrindid", OID), ("tgconstraint", OID),
                                 ("tgdeferrable", BOOL), ("tginitdeferred", BOOL), ("tgnargs", I2),
                                 ("tgattr", I2_ARRAY), ("tgargs", V), ("tgqual", V), ("tgoldtable", V),
                                 ("tgnewtable", V)],
    (PG_CATALOG, "pg_rewrite"): [("oid", OID), ("rulename", V), ("ev_class", OID), ("ev_type", V),
                                 ("ev_enabled", V), ("is_instead", BOOL), ("ev_qual", V), ("ev_action", V)],
    (PG_CATALOG, "pg_extension"): [("oid", OID), ("extname", V), ("extowner", OID), ("extnamespace", OID),
                                   ("extrelocatable", BOOL), ("extversion", V), ("extconfig", OID_ARRAY),
                                   ("extcondition", TEXT_ARRAY)],
    (INFORMATION_SCHEMA, "schemata"): [
        ("catalog_name", V), ("schema_name", V), ("schema_owner", V), ("default_character_set_catalog", V),
        ("default_character_set_schema", V), ("default_character_set_name", V), ("sql_path", V)],
    (INFORMATION_SCHEMA, "tables"): [
        ("table_catalog", V), ("table_schema", V), ("table_name", V), ("table_type", V),
        ("self_referencing_column_name", V), ("reference_generation", V), ("user_defined_type_catalog", V),
        ("user_defined_type_schema", V), ("user_defined_type_name", V), ("is_insertable_into", V),
        ("is_typed", V), ("commit_action", V)],
    (INFORMATION_SCHEMA, "columns"): [
        ("table_catalog", V), ("table_schema", V), ("table_name", V), ("column_name", V),
        ("ordinal_position", I4), ("column_default", V), ("is_nullable", V), ("data_type", V),
        ("character_maximum_length", I4), ("character_octet_length", I4), ("numeric_precision", I4),
        ("numeric_precision_radix", I4), ("numeric_scale", I4), ("datetime_precision", I4),
        ("interval_type", V), ("interval_precision", I4), ("character_set_catalog", V),
        ("character_set_schema", V), ("character_set_name", V), ("collation_catalog", V),
        ("collation_schema", V), ("collation_name", V), ("domain_catalog", V), ("domain_schema", V),
        ("domain_name", V), ("udt_catalog", V), ("udt_schema", V), ("udt_name", V), ("scope_catalog", V),
        ("scope_schema", V), ("scope_name", V), ("maximum_cardinality", I4), ("dtd_identifier", V),
        ("is_self_referencing", V), ("is_identity", V), ("identity_generation", V), ("identity_start", V),
        ("identity_increment", V), ("identity_maximum", V), ("identity_minimum", V), ("identity_cycle", V),
        ("is_generated", V), ("generation_expression", V), ("is_updatable", V)],
    (INFORMATION_SCHEMA, "views"): [
        ("table_catalog", V), ("table_schema", V), ("table_name", V), ("view_definition", V),
        ("check_option", V), ("is_updatable", V), ("is_insertable_into", V), ("is_trigger_updatable", V),
        ("is_trigger_deletable", V), ("is_trigger_insertable_into", V)],
    (INFORMATION_SCHEMA, "table_constraints"): [
        ("constraint_catalog", V), ("constraint_schema", V), ("constraint_name", V), ("table_catalog", V),
        ("table_schema", V), ("table_name", V), ("constraint_type", V), ("is_deferrable", V),
        ("initially_deferred", V), ("enforced", V), ("nulls_distinct", V)],
    (INFORMATION_SCHEMA, "key_column_usage"): [
        ("constraint_catalog", V), ("constraint_schema", V), ("constraint_name", V), ("table_catalog", V),
        ("table_schema", V), ("table_name", V), ("column_name", V), ("ordinal_position", I4),
        ("position_in_unique_constraint", I4)],
}

# Answered per statement from the session, not stored: the caller's own role, and the session's settings.
ROLE_COLUMNS: Columns = [
    ("rolname", V), ("rolsuper", BOOL), ("rolinherit", BOOL), ("rolcreaterole", BOOL), ("rolcreatedb", BOOL),
    ("rolcanlogin", BOOL), ("rolreplication", BOOL), ("rolconnlimit", I4), ("rolpassword", V),
    ("rolvaliduntil", "TIMESTAMPTZ"), ("rolbypassrls", BOOL), ("rolconfig", TEXT_ARRAY), ("oid", OID)]
USER_COLUMNS: Columns = [
    ("usename", V), ("usesysid", OID), ("usecreatedb", BOOL), ("usesuper", BOOL), ("userepl", BOOL),
    ("usebypassrls", BOOL), ("passwd", V), ("valuntil", "TIMESTAMPTZ"), ("useconfig", TEXT_ARRAY)]
SETTINGS_COLUMNS: Columns = [
    ("name", V), ("setting", V), ("unit", V), ("category", V), ("short_desc", V), ("extra_desc", V),
    ("context", V), ("vartype", V), ("source", V), ("min_val", V), ("max_val", V), ("enumvals", TEXT_ARRAY),
    ("boot_val", V), ("reset_val", V), ("sourcefile", V), ("sourceline", I4), ("pending_restart", BOOL)]
SESSION_TABLES: dict[tuple[str, str], Columns] = {
    (PG_CATALOG, "pg_roles"): ROLE_COLUMNS,
    (PG_CATALOG, "pg_user"): USER_COLUMNS,
    (PG_CATALOG, "pg_settings"): SETTINGS_COLUMNS,
}

# pg_database lists every database (catalog) the caller may read; the rest describe the current one.
DATABASE_WIDE = frozenset({(PG_CATALOG, "pg_database")})


def local_table(schema: str, table: str) -> str:
    return f"pg_{schema}_{table}" if schema == INFORMATION_SCHEMA else f"{schema}_{table}"


def derived_oid(kind: str, *parts: str) -> int:
    """A stable OID for a named object, above PostgreSQL's builtin range and inside int4 (clients read OIDs
    into 32-bit integers)."""
    digest = hashlib.sha256("\x00".join((kind, *parts)).encode()).digest()
    return FIRST_NORMAL_OID + int.from_bytes(digest[:8], "big") % (2**31 - FIRST_NORMAL_OID)


def namespace_oid(catalog: str, schema: str) -> int:
    if schema == PG_CATALOG:
        return PG_CATALOG_OID
    if schema == "public":
        return PUBLIC_OID
    if schema == INFORMATION_SCHEMA:
        return derived_oid("namespace", "", INFORMATION_SCHEMA)
    return derived_oid("namespace", catalog, schema)


def relation_oid(catalog: str, schema: str, table: str) -> int:
    return derived_oid("relation", catalog, schema, table)


def database_oid(catalog: str) -> int:
    return derived_oid("database", catalog)


def role_oid(user: str) -> int:
    return derived_oid("role", user)


# Every object is shown as owned by the role reading it: the gateway has no owners to show, and the caller's
# role is the only one pg_roles lists. The planner substitutes this placeholder with the caller's OID.
OWNER_PLACEHOLDER = 10  # the bootstrap superuser's OID in PostgreSQL; never a caller's derived OID


def ddl() -> list[str]:
    hidden = [(name, "VARCHAR") for name in HIDDEN]
    return [f"CREATE TABLE {local_table(s, t)} ({_columns([*columns, *hidden])})"
            for (s, t), columns in PG_TABLES.items()]


def _columns(columns: Columns) -> str:
    return ", ".join(f'"{name}" {kind}' for name, kind in columns)


def insert_rows(connection: duckdb.DuckDBPyConnection, table: str, rows: Iterable[tuple[object, ...]]) -> None:
    """Bulk insert: one statement with a list parameter per column, unnested (an order of magnitude faster
    than `executemany`, which runs the statement once per row: 40k rows of pg_attribute took ~50 s)."""
    rows = list(rows)
    if rows:
        columns = [list(column) for column in zip(*rows, strict=True)]
        unnested = ", ".join(f"unnest(${index})" for index in range(1, len(columns) + 1))
        connection.execute(f"INSERT INTO {table} SELECT {unnested}", columns)


_insert = insert_rows


Scope = tuple[str | None, str | None, str | None]
BUILTIN: Scope = (None, None, None)


def fill(connection: duckdb.DuckDBPyConnection, snapshot: CatalogSnapshot, data_catalogs: Iterable[str]) -> None:
    """Load every pg table from `snapshot` (only the backends' catalogs are databases)."""
    catalogs = sorted(data_catalogs)
    tables = [(c, t) for c in catalogs for s in snapshot.schemas(c) if s != INFORMATION_SCHEMA
              for t in snapshot.tables(c, s)]
    owner = OWNER_PLACEHOLDER
    _insert(connection, "pg_catalog_pg_namespace", [
        (PG_CATALOG_OID, PG_CATALOG, owner, None, *BUILTIN),
        (namespace_oid("", INFORMATION_SCHEMA), INFORMATION_SCHEMA, owner, None, *BUILTIN),
        *((namespace_oid(c, s), s, owner, None, c, s, None)
          for c in catalogs for s in snapshot.schemas(c) if s != INFORMATION_SCHEMA)])
    _insert(connection, "pg_catalog_pg_class", (_class_row(c, t) for c, t in tables))
    _insert(connection, "pg_catalog_pg_attribute", (
        _attribute_row(c, t, column, number)
        for c, t in tables for number, column in enumerate(t.columns, start=1)))
    _insert(connection, "pg_catalog_pg_type", (_type_row(t.oid) for t in BUILTIN_TYPES))
    _insert(connection, "pg_catalog_pg_description", [
        *((relation_oid(c, t.schema, t.name), PG_CLASS_OID, 0, t.comment, c, t.schema, t.name)
          for c, t in tables if t.comment),
        *((relation_oid(c, t.schema, t.name), PG_CLASS_OID, number, column.comment, c, t.schema, t.name)
          for c, t in tables for number, column in enumerate(t.columns, start=1) if column.comment)])
    _insert(connection, "pg_catalog_pg_database", (
        (database_oid(c), c, owner, UTF8_ENCODING, "c", False, True, -1, 0, 1, 1663, "C.UTF-8", "C.UTF-8", None,
         None, None, None, c, None, None) for c in catalogs))
    _insert(connection, "pg_catalog_pg_am", [(HEAP_AM_OID, "heap", "heap_tableam_handler", "t", *BUILTIN),
                                             (403, "btree", "bthandler", "i", *BUILTIN)])
    _insert(connection, "pg_catalog_pg_tables", (
        (t.schema, t.name, None, None, False, False, False, False, c, t.schema, t.name)
        for c, t in tables if t.kind != "VIEW"))
    # View definitions are the backend's SQL (and may name tables the caller cannot read): never shown.
    _insert(connection, "pg_catalog_pg_views", (
        (t.schema, t.name, None, None, c, t.schema, t.name) for c, t in tables if t.kind == "VIEW"))
    _insert(connection, "pg_catalog_pg_collation", [
        (DEFAULT_COLLATION_OID, "default", PG_CATALOG_OID, owner, "d", True, -1, None, None, None, None, None,
         *BUILTIN),
        (950, "C", PG_CATALOG_OID, owner, "c", True, -1, "C", "C", None, None, None, *BUILTIN),
        (951, "POSIX", PG_CATALOG_OID, owner, "c", True, -1, "POSIX", "POSIX", None, None, None, *BUILTIN)])
    _insert(connection, "pg_catalog_pg_tablespace", [(1663, "pg_default", owner, None, None, *BUILTIN)])
    io = sorted({(name, 2275 if name.endswith("_out") else t.oid) for t in BUILTIN_TYPES for name in io_functions(t)})
    _insert(connection, "pg_catalog_pg_proc", (_proc_row(name, result) for name, result in [*EMULATED_FUNCTIONS, *io]))
    _insert(connection, "pg_information_schema_schemata", (
        (c, s, None, None, None, None, None, c, s, None)
        for c in catalogs for s in snapshot.schemas(c) if s != INFORMATION_SCHEMA))
    _insert(connection, "pg_information_schema_tables", (
        (c, t.schema, t.name, "VIEW" if t.kind == "VIEW" else "BASE TABLE", None, None, None, None, None, "NO",
         "NO", None, c, t.schema, t.name) for c, t in tables))
    _insert(connection, "pg_information_schema_columns", (
        _column_row(c, t, column, number) for c, t in tables for number, column in enumerate(t.columns, start=1)))
    _insert(connection, "pg_information_schema_views", (
        (c, t.schema, t.name, None, "NONE", "NO", "NO", "NO", "NO", "NO", c, t.schema, t.name)
        for c, t in tables if t.kind == "VIEW"))


def _class_row(catalog: str, table: Table) -> tuple[object, ...]:
    view = table.kind == "VIEW"
    return (relation_oid(catalog, table.schema, table.name), table.name, namespace_oid(catalog, table.schema), 0, 0,
            OWNER_PLACEHOLDER, 0 if view else HEAP_AM_OID, 0, 0, 0, -1.0, 0, 0, False, False, "p",
            "v" if view else "r", len(table.columns), 0, view, False, False, False, False, True, "d", False, 0, 0,
            0, None, None, None, catalog, table.schema, table.name)


def _attribute_row(catalog: str, table: Table, column: Column, number: int) -> tuple[object, ...]:
    kind = pg_type_for(column.type)
    collation = DEFAULT_COLLATION_OID if kind.typname in ("text", "varchar", "bpchar") else 0
    return (relation_oid(catalog, table.schema, table.name), column.name, kind.oid, -1, kind.typlen, number,
            1 if kind.typname.startswith("_") else 0, -1, kind.typmod, kind.typlen in (1, 2, 4, 8), "i", "p", "",
            not column.nullable, False, False, "", "", False, True, 0, collation, None, None, None,
            catalog, table.schema, table.name)


def _type_row(oid: int) -> tuple[object, ...]:
    base = BY_OID[oid]
    io = [function_oid(name) for name in io_functions(base)]
    return (base.oid, base.typname, PG_CATALOG_OID, OWNER_PLACEHOLDER, base.typlen, base.by_value,
            "p" if base.typname == "unknown" else "b", base.category, base.typname in ("bool", "text", "float8"),
            True, ",", 0, "array_subscript_handler" if base.element_oid else "-", base.element_oid, base.array_oid,
            *io, 0, 0, 0, base.align,
            "x" if base.typlen == -1 else "p", False, 0, -1, 0,
            DEFAULT_COLLATION_OID if base.category == "S" else 0, None, None, None, *BUILTIN)


def io_functions(base: PgBuiltinType) -> tuple[str, str, str, str]:
    """typinput, typoutput, typreceive, typsend: arrays share array_in/... (Npgsql tells arrays by
    typreceive's name being array_recv)."""
    io = "array" if base.element_oid else base.typname.removeprefix("_")
    return f"{io}_in", f"{io}_out", f"{io}_recv", f"{io}_send"


def function_oid(name: str) -> int:
    return derived_oid("function", name)


# What pg_proc lists: the functions the gateway answers in PostgreSQL sessions, with their result type.
EMULATED_FUNCTIONS: tuple[tuple[str, int], ...] = (
    ("version", 25), ("current_schema", 19), ("current_schemas", 1003), ("current_database", 19),
    ("current_setting", 25), ("set_config", 25), ("pg_get_userbyid", 19), ("format_type", 25),
    ("pg_get_expr", 25), ("obj_description", 25), ("col_description", 25), ("pg_table_is_visible", 16),
    ("pg_encoding_to_char", 19), ("has_table_privilege", 16), ("has_schema_privilege", 16),
    ("pg_get_indexdef", 25), ("pg_get_constraintdef", 25), ("array_lower", 23), ("array_upper", 23),
    ("quote_ident", 25), ("pg_backend_pid", 23), ("to_regclass", 2205),
)


def _proc_row(name: str, result: int) -> tuple[object, ...]:
    return (function_oid(name), name, PG_CATALOG_OID, OWNER_PLACEHOLDER, 12, 1.0, 0.0, 0, "-", "f",
            False, False, False, False, "s", "s", 0, 0, result, [], None, None, None, None, None, name, None,
            None, None, None, *BUILTIN)


def _column_row(catalog: str, table: Table, column: Column, number: int) -> tuple[object, ...]:
    kind = column.type
    pg = pg_type_for(kind)
    length = pg.typmod - 4 if pg.typname in ("varchar", "bpchar") and pg.typmod >= 4 else None  # unbounded: NULL
    precision, radix, scale = numeric_facts(kind)
    datetime = (min(kind.arguments[0], 6) if kind.arguments else 6) if kind.name.startswith(("timestamp", "time")) \
        else (0 if kind.name == "date" else None)
    octets = min(length * 4, MAX_OCTET_LENGTH) if length is not None else None  # UTF-8: up to 4 bytes a character
    return (catalog, table.schema, table.name, column.name, number, None, "YES" if column.nullable else "NO",
            information_schema_type(kind), length, octets, precision, radix,
            scale, datetime, None, None, None, None, None, None, None, None, None, None, None, catalog, PG_CATALOG,
            pg.typname, None, None, None, None, str(number), "NO", "NO", None, None, None, None, None, "NO", "NEVER",
            None, "NO", catalog, table.schema, table.name)


def information_schema_type(kind: SqlType) -> str:
    """information_schema.columns.data_type: the SQL-standard name, ARRAY for arrays."""
    pg = pg_type_for(kind)
    if pg.typname.startswith("_"):
        return "ARRAY"
    return BY_OID[pg.oid].sql_name
