"""Plan templates: a statement that differs from one planned before only in its comparison constants reuses
that plan, with the new constants put in its backend SQL (no parse, resolve, rewrite or generate again).

A dashboard filter or a point lookup (`WHERE c_custkey = 42`, then 43, ...) misses the plan cache every time,
because the cache is keyed by the statement's text. Here such statements share a key: their text with each
plain string and integer literal cut out (the *frame*) and each literal's class (string; integer up to
2^31 - 1; integer up to 2^63 - 1), since Trino types an integer literal by its size.

A template is proven, not assumed. When a frame is seen a second time the planner plans it once more with
*probe* literals — unguessable strings and integers of the same classes — and the template is kept only if:

- every literal is a plain operand of a comparison (`=`, `<>`, `<`, `<=`, `>`, `>=`, `IN (...)`, `BETWEEN`)
  with a column, in a WHERE or HAVING condition made of AND, OR and NOT: no function, cast or expression
  around it whose planning could depend on its value;
- the probe plan equals the real one in everything but its SQL (tables, rules, masks, columns, types);
- each probe appears in the probe plan's SQL exactly as the backend dialect writes it, and putting the real
  literals in those places gives the real plan's SQL character for character.

Anything else (a literal the rewrite moved or changed, a probe that failed to plan) marks the frame as not
templated, and it is planned in full each time, as before. Values are rendered by the same sqlglot generator
the planner uses, so a quote or backslash in a new value is written exactly as planning would write it.
"""

from __future__ import annotations

import functools
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import Dialect, exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import Token, TokenType
from sqlglot.tokens import Tokenizer

STRING, INTEGER, BIGINT = "string", "integer", "bigint"
_CLASS_LIMITS = ((INTEGER, 2**31), (BIGINT, 2**63))
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_CONNECTIVES = (exp.And, exp.Or, exp.Not, exp.Paren)


@dataclass(frozen=True)
class CutStatement:
    """A statement split into its frame (the text around the literals) and its literals."""

    frame: tuple[str, ...]  # len(values) + 1 pieces of text
    classes: tuple[str, ...]
    values: tuple[str, ...]  # a string's content (quotes undone) or an integer's digits

    @property
    def key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return self.frame, self.classes

    def with_values(self, values: Sequence[str]) -> str:
        """The statement's text with other literals of the same classes."""
        parts = [self.frame[0]]
        for kind, value, text in zip(self.classes, values, self.frame[1:], strict=True):
            parts.append("'" + value.replace("'", "''") + "'" if kind == STRING else value)
            parts.append(text)
        return "".join(parts)

    def probes(self) -> tuple[str, ...]:
        """Values of the same classes that occur nowhere else: a random stem, then the literal's place."""
        stem = secrets.token_hex(8)
        values = []
        for index, kind in enumerate(self.classes):
            if kind == STRING:
                values.append(f"gwprobe{stem}x{index}")
            else:  # ten digits below 2^31, nineteen below 2^63: the class of the literal it stands for
                low, high = (10**9, 2**31 - 1) if kind == INTEGER else (10**18, 2**63 - 1)
                values.append(str(low + secrets.randbelow(high - low)))
        return tuple(values)


def cut_literals(sql: str, dialect: str) -> CutStatement | None:
    """`sql` cut at its plain string and integer literals; None when it has none or does not tokenize."""
    try:
        tokens = _tokens(sql, dialect)
    except SqlglotError:
        return None
    frame: list[str] = []
    classes: list[str] = []
    values: list[str] = []
    end = 0
    for token in tokens:
        kind = _literal_class(token.token_type, token.text, sql[token.start:token.end + 1])
        if kind is None:
            continue
        frame.append(sql[end:token.start])
        classes.append(kind)
        values.append(token.text)
        end = token.end + 1
    if not values:
        return None
    frame.append(sql[end:])
    return CutStatement(tuple(frame), tuple(classes), tuple(values))


_local = threading.local()


def _tokens(sql: str, dialect: str) -> list[Token]:
    """`sql`'s tokens, by one tokenizer per dialect and thread: making a tokenizer costs more than tokenizing a
    short statement, and one is not safe to share between threads (large statements plan on worker threads)."""
    tokenizers: dict[str, Tokenizer] | None = getattr(_local, "tokenizers", None)
    if tokenizers is None:
        tokenizers = _local.tokenizers = {}
    tokenizer = tokenizers.get(dialect)
    if tokenizer is None:
        tokenizer = tokenizers[dialect] = Dialect.get_or_raise(dialect).tokenizer()
    return tokenizer.tokenize(sql)


def _literal_class(token_type: TokenType, text: str, source: str) -> str | None:
    if token_type == TokenType.STRING and source == "'" + text.replace("'", "''") + "'":
        return STRING  # a plain quoted string (not E'', U&'', $$...$$, or one with escapes the dialect reads)
    if token_type == TokenType.NUMBER and text.isdigit() and text.isascii() and source == text:
        number = int(text)
        return next((kind for kind, limit in _CLASS_LIMITS if number < limit), None)
    return None


def literals_are_parameters(tree: exp.Expr, cut: CutStatement, probes: Sequence[str]) -> bool:
    """Whether each probe literal in `tree` (the probe statement, parsed) appears exactly once, as a plain
    operand of a comparison with a column, under a WHERE or HAVING made only of AND, OR and NOT."""
    wanted = {(value, kind == STRING) for value, kind in zip(probes, cut.classes, strict=True)}
    found: list[tuple[str, bool]] = []
    for literal in tree.find_all(exp.Literal):
        identity = (literal.name, bool(literal.is_string))
        if identity in wanted:
            if not _is_comparison_operand(literal):
                return False
            found.append(identity)
    return sorted(found) == sorted(wanted)


def _is_comparison_operand(literal: exp.Literal) -> bool:
    comparison = literal.parent
    if isinstance(comparison, _COMPARISONS):
        other = comparison.expression if comparison.this is literal else comparison.this
        valid = isinstance(other, exp.Column)
    elif isinstance(comparison, exp.In):
        valid = literal.arg_key == "expressions" and isinstance(comparison.this, exp.Column)
    elif isinstance(comparison, exp.Between):
        valid = literal.arg_key in ("low", "high") and isinstance(comparison.this, exp.Column)
    else:
        return False
    node = comparison.parent
    while isinstance(node, _CONNECTIVES):
        node = node.parent
    return valid and isinstance(node, exp.Where | exp.Having)


@dataclass(frozen=True)
class SqlTemplate:
    """Backend SQL with holes: pieces[0] value[slots[0]] pieces[1] ... pieces[-1]."""

    pieces: tuple[str, ...]
    slots: tuple[int, ...]
    classes: tuple[str, ...]
    dialect: str

    def render(self, values: Sequence[str]) -> str:
        written = [_written(value, kind, self.dialect) for value, kind in zip(values, self.classes, strict=True)]
        parts = [self.pieces[0]]
        for slot, piece in zip(self.slots, self.pieces[1:], strict=True):
            parts.append(written[slot])
            parts.append(piece)
        return "".join(parts)


def _written(value: str, kind: str, dialect: str) -> str:
    if kind != STRING and _CANONICAL_DIGITS.fullmatch(value) and _writes_integers_as_digits(dialect):
        return value  # what the generator would write, without building and generating an expression
    literal = exp.Literal.string(value) if kind == STRING else exp.Literal.number(value)
    return literal.sql(dialect=dialect)


_CANONICAL_DIGITS = re.compile(r"0|[1-9][0-9]*")


@functools.cache
def _writes_integers_as_digits(dialect: str) -> bool:
    """Whether the dialect's generator writes an integer literal as its digits (checked once, at each class's
    bounds and between them)."""
    samples = ("0", "7", "2147483647", "2147483648", "1234567890123", "9223372036854775807")
    return all(exp.Literal.number(value).sql(dialect=dialect) == value for value in samples)


def backend_template(probe_sql: str, probes: Sequence[str], classes: Sequence[str], dialect: str) -> SqlTemplate | None:
    """The probe plan's backend SQL with a hole wherever a probe literal is written; None if one is missing."""
    patterns = []
    for value, kind in zip(probes, classes, strict=True):
        written = re.escape(_written(value, kind, dialect))
        patterns.append(written if kind == STRING else rf"(?<![\w.]){written}(?![\w.])")
    matcher = re.compile("|".join(f"({pattern})" for pattern in patterns))
    pieces: list[str] = []
    slots: list[int] = []
    end = 0
    for match in matcher.finditer(probe_sql):
        pieces.append(probe_sql[end:match.start()])
        slots.append((match.lastindex or 1) - 1)
        end = match.end()
    pieces.append(probe_sql[end:])
    if set(slots) != set(range(len(probes))):
        return None
    return SqlTemplate(tuple(pieces), tuple(slots), tuple(classes), dialect)
