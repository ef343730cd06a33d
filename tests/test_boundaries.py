"""The layering DESIGN.md draws, read from the imports: protocol code never knows policy or backends, policy
and SQL code never do I/O, backends never know policy, and the planner names no backend type.

Each rule lists module prefixes a layer must not import (directly). A new module in a layer is checked
the day it is added; an exception needs an entry here, in review, with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "gateway"

# Standard-library and third-party modules that do I/O (files, network, processes, engines).
IO_MODULES = ("asyncio", "socket", "ssl", "subprocess", "os", "pathlib", "io", "shutil", "sqlite3", "duckdb",
              "asyncpg", "redis", "httpx", "starlette", "uvicorn", "urllib.request", "snowflake", "trino",
              "prometheus_client")

RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("gateway.frontends", ("gateway.backends", "gateway.policy", "gateway.sql.rewrite", "gateway.sql.masks",
                           "gateway.mask_key"),
     "protocol code only encodes: access is decided through gateway.access, rows come as gateway.relations"),
    ("gateway.planner", ("gateway.backends", "gateway.cache", "gateway.frontends"),
     "the planner plans for a SqlTarget (gateway.relations); determinism is gateway.sql's"),
    ("gateway.sql", ("gateway.backends", "gateway.frontends", "gateway.cache", "gateway.workload",
                     "gateway.audit", *IO_MODULES),
     "statement analysis and rewriting are pure functions of the SQL"),
    ("gateway.policy.decide", (*IO_MODULES, "gateway.backends", "gateway.frontends"), "decisions do no I/O"),
    ("gateway.policy.model", (*IO_MODULES, "gateway.backends", "gateway.frontends"), "decisions do no I/O"),
    ("gateway.policy.check", (*IO_MODULES, "gateway.backends", "gateway.frontends"), "decisions do no I/O"),
    ("gateway.access", (*IO_MODULES, "gateway.backends", "gateway.frontends"), "the door decides, does no I/O"),
    ("gateway.backends", ("gateway.policy", "gateway.sql.rewrite", "gateway.sql.masks", "gateway.mask_key",
                          "gateway.frontends", "gateway.access", "gateway.planner", "gateway.pipeline"),
     "backends run SQL they are given; they know nothing of policies"),
    ("gateway.pipeline", ("gateway.policy.decide", "gateway.frontends", "gateway.backends.duckdb",
                          "gateway.backends.postgres"),
     "the pipeline orders the stages: access through gateway.access, no protocol, no engine"),
    ("gateway.policy_changes.impact", (*IO_MODULES, "gateway.backends", "gateway.frontends", "gateway.pipeline"),
     "the impact replay only plans: it reaches no backend and runs nothing"),
    ("gateway.grants", ("gateway.frontends", "gateway.backends", "gateway.planner", "gateway.pipeline",
                        "gateway.policy.decide"),
     "just-in-time access is a service frontends call; who may do what is gateway.access's alone"),
    ("gateway.grants.model", (*IO_MODULES, "gateway.audit"), "access requests as values: no I/O"),
    ("gateway.grants.snapshot", (*IO_MODULES, "gateway.audit"), "decisions read the snapshot: no I/O"),
    ("gateway.lineage.facets", (*IO_MODULES, "gateway.backends", "gateway.frontends", "gateway.pipeline",
                                "openlineage.client.transport"),
     "lineage events are built from the outcome alone; only the emitter sends them"),
    ("gateway.lineage.columns", (*IO_MODULES, "gateway.backends", "gateway.frontends", "gateway.policy"),
     "column lineage is a pure function of the resolved statement"),
    ("gateway.lineage.naming", (*IO_MODULES, "gateway.frontends", "gateway.backends.duckdb",
                                "gateway.backends.postgres", "gateway.backends.trino", "gateway.backends.snowflake"),
     "dataset names come from the backends' settings, never a live connection"),
    ("gateway.relations", ("gateway.backends", "gateway.frontends", "gateway.planner", "gateway.policy"),
     "the neutral value types depend on no layer"),
    ("gateway.console", ("gateway.backends", "gateway.policy", "gateway.sql.rewrite", "gateway.sql.masks",
                         "gateway.mask_key", "gateway.grants"),
     "the console renders: rights come from gateway.access, access requests from app.state (the JIT contract)"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = {module_name(p): imports_of(p) for p in ROOT.rglob("*.py")}


@pytest.mark.parametrize(("layer", "forbidden", "why"), RULES, ids=[r[0] for r in RULES])
def test_layer_does_not_import(layer: str, forbidden: tuple[str, ...], why: str) -> None:
    members = {name: imported for name, imported in MODULES.items() if within(name, layer)}
    assert members, f"no module is in layer {layer}"
    crossings = sorted(f"{name} imports {target}" for name, imported in members.items()
                       for target in imported if any(within(target, f) for f in forbidden))
    assert not crossings, f"{why}:\n" + "\n".join(crossings)


def test_rules_see_imports_inside_functions_too() -> None:
    sample = ROOT / "frontends" / "ops.py"
    assert "gateway.errors" in imports_of(sample)
    assert within("gateway.backends.base", "gateway.backends") and not within("gateway.backendsx", "gateway.backends")
