"""DuckDB's error messages in Trino's words: what a Trino user would have read for the same mistake.

`trino_message(text)` takes DuckDB's message (already without its SQL excerpt and with row values redacted)
and returns (Trino error name or None, message). Known shapes are reworded (`Column 'x' cannot be resolved`,
`Division by zero`, `bigint addition overflow`, `Cannot cast '…' to integer`, ...); anything else loses the
engine's own framing: the "Binder Error:"-style prefix, and every line after the first (candidate lists,
hints naming DuckDB settings). A message never names the engine or its internal types.
"""

from __future__ import annotations

import re

_PREFIX = re.compile(r"^(?:[A-Z][A-Za-z]*\s)+Error:\s*")
_INTERNAL_TYPES = {"INT8": "tinyint", "INT16": "smallint", "INT32": "integer", "INT64": "bigint", "INT128": "hugeint",
                   "UINT8": "utinyint", "UINT16": "usmallint", "UINT32": "uinteger", "UINT64": "ubigint",
                   "FLOAT": "real", "DOUBLE": "double", "VARCHAR": "varchar", "BOOL": "boolean",
                   "BOOLEAN": "boolean", "DATE": "date", "TIMESTAMP": "timestamp", "INTEGER": "integer",
                   "BIGINT": "bigint", "SMALLINT": "smallint", "TINYINT": "tinyint", "TIME": "time",
                   "INTERVAL": "interval", "BLOB": "varbinary", "UUID": "uuid"}
_TYPE_WORD = re.compile(r"\b(" + "|".join(sorted(_INTERNAL_TYPES, key=len, reverse=True)) + r")\b")

_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r'Referenced column "(?P<c>[^"]*)" not found'), "COLUMN_NOT_FOUND", "Column '{c}' cannot be resolved"),
    (re.compile(r'(?:Table|Values list) "(?P<t>[^"]*)" does not have a column named "(?P<c>[^"]*)"'),
     "COLUMN_NOT_FOUND", "Column '{t}.{c}' cannot be resolved"),
    (re.compile(r'Referenced table "(?P<t>[^"]*)" not found'), "COLUMN_NOT_FOUND",
     "Column prefix '{t}' cannot be resolved"),
    (re.compile(r'column "(?P<c>[^"]*)" must appear in the GROUP BY clause'), "GENERIC_USER_ERROR",
     "'{c}' must be an aggregate expression or appear in GROUP BY clause"),
    (re.compile(r"(?:Scalar|Aggregate|Table) Function with name (?P<f>\S+?) does not exist"), "FUNCTION_NOT_FOUND",
     "Function '{f}' not registered"),
    (re.compile(r"No function matches the given name and argument types '(?P<f>[^(']+)\("), "FUNCTION_NOT_FOUND",
     "Unexpected parameters for function {f}"),
    (re.compile(r"Table with name (?P<t>[^ !]+) does not exist"), "TABLE_NOT_FOUND", "Table '{t}' does not exist"),
    (re.compile(r"Division by zero"), "DIVISION_BY_ZERO", "Division by zero"),
    (re.compile(r"Overflow in (?P<op>addition|subtraction|multiplication) of (?P<type>\w+)"),
     "NUMERIC_VALUE_OUT_OF_RANGE", "{type} {op} overflow"),
    (re.compile(r"^Cannot cast (?P<rest>.*)$"), "INVALID_CAST_ARGUMENT", "Cannot cast {rest}"),
    (re.compile(r"Could not convert string (?P<v>'[^']*') to (?P<type>\w+)"), "INVALID_CAST_ARGUMENT",
     "Cannot cast {v} to {type}"),
    (re.compile(r"Could not convert (?P<what>.+?) to (?P<type>\w+)"), "INVALID_CAST_ARGUMENT",
     "Cannot cast {what} to {type}"),
]


def _type_name(word: str) -> str:
    return _INTERNAL_TYPES.get(word.upper(), word.lower())


def trino_message(message: str) -> tuple[str | None, str]:
    text = _PREFIX.sub("", message.strip()).strip()
    for pattern, name, template in _RULES:
        found = pattern.search(text)
        if found is not None:
            values = {k: (_type_name(v) if k == "type" else v) for k, v in found.groupdict().items()}
            return name, template.format(**values)
    first = text.splitlines()[0].strip() if text else "the query failed"
    return None, _TYPE_WORD.sub(lambda m: _type_name(m.group(1)), first).rstrip("!")
