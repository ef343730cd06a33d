"""Which function calls a query may make: `check_functions(tree, dialect=...)` raises `PermissionDenied` or passes.

A function can do more than compute a value from its arguments: `read_csv('/etc/passwd')`, `getenv('HOME')`,
`current_setting('...')`, `dblink(...)`, `query_table('other_db.t')` read files, the environment, other
databases or the engine's session, and `set_config(...)` changes it. Any of those would go around the secure
views, so the check runs on the client's tree before anything is sent to a backend.

The policy has two halves, because sqlglot hands us two kinds of call:

- Functions sqlglot does not model (`exp.Anonymous`, and the few nodes that carry a free-form function name,
  like ClickHouse's combinators) are passed to the backend by name, so the name is all we know about them.
  The backend may be any engine, with extensions and macros we cannot list. They are therefore allowed only
  by ALLOWLIST: `_ALLOWED` holds harmless scalar, aggregate and window functions (per client dialect), each
  checked to be pure in every backend we generate for. A function a client needs that is missing here fails
  closed with a clear message and is one line to add.
- Functions sqlglot models (`exp.Func` subclasses) have a meaning the generator translates per backend, and
  sqlglot models hundreds of ordinary ones (`DateTrunc`, `ApproxQuantile`, `RegexpLike`, ...). Almost all are
  pure, so they are allowed unless DENIED: `_DENIED_CLASSES` lists the few that do I/O or expose engine
  state (`ReadCSV`, `ReadParquet`, `Secret`, `DynamicIdentifier`, AI/ML calls to external services, the
  backend's session identity such as `CurrentRole` or `CurrentDatabase`), and any class whose SQL name is in
  `_DENIED_NAMES` or starts with a `_DENIED_PREFIXES` entry is denied too, so a future sqlglot that models
  `glob` or `read_json` cannot slip through as a modeled function. The session functions whose answer the
  gateway itself supplies (`CurrentUser`, `CurrentCatalog`, `CurrentSchema`, `CurrentTimezone`,
  `CurrentVersion`) are allowed: generation replaces them with literals.

Qualified calls (`system.query(...)`, `main.lower(x)`, DuckDB's `x.getenv()`) are denied whatever the name:
a schema-qualified function can be anyone's macro, and no analytics client needs one. So are calls in table
position (`FROM f(...)`, `LATERAL f(...)`): table functions are where engines read tables, files and other
databases by name (DuckDB's `histogram(tbl, col)` is a harmless aggregate in a projection and reads `tbl` raw
in FROM). `UNNEST` and `VALUES` are not function calls in sqlglot's tree and are unaffected.

The check is one walk over the tree with a type lookup per node; class verdicts are cached per type.
"""

from __future__ import annotations

from enum import Enum

from sqlglot import exp

from gateway.errors import PermissionDenied

# --- names -------------------------------------------------------------------------------------------------

# Never callable, by any node: read files/URLs/other databases, the environment or session, or change settings.
_DENIED_NAMES: frozenset[str] = frozenset(
    {
        "read_csv", "read_csv_auto", "read_parquet", "read_json", "read_json_auto", "read_json_objects",
        "read_json_objects_auto", "read_ndjson", "read_ndjson_auto", "read_ndjson_objects", "read_text",
        "read_blob", "read_xlsx", "sniff_csv", "parquet_scan", "parquet_metadata", "parquet_schema",
        "parquet_file_metadata", "parquet_kv_metadata", "csv_scan", "glob", "getenv", "getvariable",
        "current_setting", "set_config", "setseed", "nextval", "currval", "query", "query_table",
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "dblink", "dblink_exec", "lo_import",
        "lo_export", "system", "sql_auto_complete", "which_secret", "iceberg_scan", "iceberg_metadata",
        "iceberg_snapshots", "delta_scan", "postgres_scan", "postgres_query", "postgres_execute",
        "postgres_attach", "sqlite_scan", "sqlite_attach", "mysql_scan", "mysql_query", "mysql_execute",
        "load_extension", "install", "load", "result_scan", "identifier", "table", "current_query",
        "current_database", "current_schemas", "current_role", "session_user", "json_execute_serialized_sql",
        "st_read", "st_read_meta", "st_drivers", "arrow_scan", "seq_scan", "checkpoint", "force_checkpoint",
        "secret", "to_file", "version", "txid_current", "inet_server_addr", "inet_client_addr", "database_list",
        "database_size", "storage_info", "table_info", "metadata_info", "import_database", "copy_database",
        "summary", "functions", "show", "show_databases", "show_tables", "show_tables_expanded", "user_agent",
        "extension_versions", "histogram_values",
    }
)  # fmt: skip
_DENIED_PREFIXES: tuple[str, ...] = (
    "duckdb_", "pragma_", "pg_", "read_", "parquet_", "sqlite_", "postgres_", "mysql_", "iceberg_", "delta_",
    "lo_", "dblink", "http_", "has_", "txid_", "enable_", "disable_", "python_", "pandas_",
)  # fmt: skip

# Harmless unmodeled functions, by the dialect the client writes. Lower case. Each is pure: its answer depends
# only on its arguments (or the clock / a random source), never on files, network, settings or catalogs.
_COMMON_ALLOWED: frozenset[str] = frozenset(
    {
        # math
        "abs", "ceil", "ceiling", "floor", "round", "trunc", "truncate", "mod", "power", "pow", "sqrt", "cbrt",
        "exp", "ln", "log", "log2", "log10", "sign", "pi", "e", "radians", "degrees", "sin", "cos", "tan",
        "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "gcd", "lcm", "factorial", "greatest", "least",
        "infinity", "nan", "is_finite", "is_infinite", "is_nan", "isnan", "isinf", "isfinite", "width_bucket",
        "bit_count", "bit_length", "octet_length", "random", "rand",
        # strings
        "lower", "upper", "length", "char_length", "character_length", "substr", "substring", "concat",
        "concat_ws", "replace", "reverse", "strrev", "lpad", "rpad", "ltrim", "rtrim", "trim", "btrim",
        "strpos", "position", "instr", "starts_with", "ends_with", "split_part", "translate", "initcap",
        "left", "right", "repeat", "ascii", "chr", "codepoint", "levenshtein", "levenshtein_distance",
        "hamming_distance", "jaccard", "jaro_similarity", "jaro_winkler_similarity", "soundex", "md5", "sha1",
        "sha256", "sha512", "crc32", "xxhash64", "murmur3", "to_hex", "from_hex", "to_base64", "from_base64",
        "luhn_check", "word_stem", "format", "format_number", "printf",
        # regular expressions
        "regexp_like", "regexp_extract", "regexp_extract_all", "regexp_replace", "regexp_split",
        "regexp_count", "regexp_position", "regexp_matches", "regexp_full_match", "regexp_split_to_array",
        # URLs: pure string parsing, nothing is fetched
        "url_extract_fragment", "url_extract_host", "url_extract_parameter", "url_extract_path",
        "url_extract_port", "url_extract_protocol", "url_extract_query", "url_encode", "url_decode",
        # dates and times
        "date_trunc", "date_add", "date_diff", "datediff", "date_part", "datepart", "date_format", "date_parse",
        "extract", "year", "quarter", "month", "week", "day", "hour", "minute", "second", "millisecond",
        "day_of_week", "dow", "day_of_year", "doy", "day_of_month", "week_of_year", "year_of_week", "yow",
        "last_day_of_month", "from_iso8601_timestamp", "from_iso8601_timestamp_nanos", "from_iso8601_date",
        "to_iso8601", "format_datetime", "parse_datetime", "from_unixtime", "from_unixtime_nanos",
        "to_unixtime", "at_timezone", "with_timezone", "timezone_hour", "timezone_minute",
        "human_readable_seconds", "parse_duration", "to_milliseconds", "now", "today",
        # json (values passed in, not files)
        "json_extract", "json_extract_scalar", "json_parse", "json_format", "json_size", "json_array_length",
        "json_array_get", "json_array_contains", "is_json_scalar", "json_array", "json_object", "json_query",
        "json_value", "json_exists",
        # conditionals and types
        "coalesce", "nullif", "if", "typeof", "try", "try_cast",
        # arrays and maps
        "cardinality", "element_at", "contains", "array_union", "arrays_overlap", "array_join", "array_distinct",
        "array_max", "array_min", "array_position", "array_remove", "array_sort", "array_intersect",
        "array_except", "flatten", "sequence", "slice", "shuffle", "zip", "zip_with", "any_match", "all_match",
        "none_match", "filter", "transform", "reduce", "map", "map_keys", "map_values", "map_entries",
        "map_filter", "map_concat", "map_from_entries", "map_zip_with", "transform_keys", "transform_values",
        "array_has_duplicates", "array_duplicates", "combinations", "ngrams", "trim_array",
        # aggregates
        "count", "count_if", "sum", "avg", "min", "max", "min_by", "max_by", "arbitrary", "any_value",
        "array_agg", "listagg", "string_agg", "bool_and", "bool_or", "every", "checksum", "geometric_mean",
        "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "corr", "covar_pop",
        "covar_samp", "regr_slope", "regr_intercept", "kurtosis", "skewness", "histogram", "map_agg",
        "multimap_agg", "approx_distinct", "approx_percentile", "approx_most_frequent", "approx_set", "merge",
        "value_at_quantile", "values_at_quantiles", "qdigest_agg", "tdigest_agg", "numeric_histogram",
        "bitwise_and_agg", "bitwise_or_agg", "bitwise_xor_agg", "median", "mode",
        # windows
        "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value",
        "last_value", "nth_value",
        # statistics and geo (pure arithmetic)
        "cosine_similarity", "cosine_distance", "normal_cdf", "inverse_normal_cdf", "beta_cdf",
        "inverse_beta_cdf", "wilson_interval_lower", "wilson_interval_upper", "great_circle_distance",
    }
)  # fmt: skip
_TRINO_ALLOWED: frozenset[str] = frozenset(
    {
        "bitwise_left_shift", "bitwise_right_shift", "bitwise_right_shift_arithmetic", "from_base",
        "to_base", "from_utf8", "to_utf8", "from_base32", "to_base32", "from_base64url", "to_base64url",
        "from_big_endian_32", "from_big_endian_64", "to_big_endian_32", "to_big_endian_64",
        "from_ieee754_32", "from_ieee754_64", "to_ieee754_32", "to_ieee754_64", "spooky_hash_v2_32",
        "spooky_hash_v2_64", "hmac_md5", "hmac_sha1", "hmac_sha256", "hmac_sha512", "split", "split_to_map",
        "split_to_multimap", "parse_data_size", "reduce_agg", "set_agg", "set_union",
        "map_top_n", "array_histogram", "contains_sequence", "char2hexint", "index",
    }
)  # fmt: skip
_DUCKDB_ALLOWED: frozenset[str] = frozenset(
    {
        "epoch", "epoch_ms", "epoch_us", "epoch_ns", "make_date", "make_time", "make_timestamp", "strftime",
        "strptime", "time_bucket", "isodow", "isoyear", "yearweek", "dayname", "monthname", "century",
        "decade", "millennium", "list_value", "list_extract", "list_element", "list_contains", "list_has",
        "list_distinct", "list_sort", "list_reverse_sort", "list_concat", "list_filter", "list_transform",
        "list_reduce", "array_length", "len", "string_split", "str_split", "string_split_regex", "prefix",
        "suffix", "nfc_normalize", "strip_accents", "lcase", "ucase", "hash", "even", "gamma", "lgamma",
        "arg_max", "arg_min", "fsum", "favg", "product", "bit_and", "bit_or", "bit_xor", "mad",
        "quantile_cont", "quantile_disc", "quantile", "entropy", "list", "first", "last",
        "approx_count_distinct", "approx_quantile", "reservoir_quantile", "json_extract_string",
        "json_extract_path", "json_keys", "json_type", "json_valid", "json_structure", "to_json",
        "format_bytes", "to_years", "to_months", "to_days", "to_hours", "to_minutes", "to_seconds",
    }
)  # fmt: skip
_POSTGRES_ALLOWED: frozenset[str] = frozenset(
    {
        "to_char", "to_number", "to_date", "to_timestamp", "age", "justify_days", "justify_hours",
        "justify_interval", "string_to_array", "array_to_string", "array_length", "array_upper",
        "array_lower", "unnest", "generate_series", "statement_timestamp", "transaction_timestamp",
        "clock_timestamp", "date_bin", "encode", "decode", "jsonb_extract_path", "jsonb_extract_path_text",
        "json_extract_path", "json_extract_path_text", "jsonb_array_length", "jsonb_typeof", "json_typeof",
        "div", "scale", "trim_scale", "regexp_substr", "regexp_instr",
    }
)  # fmt: skip
_ALLOWED_BY_DIALECT: dict[str, frozenset[str]] = {
    "trino": _TRINO_ALLOWED,
    "duckdb": _DUCKDB_ALLOWED,
    "postgres": _POSTGRES_ALLOWED,
}


def _is_denied_name(name: str) -> bool:
    return name in _DENIED_NAMES or name.startswith(_DENIED_PREFIXES)


_ALLOWED: dict[str, frozenset[str]] = {
    dialect: _COMMON_ALLOWED | extra for dialect, extra in _ALLOWED_BY_DIALECT.items()
}
_CONFLICTS = sorted(name for names in _ALLOWED.values() for name in names if _is_denied_name(name))
if _CONFLICTS:  # a curation mistake must not ship
    raise RuntimeError(f"function allowlist contains denied names: {', '.join(_CONFLICTS)}")

# --- classes -----------------------------------------------------------------------------------------------

# Modeled functions that do I/O, call external services, or expose the backend's session, not the gateway's.
_DENIED_CLASSES: tuple[type[exp.Expr], ...] = (
    exp.ReadCSV,
    exp.ReadParquet,
    exp.ToFile,
    exp.Secret,
    exp.DynamicIdentifier,
    exp.ObjectId,
    exp.NextValueFor,
    exp.GapFill,
    exp.GenerateTable,
    exp.VectorSearch,
    exp.FeaturesAtTime,
    # AI / ML: calls to model endpoints outside the warehouse
    exp.AIAgg,
    exp.AIClassify,
    exp.AIEmbed,
    exp.AIForecast,
    exp.AIGenerate,
    exp.AISimilarity,
    exp.AISummarizeAgg,
    exp.GenerateBool,
    exp.GenerateDouble,
    exp.GenerateInt,
    exp.GenerateEmbedding,
    exp.GenerateText,
    exp.MLForecast,
    exp.MLTranslate,
    exp.Predict,
    # the backend's session and identity (the gateway answers current_user/catalog/schema/timezone/version)
    exp.CurrentAccount,
    exp.CurrentAccountName,
    exp.CurrentAvailableRoles,
    exp.CurrentClient,
    exp.CurrentDatabase,
    exp.CurrentIpAddress,
    exp.CurrentOrganizationName,
    exp.CurrentOrganizationUser,
    exp.CurrentRegion,
    exp.CurrentRole,
    exp.CurrentRoleType,
    exp.CurrentSchemas,
    exp.CurrentSecondaryRoles,
    exp.CurrentSession,
    exp.CurrentStatement,
    exp.CurrentTransaction,
    exp.CurrentUserId,
    exp.CurrentWarehouse,
    exp.SessionUser,
    # call-like nodes that are not functions: running other SQL or procedures, stages, semantic views
    exp.Execute,
    exp.StoredProcedure,
    exp.UserDefinedFunction,
    exp.SemanticView,
    exp.DirectoryStage,
)
# Nodes whose function name is free text: judged by the allowlist, like `exp.Anonymous`.
_NAMED_CLASSES: tuple[type[exp.Expr], ...] = (exp.Anonymous, exp.AnonymousAggFunc, exp.ParameterizedAgg)


class _Kind(Enum):
    OTHER = 0  # not a call
    MODELED = 1  # a modeled, allowed function
    NAMED = 2  # judged by name against the allowlist
    DENIED = 3


def _classify(cls: type[exp.Expr]) -> _Kind:
    if issubclass(cls, _NAMED_CLASSES):
        return _Kind.NAMED
    if issubclass(cls, _DENIED_CLASSES):
        return _Kind.DENIED
    if not issubclass(cls, exp.Func):
        return _Kind.OTHER
    try:
        names = cls.sql_names()
    except NotImplementedError:  # abstract bases (Func, AggFunc): never a node of a parsed query
        names = []
    if any(_is_denied_name(name.lower()) for name in names):
        return _Kind.DENIED
    return _Kind.MODELED


def _all_subclasses(cls: type[exp.Expr]) -> set[type[exp.Expr]]:
    found: set[type[exp.Expr]] = set()
    stack = [cls]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return found


# type -> verdict for every node class known now; classes defined later (dialect modules) are added on sight.
_KINDS: dict[type[exp.Expr], _Kind] = {cls: _classify(cls) for cls in _all_subclasses(exp.Expr)}


def check_functions(tree: exp.Expr, *, dialect: str) -> None:
    """Raise `PermissionDenied` for the first call in `tree` that may read outside the query's tables.

    `dialect` is the dialect `tree` was parsed in (the client's); it selects which unmodeled function names
    are allowed. An unknown dialect gets only the names common to all.
    """
    allowed = _ALLOWED.get(dialect.lower(), _COMMON_ALLOWED)
    kinds = _KINDS
    for node in tree.walk():
        cls = type(node)
        kind = kinds.get(cls)
        if kind is None:
            kind = kinds[cls] = _classify(cls)
        if kind is _Kind.OTHER:
            continue
        parent = node.parent
        if isinstance(parent, exp.Dot) and node.arg_key == "expression":
            raise PermissionDenied(f"function {_qualified(parent, node)} is not allowed: qualified function name")
        if isinstance(parent, exp.Table | exp.Lateral) and node.arg_key == "this":
            # DuckDB's histogram(tbl, col) is an aggregate in a projection but reads table tbl raw in FROM.
            raise PermissionDenied(f"table function {_name(node)} is not allowed")
        if kind is _Kind.NAMED:
            name = node.name.lower()
            if name not in allowed or _is_denied_name(name):
                raise PermissionDenied(f"function {name or node.sql(dialect)[:60]} is not allowed")
        elif kind is _Kind.DENIED:
            raise PermissionDenied(f"function {_sql_name(node)} is not allowed")


def _name(node: exp.Expr) -> str:
    return node.name.lower() if isinstance(node, _NAMED_CLASSES) else _sql_name(node)


def _sql_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return node.key


def _qualified(dot: exp.Dot, node: exp.Expr) -> str:
    return f"{dot.this.sql()[:60]}.{_name(node)}"


def callable_functions(*, dialect: str) -> list[tuple[str, str]]:
    """(name, "scalar" | "aggregate" | "window") of every function `check_functions` lets a query call in
    `dialect`: what SHOW FUNCTIONS lists. Modeled functions go by sqlglot's name for them, which is the
    common SQL name (lower, abs, date_trunc, ...)."""
    found: dict[str, str] = {}
    for cls, kind in list(_KINDS.items()):
        if kind is not _Kind.MODELED or not issubclass(cls, exp.Func):
            continue
        try:
            names = cls.sql_names()
        except NotImplementedError:
            continue
        category = "aggregate" if issubclass(cls, exp.AggFunc) else "window" if issubclass(cls, exp.Window) else \
            "scalar"
        for name in names:
            if name.isidentifier():
                found.setdefault(name.lower(), category)
    for name in _ALLOWED.get(dialect.lower(), _COMMON_ALLOWED):
        found.setdefault(name, "scalar")
    return sorted(found.items())
