"""What kind of statement the client sent, as typed values the pipeline can act on.

sqlglot parses queries into trees but leaves Trino's session and metadata statements (SHOW, PREPARE,
EXECUTE, RESET SESSION, ...) as opaque commands; this module reads those with sqlglot's tokenizer, so
quoting and identifiers follow Trino's rules. Anything not recognised is refused (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from sqlglot import exp
from sqlglot.dialects.trino import Trino
from sqlglot.tokenizer_core import Token, TokenType

from gateway.errors import NotSupported, SqlSyntaxError
from gateway.sql.parse import CLIENT_DIALECT, STATEMENT_STARTS, not_a_statement, parse_one_statement


@dataclass(frozen=True)
class QueryStatement:
    """A read-only query (SELECT, WITH, VALUES, TABLE, set operations)."""

    tree: exp.Query


@dataclass(frozen=True)
class Use:
    catalog: str | None
    schema: str


@dataclass(frozen=True)
class SetSession:
    name: str
    value: str


@dataclass(frozen=True)
class ResetSession:
    name: str


@dataclass(frozen=True)
class Prepare:
    name: str
    sql: str


@dataclass(frozen=True)
class Deallocate:
    name: str


@dataclass(frozen=True)
class Execute:
    """EXECUTE name USING ... (name is None for EXECUTE IMMEDIATE, whose text is in `sql`)."""

    name: str | None
    sql: str | None
    parameters: tuple[exp.Expr, ...] = ()


@dataclass(frozen=True)
class StartTransaction:
    read_only: bool


@dataclass(frozen=True)
class EndTransaction:
    commit: bool


@dataclass(frozen=True)
class Show:
    """SHOW CATALOGS | SCHEMAS | TABLES | COLUMNS | SESSION | FUNCTIONS | CREATE TABLE | STATS | GRANTS | ROLES |
    CURRENT ROLES, and DESCRIBE (= SHOW COLUMNS)."""

    what: str
    target: tuple[str, ...] = ()  # catalog / [catalog.]schema / [catalog.][schema.]table
    like: str | None = None
    escape: str | None = None


@dataclass(frozen=True)
class DescribeOutput:
    name: str


@dataclass(frozen=True)
class DescribeInput:
    name: str


@dataclass(frozen=True)
class Explain:
    query: QueryStatement
    options: tuple[str, ...] = field(default_factory=tuple)
    analyze: bool = False


@dataclass(frozen=True)
class Call:
    """CALL catalog.schema.procedure(...): arguments as (name or None when positional, string value)."""

    procedure: tuple[str, ...]
    arguments: tuple[tuple[str | None, str], ...] = ()


Statement = (QueryStatement | Use | SetSession | ResetSession | Prepare | Deallocate | Execute | StartTransaction
             | EndTransaction | Show | DescribeOutput | DescribeInput | Explain | Call)

_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.TruncateTable,
           exp.Copy)


def classify(sql: str, *, dialect: str = CLIENT_DIALECT) -> Statement:
    """Parse `sql` (one statement, in the client's dialect: Trino unless the frontend says otherwise) and say
    what it is."""
    tree = parse_one_statement(sql, dialect=dialect)
    if isinstance(tree, exp.Query):
        return QueryStatement(tree)
    if isinstance(tree, exp.Use):
        parts = tree.this.parts if isinstance(tree.this, exp.Table) else [tree.this]
        names = [p.name.lower() for p in parts]
        if len(names) == 1:
            return Use(catalog=None, schema=names[0])
        if len(names) == 2:
            return Use(catalog=names[0], schema=names[1])
        raise SqlSyntaxError("USE takes [catalog.]schema")
    if isinstance(tree, exp.Set) and "SESSION" in tree.sql(dialect="trino").upper()[:12]:
        return set_session_from_tree(tree)
    if isinstance(tree, exp.Describe) and isinstance(tree.this, exp.Table) and not tree.args.get("style"):
        return Show("COLUMNS", tuple(p.name.lower() for p in tree.this.parts))
    if isinstance(tree, exp.Transaction):
        text = tree.sql(dialect="trino").upper()
        return StartTransaction(read_only="READ WRITE" not in text)
    if isinstance(tree, exp.Commit):
        return EndTransaction(commit=True)
    if isinstance(tree, exp.Rollback):
        return EndTransaction(commit=False)
    if isinstance(tree, _WRITES):
        raise NotSupported(f"{_statement_name(tree)} is not allowed: the gateway is read-only",
                           error_name="READ_ONLY_VIOLATION")
    return _classify_tokens(sql)


def _statement_name(tree: exp.Expr) -> str:
    return tree.key.upper()


class _Tokenizer(Trino.Tokenizer):
    # sqlglot swallows everything after SHOW/EXECUTE/... into one string; here every token counts.
    COMMANDS: ClassVar[set[TokenType]] = set()


_QUOTED = (TokenType.STRING, TokenType.IDENTIFIER)


def _words(tokens: list[Token]) -> list[Token]:
    """Split multi-word keyword tokens ('RESET SESSION') so statements read one word at a time."""
    result = []
    for token in tokens:
        parts = token.text.split()
        if token.token_type in _QUOTED or len(parts) <= 1:
            result.append(token)
            continue
        offset = token.start
        for part in parts:
            start = token.text.find(part, offset - token.start) + token.start
            result.append(Token(TokenType.VAR, part, token.line, token.col, start, start + len(part) - 1))
            offset = start + len(part)
    return result


class _Tokens:
    """A cursor over sqlglot tokens with Trino-aware helpers."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        tokens = _Tokenizer(dialect="trino").tokenize(sql)
        self.tokens = _words([t for t in tokens if t.token_type != TokenType.SEMICOLON])
        self.position = 0

    def peek(self) -> Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def word(self) -> str | None:
        token = self.peek()
        return token.text.upper() if token is not None and token.token_type != TokenType.STRING else None

    def accept(self, *words: str) -> bool:
        saved = self.position
        for word in words:
            if self.word() != word:
                self.position = saved
                return False
            self.position += 1
        return True

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            self.fail(f"expected {' '.join(words)}")

    def fail(self, message: str) -> None:
        token = self.peek()
        if token is None:
            raise SqlSyntaxError(f"{message} at end of statement")
        raise SqlSyntaxError(f"line {token.line}:{token.col}: {message}", line=token.line, column=token.col)

    def identifier(self) -> str:
        token = self.peek()
        if token is None or token.token_type in (TokenType.STRING, TokenType.NUMBER, TokenType.DOT,
                                                 TokenType.COMMA, TokenType.L_PAREN, TokenType.R_PAREN):
            self.fail("expected a name")
            raise AssertionError  # fail() raises
        self.position += 1
        # Trino folds identifiers to lower case, quoted or not.
        return token.text.lower()

    def qualified_name(self) -> tuple[str, ...]:
        parts = [self.identifier()]
        while (token := self.peek()) is not None and token.token_type == TokenType.DOT:
            self.position += 1
            parts.append(self.identifier())
        return tuple(parts)

    def string(self) -> str:
        token = self.peek()
        if token is None or token.token_type != TokenType.STRING:
            self.fail("expected a string literal")
            raise AssertionError
        self.position += 1
        return token.text

    def rest(self) -> str:
        """The original text from the current token on."""
        token = self.peek()
        return "" if token is None else self.sql[token.start:]

    def done(self) -> None:
        if self.peek() is not None:
            self.fail(f"unexpected {self.peek().text!r}")  # type: ignore[union-attr]


def _classify_tokens(sql: str) -> Statement:
    tokens = _Tokens(sql)
    if tokens.accept("SHOW"):
        return _show(tokens)
    if tokens.accept("DESCRIBE") or tokens.accept("DESC"):
        if tokens.accept("OUTPUT"):
            name = tokens.identifier()
            tokens.done()
            return DescribeOutput(name)
        if tokens.accept("INPUT"):
            name = tokens.identifier()
            tokens.done()
            return DescribeInput(name)
        target = tokens.qualified_name()
        tokens.done()
        return Show("COLUMNS", target)
    if tokens.accept("RESET", "SESSION"):
        name = ".".join(tokens.qualified_name())
        tokens.done()
        return ResetSession(name)
    if tokens.accept("PREPARE"):
        name = tokens.identifier()
        tokens.expect("FROM")
        text = tokens.rest()
        classify(text)  # the prepared statement must itself be valid and allowed
        return Prepare(name, text)
    if tokens.accept("DEALLOCATE", "PREPARE"):
        name = tokens.identifier()
        tokens.done()
        return Deallocate(name)
    if tokens.accept("EXECUTE", "IMMEDIATE"):
        text = tokens.string()
        return Execute(name=None, sql=text, parameters=_using(tokens))
    if tokens.accept("EXECUTE"):
        name = tokens.identifier()
        return Execute(name=name, sql=None, parameters=_using(tokens))
    if tokens.accept("EXPLAIN"):
        analyze = tokens.accept("ANALYZE")
        if analyze:
            tokens.accept("VERBOSE")
        options = _explain_options(tokens)
        inner = classify(tokens.rest())
        if not isinstance(inner, QueryStatement):
            raise NotSupported("EXPLAIN is supported for queries only")
        return Explain(inner, options, analyze)
    if tokens.accept("SET", "SESSION"):
        # sqlglot parses most SET SESSION forms itself; this handles the ones it falls back on.
        name = ".".join(tokens.qualified_name())
        if tokens.peek() is None or tokens.peek().token_type != TokenType.EQ:  # type: ignore[union-attr]
            tokens.fail("expected =")
        tokens.position += 1
        return SetSession(name, _literal_text(tokens.rest()))
    if tokens.accept("CALL"):
        return _call(tokens)
    first = tokens.peek()
    if first is not None and first.text.upper() not in STATEMENT_STARTS:
        raise not_a_statement(first)
    raise NotSupported(f"{tokens.word() or 'statement'} statements are not supported by the gateway")


def _show(tokens: _Tokens) -> Statement:
    if tokens.accept("CATALOGS"):
        return _with_like(tokens, Show("CATALOGS"))
    if tokens.accept("SCHEMAS"):
        target = tokens.qualified_name() if tokens.accept("FROM") or tokens.accept("IN") else ()
        return _with_like(tokens, Show("SCHEMAS", target))
    if tokens.accept("TABLES"):
        target = tokens.qualified_name() if tokens.accept("FROM") or tokens.accept("IN") else ()
        return _with_like(tokens, Show("TABLES", target))
    if tokens.accept("COLUMNS"):
        if not (tokens.accept("FROM") or tokens.accept("IN")):
            tokens.fail("expected FROM")
        target = tokens.qualified_name()
        return _with_like(tokens, Show("COLUMNS", target))
    if tokens.accept("SESSION"):
        return _with_like(tokens, Show("SESSION"))
    if tokens.accept("FUNCTIONS"):
        if tokens.accept("FROM") or tokens.accept("IN"):
            tokens.qualified_name()  # Trino's function namespaces (catalog.schema): all functions are global here
        return _with_like(tokens, Show("FUNCTIONS"))
    if tokens.accept("CREATE", "TABLE") or tokens.accept("CREATE", "VIEW"):
        target = tokens.qualified_name()
        tokens.done()
        return Show("CREATE TABLE", target)
    if tokens.accept("STATS", "FOR"):
        if (token := tokens.peek()) is not None and token.token_type == TokenType.L_PAREN:
            raise NotSupported("SHOW STATS FOR (query) is not supported by the gateway; use SHOW STATS FOR table")
        target = tokens.qualified_name()
        tokens.done()
        return Show("STATS", target)
    if tokens.accept("GRANTS"):
        on: tuple[str, ...] = ()
        if tokens.accept("ON"):
            tokens.accept("TABLE")
            on = tokens.qualified_name()
        tokens.done()
        return Show("GRANTS", on)
    if tokens.accept("CURRENT", "ROLES") or tokens.accept("ROLE", "GRANTS") or tokens.accept("ROLES"):
        if tokens.accept("FROM") or tokens.accept("IN"):
            tokens.identifier()  # roles are the caller's groups, the same in every catalog
        tokens.done()
        return Show("ROLES")
    what = tokens.word() or ""
    raise NotSupported(f"SHOW {what} is not supported by the gateway".replace("  ", " "))


def _call(tokens: _Tokens) -> Call:
    """CALL name(arg, ...) where each argument is a string literal, optionally `name => 'value'`."""
    procedure = tokens.qualified_name()
    arguments: list[tuple[str | None, str]] = []
    if (token := tokens.peek()) is None or token.token_type != TokenType.L_PAREN:
        tokens.fail("expected (")
    tokens.position += 1
    while (token := tokens.peek()) is not None and token.token_type != TokenType.R_PAREN:
        name = None
        following = tokens.tokens[tokens.position + 1] if tokens.position + 1 < len(tokens.tokens) else None
        if following is not None and following.token_type == TokenType.FARROW:
            name = tokens.identifier()
            tokens.position += 1
        arguments.append((name, tokens.string()))
        if (token := tokens.peek()) is not None and token.token_type == TokenType.COMMA:
            tokens.position += 1
        elif token is None or token.token_type != TokenType.R_PAREN:
            tokens.fail("expected , or )")
    if tokens.peek() is None:
        tokens.fail("expected )")
    tokens.position += 1
    tokens.done()
    return Call(procedure, tuple(arguments))


def _with_like(tokens: _Tokens, show: Show) -> Show:
    like = escape = None
    if tokens.accept("LIKE"):
        like = tokens.string()
        if tokens.accept("ESCAPE"):
            escape = tokens.string()
    tokens.done()
    return Show(show.what, show.target, like, escape)


def _using(tokens: _Tokens) -> tuple[exp.Expr, ...]:
    if tokens.peek() is None:
        return ()
    tokens.expect("USING")
    select = parse_one_statement(f"SELECT {tokens.rest()}")
    if not isinstance(select, exp.Select) or select.args.get("from_") or select.args.get("from"):
        raise SqlSyntaxError("EXECUTE ... USING takes a list of constant values")
    for value in select.expressions:
        if any(isinstance(node, exp.Column | exp.Subquery | exp.Query | exp.Star) for node in value.walk()):
            raise SqlSyntaxError("EXECUTE ... USING takes constant values only")
    return tuple(select.expressions)


def _explain_options(tokens: _Tokens) -> tuple[str, ...]:
    token = tokens.peek()
    if token is None or token.token_type != TokenType.L_PAREN:
        return ()
    options = []
    depth = 0
    while (token := tokens.peek()) is not None:
        tokens.position += 1
        if token.token_type == TokenType.L_PAREN:
            depth += 1
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                break
        elif token.token_type != TokenType.COMMA:
            options.append(token.text.upper())
    return tuple(options)


def _literal_text(text: str) -> str:
    """The value of a SET SESSION literal, as the text Trino would store."""
    value = parse_one_statement(f"SELECT {text}")
    if not isinstance(value, exp.Select) or len(value.expressions) != 1:
        raise SqlSyntaxError("SET SESSION takes one value")
    node = value.expressions[0]
    if isinstance(node, exp.Literal | exp.Boolean):
        return str(node.this if isinstance(node, exp.Literal) else str(node.this).lower())
    raise SqlSyntaxError("SET SESSION takes a literal value")


def set_session_from_tree(tree: exp.Set) -> SetSession:
    """sqlglot's own parse of `SET SESSION name = value`."""
    items = tree.expressions
    if len(items) != 1:
        raise SqlSyntaxError("SET SESSION takes one property")
    equality = items[0].this
    if not isinstance(equality, exp.EQ):
        raise SqlSyntaxError("expected SET SESSION name = value")
    name = equality.this.sql(dialect="trino").replace('"', "").lower()
    value = equality.expression
    if isinstance(value, exp.Literal):
        return SetSession(name, str(value.this))
    if isinstance(value, exp.Boolean):
        return SetSession(name, str(value.this).lower())
    if isinstance(value, exp.Column | exp.Identifier):  # SET SESSION x = ON style words
        return SetSession(name, value.name)
    raise SqlSyntaxError("SET SESSION takes a literal value")
