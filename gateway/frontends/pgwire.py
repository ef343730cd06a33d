"""The PostgreSQL wire frontend: psql, pgJDBC (DBeaver, Tableau, Power BI), psycopg and asyncpg connect to
`server.pgwire_port` and their statements take the same pipeline as Trino HTTP clients.

    startup     SSLRequest (TLS with server.tls, else 'N'), GSSENCRequest refused, StartupMessage,
                CancelRequest (on its own connection; cancels the named connection's running statement)
    auth        dev: trusted, like X-Trino-User; otherwise SCRAM-SHA-256 against API keys (no TLS), or a
                cleartext password over TLS only: a JWT or an API key (the Authenticator decides)
    statements  simple Query (each statement of a multi-statement text planned and audited on its own) and
                the extended protocol; transaction control, SET/SHOW/RESET and cursors are connection state
                kept here (pg_statements.py), everything else is one pipeline statement in the postgres dialect

Protocol only: no access decision is made here. Every bound is explicit: message size, startup and idle
timeouts, connections, and the pipeline's own result caps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import ssl
import struct
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field, replace

from sqlglot import exp

from gateway.config import Settings
from gateway.errors import AuthenticationFailed, GatewayError, QueryCanceled
from gateway.frontends import pg_messages as pm
from gateway.frontends import pg_statements as ps
from gateway.frontends import pg_types as pt
from gateway.frontends.pg_errors import ClientError, authentication_sqlstate, located, sqlstate_of
from gateway.frontends.pg_session import SessionParameters
from gateway.identity import Credentials, Identity
from gateway.identity.api_keys import parse_key
from gateway.identity.scram import MECHANISM, ScramError
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline, QueryRun
from gateway.relations import Column, Row
from gateway.session import Session

log = logging.getLogger("gateway.pgwire")

FETCH_BATCH = 1024  # rows asked of a run at a time
FRONTEND = "pgwire"
_MESSAGE_NAMES = {b"Q": "query", b"P": "parse", b"B": "bind", b"D": "describe", b"E": "execute", b"C": "close",
                  b"S": "sync", b"H": "flush", b"X": "terminate", b"p": "password", b"F": "function_call",
                  b"d": "copy_data", b"c": "copy_done", b"f": "copy_fail"}


class Fatal(Exception):
    """An error that ends the connection after its ErrorResponse (severity FATAL)."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


@dataclass
class Prepared:
    sql: str
    command: ps.Command | None
    parameter_types: tuple[int, ...]
    offset: int = 0  # where `sql` starts in the Parse message's query text (error positions count from there)
    columns: tuple[Column, ...] | None = None  # once described


@dataclass
class Portal:
    """A bound statement (extended protocol) or a cursor: its run, rows fetched ahead, rows sent."""

    sql: str
    command: ps.Command | None
    result_formats: tuple[int, ...] = ()
    origin: int | None = None  # `sql` is the client's text from this offset of its message (not rebuilt by binding)
    run: QueryRun | None = None
    ahead: list[Row] = field(default_factory=list)
    exhausted: bool = False
    sent: int = 0

    def binary(self, index: int) -> bool:
        formats = self.result_formats
        return bool(formats[0] if len(formats) == 1 else formats[index] if index < len(formats) else 0)


class PgWireFrontend:
    """The listener: accepts connections, answers CancelRequests, drains on shutdown."""

    def __init__(self, *, pipeline: Pipeline, settings: Settings, metrics: Metrics,
                 is_draining: Callable[[], bool]) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.metrics = metrics
        self.is_draining = is_draining
        self.connections: dict[int, PgConnection] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.ssl_context = _ssl_context(settings)

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        server = self.settings.server
        self._server = await asyncio.start_server(self._accept, host=server.host, port=server.pgwire_port,
                                                  limit=64 * 1024)
        log.info("PostgreSQL wire frontend listening on %s:%s%s", server.host, self.port,
                 " (TLS available)" if self.ssl_context is not None else "")

    def running(self) -> list[QueryRun]:
        return [c.current for c in self.connections.values() if c.current is not None and not c.current.done]

    async def cancel_running(self, error: GatewayError) -> None:
        for run in self.running():
            await run.cancel(error)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.values()):
            connection.shutting_down = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        metrics = self.metrics
        metrics.pgwire_connections_open.inc()
        try:
            if len(self._tasks) > self.settings.server.pgwire_max_connections:  # those still starting count too
                metrics.pgwire_connections.labels("refused").inc()
                writer.write(pm.error_response("53300", "sorry, too many clients already "
                                                        "(server.pgwire_max_connections)", severity="FATAL"))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.drain(), timeout=1)
                return
            connection = PgConnection(self, reader, writer)
            await connection.serve()
        except asyncio.CancelledError:
            pass
        finally:
            metrics.pgwire_connections_open.dec()
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    def register(self, connection: PgConnection) -> tuple[int, int]:
        """A fresh (process id, secret key) for BackendKeyData."""
        while True:
            process_id = secrets.randbelow(2**31 - 1) + 1
            if process_id not in self.connections:
                break
        self.connections[process_id] = connection
        return process_id, struct.unpack("!i", secrets.token_bytes(4))[0]

    def unregister(self, process_id: int) -> None:
        self.connections.pop(process_id, None)

    async def cancel(self, process_id: int, secret: int) -> None:
        """A CancelRequest: stop the running statement of the connection the key belongs to. Wrong keys are
        ignored silently, as PostgreSQL does (the requester learns nothing)."""
        connection = self.connections.get(process_id)
        if connection is None or not hmac.compare_digest(struct.pack("!i", connection.secret),
                                                         struct.pack("!i", secret)):
            self.metrics.pgwire_cancel_requests.labels("ignored").inc()
            return
        self.metrics.pgwire_cancel_requests.labels("cancelled").inc()
        await connection.cancel_current()


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    server = settings.server
    if server.tls_cert is None or server.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(server.tls_cert), str(server.tls_key))
    return context


class PgConnection:
    """One client connection, from startup to Terminate."""

    def __init__(self, frontend: PgWireFrontend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.frontend = frontend
        self.pipeline = frontend.pipeline
        self.settings = frontend.settings.server
        self.metrics = frontend.metrics
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.client_address: str | None = str(peer[0]) if isinstance(peer, tuple) and peer else None
        self.tls = False
        self.process_id = 0
        self.secret = 0
        self.principal: Identity | None = None
        self.session: Session | None = None
        self.parameters = SessionParameters()
        self.status = "I"  # ReadyForQuery: I idle, T in a transaction block, E failed transaction block
        self.statements: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}  # bound statements and DECLAREd cursors alike, as in PostgreSQL
        self.current: QueryRun | None = None
        self.skipping = False  # after an error in the extended protocol: discard messages until Sync
        self.shutting_down = False

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def serve(self) -> None:
        metrics = self.metrics
        try:
            try:
                started = await asyncio.wait_for(self._startup(), timeout=self.settings.pgwire_startup_timeout_seconds)
            except TimeoutError:
                metrics.pgwire_protocol_errors.labels("startup_timeout").inc()
                raise Fatal("08006", f"startup and authentication took longer than "
                                     f"{self.settings.pgwire_startup_timeout_seconds:g} s "
                                     f"(server.pgwire_startup_timeout_seconds)") from None
            if not started:
                return
            metrics.pgwire_connections.labels("authenticated").inc()
            await self._messages()
        except Fatal as fatal:
            await self._send_fatal(fatal.sqlstate, fatal.message)
        except pm.FrameError as error:
            metrics.pgwire_protocol_errors.labels("frame").inc()
            await self._send_fatal(error.sqlstate, error.message)
        except (ConnectionError, OSError, ssl.SSLError):
            pass  # the client went away; whatever it was running is cancelled below
        except asyncio.CancelledError:
            await self._send_fatal("57P01", "terminating connection: the gateway is shutting down")
        except Exception:  # a bug here: loud in the log, never a stack trace to the client
            log.exception("pgwire connection %s failed inside the gateway", self.process_id)
            await self._send_fatal("XX000", "internal error in the gateway")
        finally:
            await self._close_all()
            if self.process_id:
                self.frontend.unregister(self.process_id)

    async def _send_fatal(self, sqlstate: str, message: str) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(pm.error_response(sqlstate, message, severity="FATAL"))
            await asyncio.wait_for(self.writer.drain(), timeout=1)

    async def _close_all(self) -> None:
        for portal in self.portals.values():
            if portal.run is not None:
                await portal.run.cancel()
        self.portals.clear()

    async def cancel_current(self) -> None:
        run = self.current
        if run is not None and not run.done:
            await run.cancel(QueryCanceled("canceling statement due to user request"))

    # -- startup and authentication ---------------------------------------------------------------------------

    async def _startup(self) -> bool:
        """False when the connection ends without a session (CancelRequest, refusal)."""
        for _ in range(4):  # SSLRequest and GSSENCRequest may come first, once each
            code, body = await pm.read_startup(self.reader)
            if code == pm.SSL_REQUEST and not self.tls:
                await self._negotiate_tls()
            elif code == pm.GSSENC_REQUEST:
                self.writer.write(b"N")
            elif code == pm.CANCEL_REQUEST:
                await self.frontend.cancel(*pm.cancel_request(body))
                return False
            elif code >> 16 == 3:
                parameters = pm.startup_parameters(body)
                if code != pm.PROTOCOL_3:  # 3.x: speak 3.0, as NegotiateProtocolVersion tells the client
                    self.writer.write(pm.message(b"v", struct.pack("!ii", 0, 0)))
                await self._authenticate(parameters)
                return True
            else:
                raise Fatal("0A000", f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: the gateway "
                                     f"speaks 3.0")
        raise pm.FrameError("too many startup requests")

    async def _negotiate_tls(self) -> None:
        context = self.frontend.ssl_context
        if context is None:
            self.writer.write(b"N")
            return
        if self.reader._buffer:  # type: ignore[attr-defined]  # bytes sent before the handshake: injection
            raise pm.FrameError("received unencrypted data after SSL request")
        self.writer.write(b"S")
        await self.writer.drain()
        await self.writer.start_tls(context)
        self.tls = True
        self.metrics.pgwire_connections.labels("tls").inc()

    async def _authenticate(self, startup: dict[str, str]) -> None:
        user = startup.get("user", "")
        if not user:
            raise Fatal("28000", "no PostgreSQL user name specified in startup packet")
        if self.frontend.is_draining():
            raise Fatal("57P03", "the gateway is shutting down; connect to another replica")
        authenticator = self.pipeline.authenticator
        if authenticator.mode == "dev":
            credentials = Credentials(session_user=user, client_address=self.client_address)
            principal = await self._verified(credentials, "dev")
        elif self.tls:
            principal = await self._cleartext(user)
        elif authenticator.accepts_api_keys:
            principal = await self._scram(user)
        else:
            self._refused(user, "Bearer tokens are accepted only over TLS")
            raise Fatal("28000", "password authentication requires TLS: connect with sslmode=require and the "
                                 "token as the password")
        self.principal = principal
        self.session = self._session(startup, user)
        self.writer.write(pm.authentication(pm.AUTH_OK))
        self.process_id, self.secret = self.frontend.register(self)
        for name, value in self.parameters.reported():
            self.writer.write(pm.parameter_status(name, value))
        self.writer.write(pm.backend_key_data(self.process_id, self.secret))
        self.writer.write(pm.ready_for_query(self.status))
        await self.writer.drain()

    def _refused(self, user: str, message: str) -> None:
        failure = AuthenticationFailed("wrong_scheme", message)
        self.metrics.pgwire_auth_failures.labels("none").inc()
        self.pipeline.record_rejected_attempt(Credentials(scheme=None, username=user, session_user=user,
                                                          client_address=self.client_address), failure,
                                              frontend=FRONTEND)

    async def _verified(self, credentials: Credentials, method: str) -> Identity:
        try:
            return await self.pipeline.authenticate(credentials, frontend=FRONTEND)  # audits, slows down failures
        except AuthenticationFailed as failure:
            self.metrics.pgwire_auth_failures.labels(method).inc()
            raise Fatal(authentication_sqlstate(failure.reason), failure.message) from None

    async def _password_message(self) -> bytes:
        kind, body = await pm.read_message(self.reader, 64 * 1024)
        if kind != b"p":
            raise pm.FrameError(f"expected a password message, got {kind!r}", sqlstate="28000")
        return body

    async def _cleartext(self, user: str) -> Identity:
        self.writer.write(pm.authentication(pm.AUTH_CLEARTEXT))
        await self.writer.drain()
        password = pm.decode_password(await self._password_message())
        if parse_key(password) is not None:
            credentials = Credentials(scheme="basic", username=user, secret=password, session_user=user,
                                      client_address=self.client_address)
            return await self._verified(credentials, "api_key")
        credentials = Credentials(scheme="bearer", secret=password, session_user=user,
                                  client_address=self.client_address)
        return await self._verified(credentials, "jwt")

    async def _scram(self, user: str) -> Identity:
        self.writer.write(pm.authentication(pm.AUTH_SASL, pm.cstr(MECHANISM) + b"\x00"))
        await self.writer.drain()
        mechanism, client_first = pm.decode_sasl_initial(await self._password_message())
        base = Credentials(scheme="scram", username=user, session_user=user, client_address=self.client_address)
        if mechanism != MECHANISM:
            raise Fatal("28000", f"SASL mechanism {mechanism[:40]!r} is not supported; use {MECHANISM}")
        try:
            exchange = await self.pipeline.authenticator.scram_exchange(user)
            server_first = exchange.first(client_first)
        except (AuthenticationFailed, ScramError) as error:
            failure = error if isinstance(error, AuthenticationFailed) else \
                AuthenticationFailed("invalid_api_key", str(error))
            self.metrics.pgwire_auth_failures.labels("scram").inc()
            self.pipeline.record_rejected_attempt(base, failure, frontend=FRONTEND)
            raise Fatal(authentication_sqlstate(failure.reason), failure.message) from None
        self.writer.write(pm.authentication(pm.AUTH_SASL_CONTINUE, server_first.encode()))
        await self.writer.drain()
        client_final = (await self._password_message()).decode("utf-8", "replace")
        principal = await self._verified(replace(base, secret=client_final, scram=exchange), "scram")
        self.writer.write(pm.authentication(pm.AUTH_SASL_FINAL, exchange.server_final().encode()))
        return principal

    def _session(self, startup: dict[str, str], user: str) -> Session:
        database = startup.get("database") or user
        catalogs = self.pipeline.planner.backends
        if database not in catalogs:
            shown = ", ".join(sorted(catalogs))
            raise Fatal("3D000", f'database "{database[:64]}" does not exist; the gateway\'s catalogs are: {shown}')
        default_schema = next((b.schema for b in self.frontend.settings.backends if b.name == database), None)
        try:
            self.parameters.start(startup, user=user, default_schema=default_schema)
        except ClientError as error:
            raise Fatal(error.sqlstate, error.message) from None
        return Session(user=user, catalog=database, client_address=self.client_address, dialect=ps.DIALECT,
                       frontend=FRONTEND, **self.parameters.session_fields())

    # -- the message loop -------------------------------------------------------------------------------------

    async def _messages(self) -> None:
        limit = self.settings.pgwire_max_message_bytes
        idle = self.settings.pgwire_idle_timeout_seconds
        while True:
            try:
                kind, body = await asyncio.wait_for(pm.read_message(self.reader, limit), timeout=idle)
            except TimeoutError:
                raise Fatal("57P05", f"terminating connection due to idle timeout ({idle:g} s, "
                                     f"server.pgwire_idle_timeout_seconds)") from None
            except pm.FrameError as error:
                if error.sqlstate == "54000":  # too large: the frame cannot be skipped safely
                    self.metrics.pgwire_protocol_errors.labels("too_large").inc()
                raise
            self.metrics.pgwire_messages.labels(_MESSAGE_NAMES.get(kind, "unknown")).inc()
            if kind == b"X":
                return
            if self.skipping and kind != b"S":
                continue
            try:
                await self._dispatch(kind, body)
            except pm.FrameError:
                raise
            except (ClientError, GatewayError) as error:
                self._error(error)
                if kind != b"Q" and kind != b"S":
                    self.skipping = True
            if self.shutting_down:
                raise Fatal("57P01", "terminating connection: the gateway is shutting down")

    async def _dispatch(self, kind: bytes, body: bytes) -> None:
        if kind == b"Q":
            await self._simple_query(pm.decode_query(body))
        elif kind == b"P":
            self._parse(pm.decode_parse(body))
        elif kind == b"B":
            await self._bind(pm.decode_bind(body))
        elif kind == b"D":
            await self._describe(pm.decode_describe(body))
        elif kind == b"E":
            await self._execute(pm.decode_execute(body))
        elif kind == b"C":
            await self._close(pm.decode_close(body))
        elif kind == b"S":
            pm.Body(body, "Sync").end()
            await self._sync()
        elif kind == b"H":
            await self.writer.drain()
        elif kind in (b"F", b"d", b"c", b"f"):
            raise ClientError("0A000", f"{_MESSAGE_NAMES[kind].replace('_', ' ')} is not supported by the gateway")
        else:
            raise pm.FrameError(f"invalid frontend message type {kind[0]}")

    def _error(self, error: ClientError | GatewayError) -> None:
        position = None
        if isinstance(error, GatewayError):
            sqlstate, message = sqlstate_of(error), error.message
            if error.error.type == "INTERNAL_ERROR" and error.error_name == "GENERIC_INTERNAL_ERROR":
                message = "internal error in the gateway"
        else:
            sqlstate, message, position = error.sqlstate, error.message, error.position
        if self.status == "T":
            self.status = "E"
        self.writer.write(pm.error_response(sqlstate, message, position=position))

    async def _sync(self) -> None:
        self.skipping = False
        if self.status == "I":  # the implicit transaction ends: its portals go with it
            await self._close_all()
        self.writer.write(pm.ready_for_query(self.status))
        await self.writer.drain()

    # -- simple query -----------------------------------------------------------------------------------------

    async def _simple_query(self, text: str) -> None:
        statements = ps.statement_spans(text)
        if not statements:
            self.writer.write(pm.EMPTY_QUERY)
        for offset, sql in statements:
            try:
                command = ps.command_of(sql)
                portal = Portal(sql=sql, command=command, origin=offset)
                await self._run_portal(portal, max_rows=0, describe=True)
            except (ClientError, GatewayError) as error:
                self._error(error)
                break  # the rest of a multi-statement text is skipped, as PostgreSQL does
        await self._sync()

    # -- extended query ---------------------------------------------------------------------------------------

    def _parse(self, parse: pm.Parse) -> None:
        if parse.name and parse.name in self.statements:
            raise ClientError("42P05", f'prepared statement "{parse.name[:64]}" already exists')
        statements = ps.statement_spans(parse.query)
        if len(statements) > 1:
            raise ClientError("42601", "cannot insert multiple commands into a prepared statement")
        offset, sql = statements[0] if statements else (0, "")
        command = ps.command_of(sql) if sql else None
        numbers = ps.parameter_numbers(sql) if command is None and sql else []
        count = max([n for n, _ in numbers] + [len(parse.parameter_types)], default=0)
        casts = dict(numbers)
        types = []
        for index in range(count):
            given = parse.parameter_types[index] if index < len(parse.parameter_types) else 0
            cast = casts.get(index + 1)
            types.append(given or (pt.oid_for_type_name(cast) if cast else pt.TEXT))
        if parse.name not in self.statements:
            self._room_for(self.statements, "prepared statements")
        self.statements[parse.name] = Prepared(sql=sql, command=command, parameter_types=tuple(types), offset=offset)
        self.writer.write(pm.PARSE_COMPLETE)

    def _room_for(self, kept: Sized, what: str) -> None:
        """One more named statement or portal fits under server.pgwire_max_prepared (each may hold up to a
        message's worth of SQL: without a bound a client could grow the gateway's memory name by name)."""
        if len(kept) >= self.settings.pgwire_max_prepared:
            raise ClientError("53400", f"too many {what} on this connection (server.pgwire_max_prepared = "
                                       f"{self.settings.pgwire_max_prepared}); close or deallocate some")

    def _statement(self, name: str) -> Prepared:
        statement = self.statements.get(name)
        if statement is None:
            raise ClientError("26000", f'prepared statement "{name[:64]}" does not exist')
        return statement

    async def _bind(self, bind: pm.Bind) -> None:
        statement = self._statement(bind.statement)
        if len(bind.parameters) != len(statement.parameter_types):
            raise ClientError("08P01", f"bind message supplies {len(bind.parameters)} parameters, but prepared "
                                       f"statement requires {len(statement.parameter_types)}")
        if bind.portal and bind.portal in self.portals:
            raise ClientError("42P03", f'portal "{bind.portal[:64]}" already exists')
        try:
            values = [pt.parameter_literal(value, oid, bind.parameter_format(i) == 1)
                      for i, (value, oid) in enumerate(zip(bind.parameters, statement.parameter_types, strict=True))]
        except pt.ParameterError as error:
            raise ClientError("22P02", str(error)) from None
        try:
            sql = ps.bind(statement.sql, values) if values else statement.sql
        except GatewayError as error:
            raise located(error, statement.sql, statement.offset) from None
        old = self.portals.pop(bind.portal, None)
        if old is not None and old.run is not None:
            await old.run.cancel()
        if bind.portal not in self.portals:
            self._room_for(self.portals, "portals")
        self.portals[bind.portal] = Portal(sql=sql, command=statement.command, result_formats=bind.result_formats,
                                           origin=None if values else statement.offset)
        self.writer.write(pm.BIND_COMPLETE)

    async def _describe(self, describe: pm.Describe) -> None:
        if describe.kind == "S":
            statement = self._statement(describe.name)
            self.writer.write(pm.parameter_description(statement.parameter_types))
            if statement.command is not None or not statement.sql:
                self._describe_command(statement.command)
                return
            if statement.columns is None:
                statement.columns = await self._result_columns(statement)
            if statement.columns:
                self._row_description(statement.columns, ())
            else:
                self.writer.write(pm.NO_DATA)
            return
        portal = self._portal(describe.name)
        if portal.command is not None or not portal.sql:
            self._describe_command(portal.command)
            return
        await self._start(portal)
        assert portal.run is not None
        self._row_description(portal.run.columns or (), portal.result_formats)

    def _describe_command(self, command: ps.Command | None) -> None:
        if isinstance(command, ps.ShowParameter):
            self._row_description(self.parameters.show_columns(command), ())
        else:
            self.writer.write(pm.NO_DATA)

    async def _result_columns(self, statement: Prepared) -> tuple[Column, ...]:
        """A statement's result columns before its parameters are known, without executing it: the query
        with NULL parameters planned, authorized and described by the pipeline (audited as a describe)."""
        values: Sequence[exp.Expr] = [exp.Null() for _ in statement.parameter_types]
        bound = ps.bind(statement.sql, values) if values else statement.sql
        if self.frontend.is_draining():
            raise _draining()
        assert self.session is not None and self.principal is not None
        try:
            return await self.pipeline.describe(bound, self.session, self.principal) or ()
        except GatewayError as error:
            raise located(error, statement.sql, statement.offset) if not values else error from None

    def _portal(self, name: str) -> Portal:
        portal = self.portals.get(name)
        if portal is None:
            raise ClientError("34000", f'portal "{name[:64]}" does not exist')
        return portal

    async def _execute(self, execute: pm.Execute) -> None:
        await self._run_portal(self._portal(execute.portal), max_rows=execute.max_rows, describe=False)

    async def _close(self, close: pm.Close) -> None:
        if close.kind == "S":
            self.statements.pop(close.name, None)
        else:
            portal = self.portals.pop(close.name, None)
            if portal is not None and portal.run is not None:
                await portal.run.cancel()
        self.writer.write(pm.CLOSE_COMPLETE)

    # -- running one statement --------------------------------------------------------------------------------

    async def _run_portal(self, portal: Portal, *, max_rows: int, describe: bool) -> None:
        """Execute a portal: a connection command, or rows of its pipeline run (at most `max_rows`, then
        PortalSuspended; 0 = all). `describe`: send the RowDescription first (simple query, FETCH)."""
        if self.status == "E" and not isinstance(portal.command, ps.EndTransaction):
            raise ClientError("25P02", "current transaction is aborted, commands ignored until end of "
                                       "transaction block")
        if portal.command is not None:
            await self._command(portal.command, describe=describe, sql=portal.sql)
            return
        if not portal.sql.strip():
            self.writer.write(pm.EMPTY_QUERY)
            return
        await self._start(portal)
        run = portal.run
        assert run is not None
        if describe and run.columns is not None:
            self._row_description(run.columns, portal.result_formats)
        complete = await self._send_rows(portal, max_rows)
        if not complete:
            self.writer.write(pm.PORTAL_SUSPENDED)
            return
        change = run.change
        if change is not None:
            self._apply_change(change.set_catalog, change.set_schema)
        tag = run.update_type.upper() if run.update_type and run.columns is None else f"SELECT {portal.sent}"
        self.writer.write(pm.command_complete(tag))

    async def _start(self, portal: Portal) -> None:
        """Submit the portal's statement to the pipeline once and wait until its columns are known."""
        if portal.run is not None:
            return
        if self.frontend.is_draining():
            raise _draining()
        assert self.session is not None and self.principal is not None
        run = self.pipeline.submit(portal.sql, self.session, self.principal)
        portal.run = run
        self.current = run
        await run.start()
        if run.error is not None:
            raise located(run.error, portal.sql, portal.origin) if portal.origin is not None else run.error
        if run.columns is None:
            portal.exhausted = True

    async def _send_rows(self, portal: Portal, max_rows: int) -> bool:
        """Send up to `max_rows` rows (0: all); True when the result is complete."""
        run = portal.run
        assert run is not None
        columns = run.columns or ()
        oids = [pt.oid_of(c.type)[0] for c in columns]
        binary = [portal.binary(i) for i in range(len(columns))]
        sent = 0
        while max_rows == 0 or sent < max_rows:
            if not portal.ahead and not portal.exhausted:
                self.current = run
                rows = await run.fetch(FETCH_BATCH)
                if rows is None:
                    portal.exhausted = True
                    if run.error is not None:
                        raise run.error
                else:
                    portal.ahead.extend(rows)
                    await self.writer.drain()
            if not portal.ahead:
                return True
            take = len(portal.ahead) if max_rows == 0 else min(len(portal.ahead), max_rows - sent)
            batch, portal.ahead = portal.ahead[:take], portal.ahead[take:]
            encoded = b"".join(pm.data_row([pt.encode(v, oid, b) for v, oid, b in zip(row, oids, binary,
                                                                                        strict=True)])
                               for row in batch)
            try:
                run.count_result_bytes(len(encoded))
            except GatewayError as error:
                await run.cancel(error)
                raise
            self.writer.write(encoded)
            sent += take
            portal.sent += take
        if not portal.ahead and not portal.exhausted:  # exactly max_rows: look ahead for the end
            rows = await run.fetch(FETCH_BATCH)
            if rows is None:
                portal.exhausted = True
                if run.error is not None:
                    raise run.error
            else:
                portal.ahead.extend(rows)
        return not portal.ahead and portal.exhausted

    def _row_description(self, columns: Sequence[Column], formats: tuple[int, ...]) -> None:
        portal = Portal(sql="", command=None, result_formats=formats)
        fields = []
        for index, column in enumerate(columns):
            oid, size = pt.oid_of(column.type)
            fields.append(pm.Field(column.name, oid, size, _type_modifier(column), int(portal.binary(index))))
        self.writer.write(pm.row_description(fields))

    def _apply_change(self, catalog: str | None, schema: str | None) -> None:
        assert self.session is not None
        if catalog is not None:
            self.session = replace(self.session, catalog=catalog)
        if schema is not None:
            self.parameters.set_schema(schema)
            self.session = replace(self.session, schema=schema)

    # -- connection commands ----------------------------------------------------------------------------------

    async def _command(self, command: ps.Command, *, describe: bool, sql: str) -> None:
        write = self.writer.write
        if isinstance(command, ps.StartTransaction):
            if self.status != "I":
                write(pm.notice_response("there is already a transaction in progress"))
            self.status = "T"
            write(pm.command_complete("BEGIN"))
        elif isinstance(command, ps.EndTransaction):
            if self.status == "I":
                write(pm.notice_response("there is no transaction in progress"))
            tag = "COMMIT" if command.commit and self.status != "E" else "ROLLBACK"
            self.status = "I"
            await self._close_all()  # a transaction's end closes its portals, cursors among them
            write(pm.command_complete(tag))
        elif isinstance(command, ps.SetParameter):
            sent_in = self.session
            self._set(command)
            tag = "RESET" if command.value is None else "SET"
            if command.name != "transaction":  # SET TRANSACTION changes nothing: every statement reads alone
                self._record(sql, sent_in, tag.lower())
            write(pm.command_complete(tag))
        elif isinstance(command, ps.ShowParameter):
            columns = self.parameters.show_columns(command)
            if describe:
                self._row_description(columns, ())
            for row in self.parameters.show_rows(command):
                write(pm.data_row([v.encode() for v in row]))
            write(pm.command_complete("SHOW"))
        elif isinstance(command, ps.Declare):
            await self._declare(command)
        elif isinstance(command, ps.Fetch):
            await self._fetch(command)
        elif isinstance(command, ps.CloseCursor):
            await self._close_cursors(command)
        elif isinstance(command, ps.Discard):
            self.statements.clear()
            await self._close_all()
            self._record(sql, self.session, "discard")
            write(pm.command_complete("DISCARD ALL"))
        elif isinstance(command, ps.Deallocate):
            if command.name is None:
                self.statements = {k: v for k, v in self.statements.items() if k == ""}
            elif self.statements.pop(command.name, None) is None:
                raise ClientError("26000", f'prepared statement "{command.name[:64]}" does not exist')
            write(pm.command_complete("DEALLOCATE ALL" if command.name is None else "DEALLOCATE"))

    def _record(self, sql: str, sent_in: Session | None, statement_type: str) -> None:
        """Audit a command that changes what later records say (source, schema, time zone), under the
        session it was sent in."""
        assert sent_in is not None and self.principal is not None
        self.pipeline.record_command(sql, sent_in, self.principal, statement_type)

    async def _fetch(self, command: ps.Fetch) -> None:
        cursor = self.portals.get(command.name)
        if cursor is None:
            raise ClientError("34000", f'cursor "{command.name[:64]}" does not exist')
        assert cursor.run is not None
        self._row_description(cursor.run.columns or (), ())
        before = cursor.sent
        if command.count != 0:
            await self._send_rows(cursor, command.count or 0)
        self.writer.write(pm.command_complete(f"FETCH {cursor.sent - before}"))

    async def _close_cursors(self, command: ps.CloseCursor) -> None:
        names = list(self.portals) if command.name is None else [command.name]
        for name in names:
            cursor = self.portals.pop(name, None)
            if cursor is None:
                raise ClientError("34000", f'cursor "{name[:64]}" does not exist')
            if cursor.run is not None:
                await cursor.run.cancel()
        self.writer.write(pm.command_complete("CLOSE CURSOR"))

    async def _declare(self, command: ps.Declare) -> None:
        if self.status != "T":
            raise ClientError("25P01", "DECLARE CURSOR can only be used in transaction blocks")
        if command.name in self.portals:
            raise ClientError("42P03", f'cursor "{command.name[:64]}" already exists')
        self._room_for(self.portals, "cursors")
        cursor = Portal(sql=command.query, command=None)
        await self._start(cursor)
        self.portals[command.name] = cursor
        self.writer.write(pm.command_complete("DECLARE CURSOR"))

    def _set(self, command: ps.SetParameter) -> None:
        for name, value in self.parameters.set(command):
            self.writer.write(pm.parameter_status(name, value))
        assert self.session is not None
        self.session = replace(self.session, **self.parameters.session_fields())


def _draining() -> GatewayError:
    return GatewayError("The gateway is shutting down; run the statement on another replica",
                        error_name="SERVER_SHUTTING_DOWN")


def _type_modifier(column: Column) -> int:
    sql_type = column.type
    if sql_type.name == "decimal" and len(sql_type.arguments) == 2:
        precision, scale = sql_type.arguments
        return ((precision << 16) | scale) + 4
    if sql_type.name in ("varchar", "char") and sql_type.arguments and sql_type.arguments[0] < 10_485_760:
        return sql_type.arguments[0] + 4
    return -1
