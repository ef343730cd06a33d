-- name: Npgsql type loading (Power BI)
-- source: Npgsql 8, src/Npgsql/PostgresDatabaseInfo.cs GenerateLoadTypesQuery (Power BI's PostgreSQL connector uses Npgsql)
-- contains: pg_catalog | 16 | bool | b
SELECT ns.nspname, t.oid, t.typname, t.typtype, t.typnotnull, t.elemtypoid
FROM (
    -- Arrays have typtype=b - this subquery identifies them by their typreceive and converts their typtype to a
    -- We first do this for the type (innerest-most subquery), and then for its element type
    -- This also returns the array element, range subtype and domain base type as elemtypoid
    SELECT
        typ.oid, typ.typnamespace, typ.typname, typ.typtype, typ.typrelid, typ.typnotnull, typ.relkind,
        elemtyp.oid AS elemtypoid, elemtyp.typname AS elemtypname, elemcls.relkind AS elemrelkind,
        CASE WHEN elemproc.proname='array_recv' THEN 'a' ELSE elemtyp.typtype END AS elemtyptype
    FROM (
        SELECT typ.oid, typnamespace, typname, typrelid, typnotnull, relkind, typelem AS elemoid,
            CASE WHEN proc.proname='array_recv' THEN 'a' ELSE typ.typtype END AS typtype,
            CASE
                WHEN proc.proname='array_recv' THEN typ.typelem
                WHEN typ.typtype='r' THEN rngsubtype
                WHEN typ.typtype='m' THEN (SELECT rngtypid FROM pg_range WHERE rngmultitypid = typ.oid)
                WHEN typ.typtype='d' THEN typ.typbasetype
            END AS elemtypoid
        FROM pg_type AS typ
        LEFT JOIN pg_class AS cls ON (cls.oid = typ.typrelid)
        LEFT JOIN pg_proc AS proc ON proc.oid = typ.typreceive
        LEFT JOIN pg_range ON (pg_range.rngtypid = typ.oid)
    ) AS typ
    LEFT JOIN pg_type AS elemtyp ON elemtyp.oid = elemtypoid
    LEFT JOIN pg_class AS elemcls ON (elemcls.oid = elemtyp.typrelid)
    LEFT JOIN pg_proc AS elemproc ON elemproc.oid = elemtyp.typreceive
) AS t
JOIN pg_namespace AS ns ON (ns.oid = typnamespace)
WHERE
    typtype IN ('b', 'r', 'm', 'e', 'd') OR -- Base, range, multirange, enum, domain
    (typtype = 'c' AND relkind='c') OR -- User-defined free-standing composites (not table composites) by default
    (typtype = 'p' AND typname IN ('record', 'void', 'unknown')) OR -- Some special supported pseudo-types
    (typtype = 'a' AND (  -- Array of...
        elemtyptype IN ('b', 'r', 'm', 'e', 'd') OR -- Array of base, range, multirange, enum, domain
        (elemtyptype = 'p' AND elemtypname IN ('record', 'void')) OR -- Arrays of special supported pseudo-types
        (elemtyptype = 'c' AND elemrelkind='c') -- Array of user-defined free-standing composites (not table composites) by default
    ))
ORDER BY CASE
       WHEN typtype IN ('b', 'e', 'p') THEN 0           -- First base types, enums, pseudo-types
       WHEN typtype = 'r' THEN 1                        -- Ranges after
       WHEN typtype = 'm' THEN 2                        -- Multiranges after
       WHEN typtype = 'c' THEN 3                        -- Composites after
       WHEN typtype = 'd' AND elemtyptype <> 'a' THEN 4 -- Domains over non-arrays after
       WHEN typtype = 'a' THEN 5                        -- Arrays after
       WHEN typtype = 'd' AND elemtyptype = 'a' THEN 6  -- Domains over arrays last
END

-- name: Npgsql array types
-- source: Npgsql 8, PostgresDatabaseInfo: an array type is told by its typreceive being array_recv
-- contains: pg_catalog | 1007 | _int4 | a | False | 23
SELECT ns.nspname, typ.oid, typ.typname, CASE WHEN proc.proname='array_recv' THEN 'a' ELSE typ.typtype END AS typtype, typ.typnotnull, typ.typelem
FROM pg_type AS typ JOIN pg_namespace AS ns ON (ns.oid = typ.typnamespace) LEFT JOIN pg_proc AS proc ON proc.oid = typ.typreceive
WHERE typ.typname = '_int4'

-- name: psqlODBC large objects (Tableau, Power BI over ODBC)
-- source: psqlODBC, connection.c CC_lookup_lo at connect time
-- empty
select oid, typbasetype from pg_type where typname = 'lo'

-- name: Tableau server version
-- source: representative, not captured: Tableau's connector is closed source (it reaches PostgreSQL through pgJDBC, see pgjdbc.sql, or psqlODBC); a version probe as BI tools write it
-- contains: 16.4
SELECT current_setting('server_version')

-- name: Tableau tables via information_schema
-- source: representative, not captured: the information_schema table listing BI tools without pg_catalog support use
-- contains: tpch | customer
SELECT table_schema, table_name FROM information_schema.tables WHERE table_type IN ('BASE TABLE', 'VIEW') AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY table_schema, table_name

-- name: information_schema.columns
-- source: SQL standard information_schema as PostgreSQL defines it (SQLAlchemy, Metabase, dbt read these columns)
-- contains: demo | tpch | nation | n_nationkey | 1 | None | NO | bigint
SELECT table_catalog, table_schema, table_name, column_name, ordinal_position, column_default, is_nullable, data_type, numeric_precision, udt_name FROM information_schema.columns WHERE table_schema = 'tpch' AND table_name = 'nation' ORDER BY ordinal_position

-- name: information_schema.schemata
-- source: SQL standard information_schema (Power BI navigator, dbt list_schemas)
-- contains: demo | samples
SELECT catalog_name, schema_name FROM information_schema.schemata ORDER BY schema_name

-- name: psycopg TypeInfo.fetch
-- source: psycopg 3, psycopg/_typeinfo.py TypeInfo._get_info_query (name bound: 'text')
-- contains: text | 25 | 1009 | text | ,
SELECT
    typname AS name, oid, typarray AS array_oid,
    oid::regtype::text AS regtype, typdelim AS delimiter
FROM pg_type t
WHERE t.oid = to_regtype('text')
ORDER BY t.oid

-- name: psycopg server version
-- source: psycopg 3 / SQLAlchemy postgresql dialect _get_server_version_info
-- contains: PostgreSQL 16.4 *
select pg_catalog.version()

-- name: SQLAlchemy has_table
-- source: SQLAlchemy 2, dialects/postgresql/base.py has_table via pg_catalog (table bound: 'nation')
-- contains: nation
SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace WHERE pg_catalog.pg_class.relname = 'nation' AND pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p', 'f', 'v', 'm']) AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != 'pg_catalog'

-- name: session functions
-- source: functions BI tools call at connect time (DBeaver, Metabase, Tableau)
-- contains: demo | bob | bob | UTF8 | ISO, MDY
SELECT current_database(), current_user, session_user, current_setting('client_encoding'), current_setting('DateStyle')

-- name: psqlODBC transaction isolation
-- source: psqlODBC, connection.c CC_send_settings / CC_get_isolation at connect time
-- contains: read committed
-- columns: transaction_isolation
SHOW transaction_isolation

-- name: SHOW ALL
-- source: psql / DBeaver server settings view
-- contains: application_name
SHOW ALL

-- name: Npgsql composite type fields (Power BI)
-- source: Npgsql 8, PostgresDatabaseInfo type loading, second statement of the batch
-- empty
SELECT typ.oid, att.attname, att.atttypid
FROM pg_type AS typ
JOIN pg_namespace AS ns ON (ns.oid = typ.typnamespace)
JOIN pg_class AS cls ON (cls.oid = typ.typrelid)
JOIN pg_attribute AS att ON (att.attrelid = typ.typrelid)
WHERE
  (typ.typtype = 'c' AND cls.relkind='c') AND
  attnum > 0 AND     -- Don't load system attributes
  NOT attisdropped
ORDER BY typ.oid, att.attnum

-- name: Npgsql enum labels (Power BI)
-- source: Npgsql 8, PostgresDatabaseInfo type loading, third statement of the batch
-- empty
SELECT pg_type.oid, enumlabel
FROM pg_enum
JOIN pg_type ON pg_type.oid=enumtypid
ORDER BY oid, enumsortorder

-- name: SQLAlchemy isolation level
-- source: SQLAlchemy 2, dialects/postgresql/base.py get_isolation_level (connect time)
-- contains: read committed
show transaction isolation level

-- name: SQLAlchemy get_table_names
-- source: SQLAlchemy 2, dialects/postgresql/base.py _get_relnames_for_relkinds (schema bound: 'tpch')
-- contains: customer
SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace WHERE pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p']) AND pg_catalog.pg_namespace.nspname = 'tpch' ORDER BY pg_catalog.pg_class.relname

-- name: SQLAlchemy get_schema_names
-- source: SQLAlchemy 2, dialects/postgresql/base.py get_schema_names
-- contains: samples
SELECT pg_catalog.pg_namespace.nspname FROM pg_catalog.pg_namespace WHERE pg_catalog.pg_namespace.nspname NOT LIKE 'pg_%' ORDER BY pg_catalog.pg_namespace.nspname
