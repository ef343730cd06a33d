"""Column masks as sqlglot expressions: `mask_expression(mask, column, column_type)`.

Built-ins are modelled on Apache Ranger's mask types:

    redact        letters -> 'x', digits -> 'n', everything else kept          (strings)
    last4/first4  all but the last/first 4 letters and digits -> 'x'           (strings)
    email_domain  'xxxx@domain'; NULL when the value has no '@'                (strings)
    hash          keyed hash: lower-case hex sha256(k || sha256(k || value)), k   (strings)
                  derived from the deployment's mask key (gateway/mask_key.py); the same
                  digest on every backend (PostgreSQL and Trino hash the UTF-8 bytes of the text)
    year_only     truncated to 1 January of its year                           (date, timestamp)
    null          NULL                                                         (any type)

A mask keeps the column's type, so clients see the same schema whether or not they are masked: every result
is CAST back to the column type. Where a built-in cannot keep the type (`last4` of a bigint) it yields a
typed NULL instead, which reveals nothing. `{sql: "..."}` templates are admin-written SQL in the backend
dialect, with `{column}` standing for the column and `gateway_hash(x)` for the keyed hash of any value;
`:name` placeholders in them are bound later, with the row filter's.

Which masks resist a dictionary attack: `hash`, `gateway_hash(...)`, `redact`, `null` and `{sql}` masks that
only use those. Not: `last4`, `first4`, `email_domain`, `year_only`, which show part of the value by design,
and `{sql}` templates over unkeyed md5/sha (anyone can hash candidate values and compare).
"""

from __future__ import annotations

import string
from collections.abc import Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from gateway.policy.model import MaskRef

_LETTERS = string.ascii_uppercase + string.ascii_lowercase
_COLUMN_SENTINEL = "__gateway_mask_column__"


class MaskError(ValueError):
    """A mask that cannot be built (bad template). The caller denies the table rather than show raw data."""


def parse_type(trino_type: str) -> exp.DataType:
    """Trino type text as `information_schema.columns.data_type` shows it: 'varchar(25)', 'decimal(15,2)'."""
    return exp.DataType.build(trino_type, dialect="trino")


def mask_expression(
    mask: MaskRef, column: exp.Expr, column_type: exp.DataType, *, dialect: str, hash_key: str
) -> tuple[exp.Expr, str]:
    """The masked value of `column`, CAST to `column_type`, and how it was masked (for "rules applied").
    `hash_key` is the text standing for the hash key in planned SQL (the mask key's sentinel)."""
    if mask.sql is not None:
        return _cast(_template(mask.sql, column, dialect, hash_key), column_type), "sql"
    name = mask.builtin or "null"
    if name == "null":
        return _null(column_type), name
    build = _BY_TYPE.get((name, _kind(column_type)))
    if build is None:
        return _null(column_type), f"{name} (null: not applicable to {column_type.sql('trino')})"
    return _cast(build(column, hash_key, dialect), column_type), name


def _kind(column_type: exp.DataType) -> str:
    if column_type.is_type(*exp.DataType.TEXT_TYPES):
        return "string"
    if column_type.is_type(exp.DType.DATE, exp.DType.DATE32):
        return "date"
    if column_type.is_type(*exp.DataType.TEMPORAL_TYPES):
        return "timestamp"
    return "other"


def _redact(column: exp.Expr) -> exp.Expr:
    return _translate(column, _LETTERS + string.digits, "x" * len(_LETTERS) + "n" * len(string.digits))


def _hide(column: exp.Expr) -> exp.Expr:
    chars = _LETTERS + string.digits
    return _translate(column, chars, "x" * len(chars))


def _last4(column: exp.Expr) -> exp.Expr:
    # Values of 4 characters or fewer are shown whole, as Ranger's MASK_SHOW_LAST_4 does.
    hidden = exp.Substring(this=column.copy(), start=_number(1), length=_length_minus(column, 4))
    shown = exp.Substring(this=column.copy(), start=_length_minus(column, 3))
    return _if_longer_than_4(column, exp.DPipe(this=_hide(hidden), expression=shown, safe=True))


def _first4(column: exp.Expr) -> exp.Expr:
    shown = exp.Substring(this=column.copy(), start=_number(1), length=_number(4))
    hidden = exp.Substring(this=column.copy(), start=_number(5))
    return _if_longer_than_4(column, exp.DPipe(this=shown, expression=_hide(hidden), safe=True))


def _email_domain(column: exp.Expr) -> exp.Expr:
    at = exp.StrPosition(this=column.copy(), substr=exp.Literal.string("@"))
    domain = exp.Substring(this=column.copy(), start=at.copy())
    masked = exp.DPipe(this=exp.Literal.string("xxxx"), expression=domain, safe=True)
    # Without the WHEN, a value with no '@' would come back whole from SUBSTRING(x, 0).
    return exp.Case(ifs=[exp.If(this=exp.GT(this=at, expression=_number(0)), true=masked)])


def keyed_hash(value: exp.Expr, hash_key: str, dialect: str) -> exp.Expr:
    """sha256(k || sha256(k || value)) in lower-case hex; NULL stays NULL."""
    def sha256_keyed(text: exp.Expr) -> exp.Expr:
        keyed = exp.DPipe(this=exp.Literal.string(hash_key), expression=text)
        if dialect == "postgres":  # sha256 takes bytea there, and answers bytea
            utf8 = exp.func("convert_to", keyed, exp.Literal.string("UTF8"))
            return exp.func("encode", exp.func("sha256", utf8), exp.Literal.string("hex"))
        if dialect == "trino":  # sha256 takes varbinary there, answers varbinary; to_hex writes upper case
            digest = exp.Anonymous(this="sha256", expressions=[exp.Anonymous(this="to_utf8", expressions=[keyed])])
            return exp.Lower(this=exp.Anonymous(this="to_hex", expressions=[digest]))
        return exp.SHA2(this=keyed, length=_number(256))

    return sha256_keyed(sha256_keyed(exp.Cast(this=value.copy(), to=exp.DataType.build("varchar"))))


def _year(column: exp.Expr) -> exp.Expr:
    return exp.TimestampTrunc(this=column.copy(), unit=exp.var("YEAR"))


def _unkeyed(build: Callable[[exp.Expr], exp.Expr]) -> Callable[[exp.Expr, str, str], exp.Expr]:
    return lambda column, _hash_key, _dialect: build(column)


_BY_TYPE: dict[tuple[str, str], Callable[[exp.Expr, str, str], exp.Expr]] = {
    ("redact", "string"): _unkeyed(_redact),
    ("last4", "string"): _unkeyed(_last4),
    ("first4", "string"): _unkeyed(_first4),
    ("email_domain", "string"): _unkeyed(_email_domain),
    ("hash", "string"): keyed_hash,
    ("year_only", "date"): _unkeyed(_year),
    ("year_only", "timestamp"): _unkeyed(_year),
}


def _template(sql: str, column: exp.Expr, dialect: str, hash_key: str) -> exp.Expr:
    # The column goes in as a node, not as text, so quoting in the column name cannot change the template.
    try:
        template = sqlglot.parse_one(sql.replace("{column}", _COLUMN_SENTINEL), read=dialect)
    except ParseError as exc:
        raise MaskError(f"mask template {sql!r} does not parse: {exc}") from exc
    if isinstance(template, exp.Query | exp.Command | exp.DDL | exp.DML):
        raise MaskError(f"mask template {sql!r} must be an expression")
    if hash_key in sql or "gwmaskkey" in sql.lower():
        raise MaskError("mask templates cannot name the mask key")
    for ref in list(template.find_all(exp.Column)):
        if ref.name == _COLUMN_SENTINEL and not ref.table:
            ref.replace(column.copy())
    if isinstance(template, exp.Column) and template.name == _COLUMN_SENTINEL:
        return column.copy()
    for call in list(template.find_all(exp.Anonymous)):
        if call.name.lower() == "gateway_hash":
            if len(call.expressions) != 1:
                raise MaskError("gateway_hash takes one argument")
            hashed = keyed_hash(call.expressions[0], hash_key, dialect)
            if call is template:
                return hashed
            call.replace(hashed)
    return template


def _translate(value: exp.Expr, source: str, target: str) -> exp.Expr:
    return exp.func("translate", value, exp.Literal.string(source), exp.Literal.string(target))


def _if_longer_than_4(column: exp.Expr, masked: exp.Expr) -> exp.Expr:
    longer = exp.GT(this=exp.Length(this=column.copy()), expression=_number(4))
    return exp.Case(ifs=[exp.If(this=longer, true=masked)], default=column.copy())


def _length_minus(column: exp.Expr, n: int) -> exp.Expr:
    return exp.Sub(this=exp.Length(this=column.copy()), expression=_number(n))


def _number(n: int) -> exp.Expr:
    return exp.Literal.number(n)


def _cast(value: exp.Expr, column_type: exp.DataType) -> exp.Expr:
    return exp.Cast(this=value, to=column_type.copy())


def _null(column_type: exp.DataType) -> exp.Expr:
    return _cast(exp.null(), column_type)
