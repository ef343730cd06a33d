"""Offline commands that share the server's planning code: `gateway policy check` and `gateway explain`.

They read the backend catalog the way the server does (DuckDB files are opened read-only; nothing is
generated or executed), so what they report is what the server would decide.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway import __version__
from gateway.app import build_dev_users
from gateway.backends.base import Backend
from gateway.backends.factory import build_backend
from gateway.catalog import CatalogSnapshot
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.identity import Identity
from gateway.identity.model import attributes_from_pairs
from gateway.mask_key import load_mask_key
from gateway.metadata import build_metadata
from gateway.metrics import Metrics
from gateway.planner import Planner, PolicyContext
from gateway.policy.check import check_policies
from gateway.policy.load import PolicyError, load_policies
from gateway.relations import Table
from gateway.session import Session
from gateway.sql.rewrite import SecureViews
from gateway.workload.load import load_workload


@dataclass
class OfflineCatalog:
    snapshot: CatalogSnapshot
    backends: dict[str, Backend]  # closed again; still tell their dialect and catalog name
    unreachable: list[str]


async def _read_tables(settings: Settings) -> OfflineCatalog:
    """Each reachable backend's tables, read without generating demo data; the unreachable ones' names."""
    tables: dict[str, list[Table]] = {}
    backends: dict[str, Backend] = {}
    unreachable: list[str] = []
    for backend_settings in settings.backends:
        path = backend_settings.path
        if backend_settings.type == "duckdb" and (path is None or not path.exists()):
            unreachable.append(backend_settings.name)
            continue
        backend = build_backend(backend_settings, generate_demo=False)
        backends[backend.name] = backend
        try:
            await backend.start()
            tables[backend_settings.name] = await backend.tables()
        except GatewayError:
            unreachable.append(backend_settings.name)
        finally:
            await backend.close()
    metadata = build_metadata(tables, workers=1)
    metadata.engine.close()
    return OfflineCatalog(metadata.snapshot, backends, unreachable)


def offline_catalog(settings: Settings) -> OfflineCatalog:
    catalog = asyncio.run(_read_tables(settings))
    for name in catalog.unreachable:
        print(f"note: backend {name!r} is not reachable; its tables are unknown to this check", file=sys.stderr)
    return catalog


def offline_planner(settings: Settings, catalog: OfflineCatalog) -> Planner:
    """The server's planner over an offline catalog (nothing it plans is run)."""
    mask_key = load_mask_key(key_env=settings.masking.key_env, key_file=settings.masking.key_file)
    return Planner(backends=catalog.backends, default_catalog=settings.default_catalog, version=__version__,
                   metrics=Metrics(), mask_key=mask_key)


def policy_check(settings: Settings, directory: Path | None) -> int:
    directory = directory or settings.policies.dir
    try:
        policy = load_policies(directory)
        load_workload(directory)  # resource groups (workload.yaml), with their own file:line errors
    except PolicyError as error:
        for message in error.errors:
            print(message)
        print(f"{len(error.errors)} error(s) in {directory}", file=sys.stderr)
        return 1
    catalog = offline_catalog(settings)
    dialects = {name: backend.dialect for name, backend in catalog.backends.items()}
    findings = check_policies(policy, catalog.snapshot.column_types(), dialects=dialects)
    for finding in findings:
        print(finding)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    print(f"{directory}: policy version {policy.version[:12]}, {len(policy.tables)} table entries, "
          f"{errors} error(s), {warnings} warning(s)", file=sys.stderr)
    return 1 if errors else 0


def explain(settings: Settings, args: argparse.Namespace) -> int:
    try:
        policy = load_policies(settings.policies.dir)
    except PolicyError as error:
        for message in error.errors:
            print(message, file=sys.stderr)
        return 1
    session = Session(user=args.user, source=args.source, catalog=args.catalog or settings.default_catalog,
                      schema=args.schema or settings.backends[0].schema)
    known = build_dev_users(settings).get(args.user) or Identity.create(args.user)
    if args.groups is not None or args.attr:
        groups = [g for g in (args.groups or "").split(",") if g]
        try:
            typed = attributes_from_pairs(args.attr)
        except ValueError as error:
            raise SystemExit(f"--attr: {error}") from None
        identity = Identity.create(args.user, groups=groups, attributes=typed)
    else:
        identity = known
    catalog = offline_catalog(settings)
    planner = offline_planner(settings, catalog)
    mask_key = planner.mask_key
    attributes = ", ".join(f"{k}={v!r}" for k, v in identity.attributes.items())
    print(f"identity: user={identity.user} groups={sorted(identity.groups)} attributes={{{attributes}}} "
          f"source={args.source}")
    print(f"policy version: {policy.version[:12]}")
    try:
        plan = planner.plan(args.sql, session=session, identity=identity, snapshot=catalog.snapshot,
                            policy=PolicyContext(policy, SecureViews()))
    except GatewayError as error:
        print(f"decision: DENY ({error.error_name})\nreason: {error.message}")
        return 3
    print("decision: ALLOW")
    if plan.tables:
        print("tables: " + ", ".join(str(t) for t in plan.tables))
    for rule in plan.rules:
        print(f"rule: {rule}")
    if plan.sql is not None:
        print(f"target: {plan.target}\nsql: {mask_key.display(plan.sql)}")
    elif plan.change is not None:
        print(f"session change: {plan.change}")
    return 0
