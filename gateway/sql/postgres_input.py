"""PostgreSQL's input syntax for literals whose meaning differs from Trino's, for statements parsed in the
postgres dialect (pgwire clients).

`'\\x41ff'::bytea` is hex input in PostgreSQL, and `'a\\\\b\\101'::bytea` its escape format (`\\\\` a
backslash, `\\ooo` an octal byte, anything else its UTF-8 bytes). sqlglot keeps such a cast as a cast of the
text, which each engine would read its own way (DuckDB reads `\\x41` inside a blob literal as one escaped byte,
and `ff` as two characters). The bytes are decoded here, once, into a hex literal, which every backend's
generator writes as that engine's own binary literal.
"""

from __future__ import annotations

import re
from typing import TypeVar, cast

from sqlglot import exp

from gateway.errors import UserError

E = TypeVar("E", bound=exp.Expr)

_ESCAPE = re.compile(r"\\\\|\\[0-3][0-7]{2}|\\|[^\\]+", re.S)


def bytea_input(text: str) -> bytes:
    """The bytes PostgreSQL's bytea input function reads from `text`; UserError where it refuses it."""
    if text.startswith("\\x"):
        digits = "".join(text[2:].split())
        try:
            return bytes.fromhex(digits)
        except ValueError:
            raise _invalid(text) from None
    out = bytearray()
    for piece in _ESCAPE.findall(text):
        if piece == "\\\\":
            out.append(0x5C)
        elif piece.startswith("\\") and len(piece) == 4:
            out.append(int(piece[1:], 8))
        elif piece == "\\":
            raise _invalid(text)
        else:
            try:
                out.extend(piece.encode("utf-8"))
            except UnicodeEncodeError:  # a lone surrogate: no UTF-8 client could have sent it
                raise _invalid(text) from None
    return bytes(out)


def _invalid(text: str) -> UserError:
    return UserError(f"invalid input syntax for type bytea: {text[:40]!r}", error_name="INVALID_CAST_ARGUMENT")


def postgres_literals(tree: E) -> E:
    """`tree` with every cast of a text literal to bytea replaced by the hex literal of its bytes."""
    def decode(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Cast) and node.to.is_type(exp.DType.VARBINARY) and \
                isinstance(node.this, exp.Literal) and node.this.is_string:
            return exp.cast(exp.HexString(this=bytea_input(node.this.name).hex()), exp.DType.VARBINARY)
        return node

    return cast(E, tree.transform(decode))  # the root is a statement, never a cast: its type is kept
