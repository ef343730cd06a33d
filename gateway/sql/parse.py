"""Parsing client SQL (Trino dialect) with sqlglot: exactly one statement, or a clear SYNTAX_ERROR."""

from __future__ import annotations

import logging

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
    return statements[0]
