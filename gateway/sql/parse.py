"""Parsing client SQL (Trino dialect) with sqlglot: exactly one statement, or a clear SYNTAX_ERROR."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.trino import Trino
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import Token, TokenType

from gateway.errors import SqlSyntaxError

CLIENT_DIALECT = "trino"
TOO_DEEP = "the statement is nested too deeply to analyse; simplify it"

# sqlglot warns when it falls back to a generic Command; the statement classifier decides what those mean.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

Tokenizer = Trino.Tokenizer


# The words a Trino statement can start with, as its grammar lists them after "mismatched input ... Expecting:".
STATEMENT_STARTS = ("ALTER", "ANALYZE", "CALL", "COMMENT", "COMMIT", "CREATE", "DEALLOCATE", "DELETE", "DENY", "DESC",
                    "DESCRIBE", "DROP", "EXECUTE", "EXPLAIN", "GRANT", "INSERT", "MERGE", "PREPARE", "REFRESH",
                    "RESET", "REVOKE", "ROLLBACK", "SELECT", "SET", "SHOW", "START", "TABLE", "TRUNCATE", "UPDATE",
                    "USE", "VALUES", "WITH")
_EXPECTED = re.compile(r"^Expect(?:ed|ing) (?P<what>[A-Za-z()_ ,']+?)(?: after .*| but got .*)?$")


def not_a_statement(token: Token) -> SqlSyntaxError:
    """Trino's answer to a statement that starts with a word no statement starts with."""
    expecting = ", ".join(f"'{w}'" for w in STATEMENT_STARTS)
    return SqlSyntaxError(f"line {token.line}:{_start_column(token)}: mismatched input '{token.text[:100]}'. "
                          f"Expecting: {expecting}, <query>", line=token.line, column=_start_column(token))


def _start_column(token: Token) -> int:
    return max(1, token.col - len(token.text) + 1)


def mismatched_input(sql: str, detail: Mapping[str, Any]) -> SqlSyntaxError:
    """A sqlglot parse error as Trino words it: `line L:C: mismatched input 'x'[. Expecting: ...]`, never
    sqlglot's own description (it names Python classes and tokens)."""
    try:
        tokens = Tokenizer(dialect=CLIENT_DIALECT).tokenize(sql)
    except TokenError:
        tokens = []
    if tokens and tokens[0].token_type != TokenType.L_PAREN and tokens[0].text.upper() not in STATEMENT_STARTS:
        return not_a_statement(tokens[0])
    line, column = int(detail.get("line") or 1), int(detail.get("col") or 1)
    highlight = str(detail.get("highlight") or "")
    description = str(detail.get("description") or "")
    at_end = "SENTINEL" in description or not highlight
    if at_end and tokens:
        last = tokens[-1]
        line, column, shown = last.line, last.col + 1, "<EOF>"
    else:
        column, shown = max(1, column - len(highlight) + 1), highlight[:100]
    expected = _EXPECTED.match(description.split(" but got ")[0])
    if expected is not None:
        suffix = f". Expecting: {expected.group('what')}"
    elif description.startswith("Required keyword"):
        suffix = ". Expecting: <expression>"
    else:
        suffix = ""
    return SqlSyntaxError(f"line {line}:{column}: mismatched input '{shown}'{suffix}", line=line, column=column)


def parse_one_statement(sql: str, *, dialect: str = CLIENT_DIALECT) -> exp.Expr:
    """Parse `sql` into one statement tree. A single trailing semicolon is tolerated, as most clients strip
    one; several statements are refused, because the gateway decides per statement."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except ParseError as error:
        raise mismatched_input(sql, error.errors[0] if error.errors else {}) from None
    except TokenError as error:
        raise SqlSyntaxError(f"line 1:1: cannot read the statement: {str(error).split(chr(10))[0][:200]}",
                             line=1, column=1) from None
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
