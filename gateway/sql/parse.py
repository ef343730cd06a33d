"""Parsing client SQL (Trino dialect) with sqlglot: exactly one statement, or a clear SYNTAX_ERROR."""

from __future__ import annotations

import logging
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from gateway.errors import SqlSyntaxError

CLIENT_DIALECT = "trino"
TOO_DEEP = "the statement is nested too deeply to analyse; simplify it"

# sqlglot warns when it falls back to a generic Command; the statement classifier decides what those mean.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


def parse_one_statement(sql: str, *, dialect: str = CLIENT_DIALECT) -> exp.Expr:
    """Parse `sql` into one statement tree. A single trailing semicolon is tolerated, as most clients strip
    one; several statements are refused, because the gateway decides per statement."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except ParseError as error:
        detail = error.errors[0] if error.errors else {}
        line, column = detail.get("line"), detail.get("col")
        description = str(detail.get("description") or "invalid statement").split(" but got <Token")[0]
        where = f"line {line}:{column}: " if line else ""
        raise SqlSyntaxError(f"{where}{description}", line=line, column=column) from None
    except TokenError as error:
        raise SqlSyntaxError(f"cannot read the statement: {error}") from None
    except RecursionError:
        raise SqlSyntaxError(TOO_DEEP) from None
    if not statements:
        raise SqlSyntaxError("the statement is empty")
    if len(statements) > 1:
        raise SqlSyntaxError(
            f"only one statement per request is allowed, found {len(statements)}", line=1, column=1
        )
    for literal in statements[0].find_all(exp.UnicodeString):
        check_unicode_escapes(literal)
    return statements[0]


def check_unicode_escapes(literal: exp.UnicodeString) -> None:
    """A `U&'...'` literal must name Unicode scalar values only (as Trino requires): a lone surrogate
    (`\\D800`) or a code point beyond U+10FFFF is text no backend, store or client can encode. Pairs of
    surrogates that make one character are accepted, as the generators join them."""
    escape = literal.args.get("escape")
    mark = re.escape(escape.name if isinstance(escape, exp.Expr) else "\\")
    units: list[int] = []
    for match in re.finditer(rf"{mark}(?:\+([0-9a-fA-F]{{6}})|([0-9a-fA-F]{{4}})|{mark})", literal.name):
        digits = match.group(1) or match.group(2)
        if digits is None:
            units.append(-1)
            continue
        value = int(digits, 16)
        if value > 0x10FFFF:
            raise SqlSyntaxError(f"invalid Unicode escape {match.group()!r}: beyond U+10FFFF")
        units.append(value)
    for index, value in enumerate(units):
        high = 0xD800 <= value <= 0xDBFF
        low = 0xDC00 <= value <= 0xDFFF
        follows_high = index > 0 and 0xD800 <= units[index - 1] <= 0xDBFF
        precedes_low = index + 1 < len(units) and 0xDC00 <= units[index + 1] <= 0xDFFF
        if (high and not precedes_low) or (low and not follows_high):
            raise SqlSyntaxError(f"invalid Unicode escape: U+{value:04X} is a lone surrogate, not a character")
