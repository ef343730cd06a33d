"""`gateway` command line: serve, config, policy, explain, keys, audit, queries, cache, chargeback, access."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.config import ConfigError, Settings, load_settings
from gateway.identity.jwks import JwksUnavailable
from gateway.logs import configure_logging
from gateway.policy.load import PolicyError
from gateway.secret_file import SecretError

if TYPE_CHECKING:
    from gateway.server import DrainingServer

log = logging.getLogger("gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Query gateway for Trino-protocol clients")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, help="gateway.yaml (default: the embedded demo)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    init = commands.add_parser("init", help="write an editable copy of the example policies and a gateway.yaml "
                                            "into DIR")
    init.add_argument("dir", type=Path)
    check = commands.add_parser("config", help="validate a gateway.yaml and print the effective settings")
    check.add_argument("--config", type=Path)

    policy = commands.add_parser("policy", help="policy files").add_subparsers(dest="policy_command", required=True)
    policy_check = policy.add_parser("check", help="validate policy files against the backend catalog")
    policy_check.add_argument("dir", nargs="?", type=Path, help="policies directory (default: policies.dir)")
    policy_check.add_argument("--config", type=Path)
    from gateway.policy_changes.cli import add_parsers as add_policy_change_parsers

    add_policy_change_parsers(policy)

    explain = commands.add_parser("explain", help="show the decision and rewritten SQL for a statement, "
                                                  "without running it")
    explain.add_argument("--config", type=Path)
    explain.add_argument("--user", required=True)
    explain.add_argument("--groups", default=None, help="comma-separated groups (default: from the dev users "
                                                         "file for a known user)")
    explain.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE",
                         help="identity attribute; VALUE may be a comma-separated list (nations=1,2)")
    explain.add_argument("--source", default=None, help="client application (X-Trino-Source)")
    explain.add_argument("--catalog", default=None, help="session catalog (default: the first backend)")
    explain.add_argument("--schema", default=None, help="session schema (default: the first backend's schema)")
    explain.add_argument("--sql", required=True)

    from gateway.identity.keys_cli import add_parser as add_keys_parser

    add_keys_parser(commands)

    from gateway.audit.cli import add_commands as add_audit_commands

    add_audit_commands(commands)

    from gateway.workload.queries_cli import add_parser as add_queries_parser

    add_queries_parser(commands)

    from gateway.cache.cli import add_parser as add_cache_parser

    add_cache_parser(commands)

    from gateway.cost.cli import add_parser as add_chargeback_parser

    add_chargeback_parser(commands)

    from gateway.grants.cli import add_parser as add_access_parser

    add_access_parser(commands)
    return parser


def _load(path: Path | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as error:
        for message in error.messages:
            print(message, file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "init":
        return _init(args.dir)
    if args.command == "config":
        settings = _load(args.config)
        print(settings)
        return 0
    if args.command == "policy" and args.policy_command != "check":
        from gateway.policy_changes.cli import run as policy_changes

        return policy_changes(_load(args.config), args)
    if args.command == "policy":
        from gateway.tools import policy_check

        return policy_check(_load(args.config), args.dir)
    if args.command == "explain":
        from gateway.tools import explain

        return explain(_load(args.config), args)
    if args.command == "keys":
        from gateway.identity.keys_cli import run as keys

        return keys(_load(args.config), args)
    if args.command == "audit":
        from gateway.audit.cli import run as audit

        return audit(_load(args.config), args)
    if args.command == "queries":
        from gateway.workload.queries_cli import run as queries

        return queries(args)
    if args.command == "cache":
        from gateway.cache.cli import run as cache

        return cache(args)
    if args.command == "access":
        from gateway.grants.cli import run as access

        return access(args)
    if args.command == "chargeback":
        from gateway.cost.cli import run as chargeback

        return chargeback(_load(args.config), args)
    return 2


def _serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from gateway.server import is_loopback
    from gateway.workers import worker_count

    settings = _load(args.config)
    if args.host or args.port is not None:
        server = replace(settings.server, host=args.host or settings.server.host,
                         port=settings.server.port if args.port is None else args.port)
        settings = replace(settings, server=server)
    if args.config is None and settings.server.pgwire_port is None:  # the embedded demo: psql -p 5433 too
        settings = replace(settings, server=replace(settings.server, pgwire_port=5433))
    configure_logging(settings.logging)
    host = settings.server.host
    if settings.identity.mode == "dev":
        if not is_loopback(host) and not settings.identity.allow_dev_on_public_host:
            print(f"refusing to start: identity.mode is 'dev' (X-Trino-User is trusted without a password) and "
                  f"server.host {host!r} is not a loopback address. Configure real authentication, or set "
                  f"identity.allow_dev_on_public_host: true if you really mean it.", file=sys.stderr)
            return 2
        log.warning("identity.mode is 'dev': X-Trino-User is trusted without authentication%s",
                    "" if is_loopback(host) else " ON A NON-LOOPBACK ADDRESS (forced)")
    count = worker_count(settings.server.workers, shared_state=settings.workload.redis is not None)
    if count == 1:
        single = _build_server(settings)
        if isinstance(single, int):
            return single
        _announce(settings)
        single.run()
        return 0
    return _serve_workers(settings, count)


def _build_server(settings: Settings, on_ready: Callable[[], None] | None = None) -> DrainingServer | int:
    """The server, or the exit code after saying why the gateway refuses to start."""
    from gateway.server import build_server

    try:
        return build_server(settings, on_ready=on_ready)
    except PolicyError as error:
        for message in error.errors:
            print(message, file=sys.stderr)
        print("refusing to start: the policy files above are invalid", file=sys.stderr)
        return 2
    except JwksUnavailable as error:
        print(f"refusing to start: identity.jwt.jwks_file: {error}", file=sys.stderr)
        return 2
    except SecretError as error:  # the mask key, the console's session key
        print(f"refusing to start: {error}", file=sys.stderr)
        return 2


def _serve_workers(settings: Settings, count: int) -> int:
    """`count` workers on the same port (gateway/workers.py); each listens on its own internal address too."""
    from dataclasses import replace
    from urllib.parse import urlsplit

    from gateway.replicas import reachable_url
    from gateway.workers import Listener, Supervisor

    server = settings.server
    public = Listener.bind("trino", server.host, server.port)
    scheme = "https" if server.tls_cert else "http"
    internal = urlsplit(server.internal_url) if server.internal_url else None

    def worker(index: int, ready: Callable[[], None]) -> int:
        port = internal.port + index if internal is not None and internal.port else 0
        listener = Listener.bind("internal", server.host, port)
        bound = listener.sock.getsockname()[1]
        url = (f"{internal.scheme}://{internal.hostname}:{bound}" if internal is not None
               else reachable_url(scheme, server.host, bound))
        built = _build_server(replace(settings, server=replace(server, internal_url=url)), on_ready=ready)
        if isinstance(built, int):
            return built
        built.run(sockets=[public.sock, listener.sock])
        return 0

    for section, shared in (("cache", not settings.cache.enabled or settings.cache.redis is not None),
                            ("cost", not settings.cost.enabled or settings.cost.redis is not None)):
        if not shared:
            log.warning("server.workers is %d but %s.redis is not set: each worker keeps its own %s, as separate "
                        "replicas without Redis would", count, section,
                        "result cache" if section == "cache" else "budget counters")
    _announce(settings)
    print(f"  workers   : {count} processes share the port (server.workers)", flush=True)
    return Supervisor(count, worker).run()


INIT_CONFIG = """\
# gateway serve --config gateway.yaml; every key is optional (README.md, "Configuration").
backends:
  demo: {type: duckdb, path: data/demo.duckdb, schema: tpch, tpch_scale: 0.01}
policies: {dir: policies}
"""


def _init(target: Path) -> int:
    """`gateway init DIR`: the shipped example policies and a minimal gateway.yaml, never overwriting."""
    import shutil

    from gateway.examples import EXAMPLE_POLICIES

    policies = target / "policies"
    config = target / "gateway.yaml"
    existing = [p for p in (policies, config) if p.exists()]
    if existing:
        print(f"refusing to overwrite {', '.join(map(str, existing))}", file=sys.stderr)
        return 2
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLE_POLICIES, policies)
    config.write_text(INIT_CONFIG)
    print(f"wrote {policies}/ and {config}; run: gateway serve --config {config}")
    return 0


def _policies_line(settings: Settings) -> str:
    where = settings.policies.dir
    if settings.policies.shipped:
        return (f"  policies  : {where} (the examples shipped with the gateway: no ./policies here; "
                f"`gateway init DIR` writes an editable copy)\n")
    return f"  policies  : {where}\n"


def _console_line(settings: Settings, scheme: str) -> str:
    if not settings.console.enabled:
        return ""
    return (f"  console   : {scheme}://{settings.server.host}:{settings.server.port}/console/ (sign in as audrey: "
            f"audit, fiona: chargeback, admin: queue)\n")


def _announce(settings: Settings) -> None:
    host, port = settings.server.host, settings.server.port
    catalog = settings.backends[0]
    schema = catalog.schema
    scheme = "https" if settings.server.tls_cert else "http"
    if settings.identity.mode != "dev":
        print(f"gateway {__version__} starting on {scheme}://{host}:{port} (catalog '{catalog.name}', schema "
              f"'{schema}'); identity.mode '{settings.identity.mode}': clients must authenticate\n"
              f"{_policies_line(settings)}", end="", flush=True)
        return
    print(
        f"gateway {__version__} starting on {scheme}://{host}:{port} (catalog '{catalog.name}', schema '{schema}')\n"
        f"  trino CLI : trino --server http://{host}:{port} --user alice --catalog {catalog.name} --schema {schema}\n"
        f"  Python    : trino.dbapi.connect(host='{host}', port={port}, user='alice', "
        f"catalog='{catalog.name}', schema='{schema}')\n"
        f"  SQLAlchemy: create_engine('trino://alice@{host}:{port}/{catalog.name}/{schema}')\n"
        f"  JDBC      : jdbc:trino://{host}:{port}/{catalog.name}/{schema}?user=alice\n"
        f"  metrics   : http://{host}:{port}/metrics   health: http://{host}:{port}/health/ready\n"
        f"{_console_line(settings, scheme)}{_policies_line(settings)}",
        end="", flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
