"""`gateway policy impact`: audited statements replayed under proposed policy files, planning only.

The module's statements are real audit records: a gateway serves them to the trino client and stops; the
command then reads its SQLite store. The property tests replay generated statements under generated
proposed policies: a proposal that only adds denies, filters or masks never exits non-zero, one that removes
a filter, a mask or a deny that a statement relied on always does.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trino
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.backends.base import Backend
from gateway.cli import main
from gateway.config import load_settings
from gateway.policy.load import load_dev_users, parse_policies, read_policy_texts
from gateway.policy.model import PolicySet
from gateway.policy_changes.impact import Replay, Statement
from gateway.testing import GatewayProcess
from gateway.tools import OfflineCatalog, offline_catalog, offline_planner
from tests.conftest import POLICIES, demo_config

STATEMENTS = {
    "alice": ["SELECT c_custkey, c_phone FROM customer", "SELECT count(*) FROM orders", "SELECT * FROM nation"],
    "bob": ["SELECT c_name, c_acctbal FROM customer WHERE c_nationkey = 6"],
    "audrey": ["SELECT * FROM customer"],
    "admin": ["SELECT o_clerk FROM orders LIMIT 1"],
}


@pytest.fixture(scope="module")
def audited(demo_database: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config whose audit store holds the STATEMENTS, run through a real gateway."""
    work = tmp_path_factory.mktemp("impact")
    config = {**demo_config(demo_database), "audit": {"store": f"sqlite:///{work / 'audit.db'}",
                                                      "spool_dir": str(work / "spool")}}
    gateway = GatewayProcess(work, config)
    try:
        for user, statements in STATEMENTS.items():
            cursor = trino.dbapi.connect(host=gateway.host, port=gateway.port, user=user, catalog="demo",
                                         schema="tpch").cursor()
            for sql in statements:
                try:
                    cursor.execute(sql)
                    cursor.fetchall()
                except trino.exceptions.TrinoUserError:
                    pass  # audrey is denied: that is a record too
    finally:
        gateway.stop()
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def proposed(tmp_path: Path, change: Any) -> Path:
    """A copy of the shipped policies with tables.yaml edited by `change(tables)`."""
    target = tmp_path / "proposed"
    shutil.copytree(POLICIES, target)
    tables = yaml.safe_load((target / "tables.yaml").read_text())
    change(tables)
    (target / "tables.yaml").write_text(yaml.safe_dump(tables))
    return target


def entry(tables: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in tables["tables"] if e["name"] == name)


def widen(tables: dict[str, Any]) -> None:
    customer = entry(tables, "tpch.customer")
    del customer["row_filters"]  # analysts now see every nation
    customer["access"][0]["when"]["groups"].append("auditors")  # and auditors may read it


def test_widening_proposal_is_caught_and_named(audited: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "policy", "impact", "--config", str(audited),
                             "--proposed", str(proposed(tmp_path, widen)), "--format", "json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    changes = json.loads(result.stdout)
    found = {(c["user"], c["table"], c["change"]) for c in changes}
    assert ("alice", "demo.tpch.customer", "filter lost") in found
    assert ("bob", "demo.tpch.customer", "filter lost") in found
    assert ("audrey", "demo.tpch.customer", "denied->allowed") in found
    assert all(c["widens"] for c in changes if c["change"] in ("filter lost", "denied->allowed"))
    assert not any(c["user"] == "admin" for c in changes)  # admins' access does not change
    assert "widening access" in result.stderr


def test_narrowing_proposal_exits_0_and_reports_what_it_adds(audited: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    def narrow(tables: dict[str, Any]) -> None:
        entry(tables, "tpch.customer")["columns"]["c_custkey"] = {"mask": "redact"}
        entry(tables, "tpch.*")["access"].insert(0, {"when": {"user": ["alice"]}, "allow": False})

    assert main(["policy", "impact", "--config", str(audited), "--proposed", str(proposed(tmp_path, narrow)),
                 "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "user,table,change,widens,detail,sql"
    assert any(line.startswith("alice,demo.tpch.customer,mask gained,no,c_custkey") for line in lines)
    assert any(line.startswith("alice,demo.tpch.nation,allowed->denied,no") for line in lines)


def test_replay_plans_only_and_never_executes(audited: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    executed: list[str] = []

    def spy(self: Backend, sql: str, *args: Any, **kwargs: Any) -> Any:
        executed.append(sql)
        raise AssertionError("policy impact executed a statement")

    for backend in _subclasses(Backend):
        monkeypatch.setattr(backend, "execution", spy, raising=False)
        monkeypatch.setattr(backend, "estimate_scan_bytes", spy, raising=False)
    assert main(["policy", "impact", "--config", str(audited), "--proposed", str(proposed(tmp_path, widen))]) == 3
    out = capsys.readouterr().out
    assert executed == []
    assert "filter lost" in out and "denied->allowed" in out  # the table format
    # the spy does catch execution: the same backend class, used as the server uses it
    settings = load_settings(audited)
    from gateway.backends.factory import build_backend

    with pytest.raises(AssertionError):
        build_backend(settings.backends[0], generate_demo=False).execution("SELECT 1")
    assert executed == ["SELECT 1"]


def _subclasses(cls: type) -> list[type]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def test_usage_errors_exit_2(audited: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "impact", "--config", str(audited), "--proposed", str(tmp_path / "missing")]) == 2
    broken = tmp_path / "broken"
    shutil.copytree(POLICIES, broken)
    (broken / "tables.yaml").write_text("tables:\n  - name: tpch.customer\n    acess: []\n")
    assert main(["policy", "impact", "--config", str(audited), "--proposed", str(broken)]) == 2
    assert main(["policy", "impact", "--config", str(audited), "--proposed", str(POLICIES), "--since",
                 "last week"]) == 2
    err = capsys.readouterr().err
    assert "tables.yaml:3" in err and "--since" in err
    with pytest.raises(SystemExit) as exit_:
        main(["policy", "impact", "--config", str(audited)])  # --proposed is required
    assert exit_.value.code == 2


# -- the property: only narrowing -> 0, any widening a statement relies on -> non-zero -------------------------

USERS = load_dev_users(POLICIES / "dev_users.yaml")
TABLES = {"customer": ["c_custkey", "c_name", "c_phone", "c_address", "c_acctbal", "c_nationkey"],
          "orders": ["o_orderkey", "o_custkey", "o_clerk", "o_totalprice"],
          "nation": ["n_nationkey", "n_name"], "supplier": ["s_suppkey", "s_phone"]}
SHIPPED = yaml.safe_load((POLICIES / "tables.yaml").read_text())
OTHER_TEXTS = {f: t for f, t in read_policy_texts(POLICIES).items() if not f.endswith("tables.yaml")}
GROUPS = ["analysts", "support", "admins", "auditors", "finance"]


def policy_of(tables: dict[str, Any]) -> PolicySet:
    return parse_policies({**OTHER_TEXTS, "proposed/tables.yaml": yaml.safe_dump(tables)})


@pytest.fixture(scope="module")
def catalog(audited: Path) -> OfflineCatalog:
    return offline_catalog(load_settings(audited))




@st.composite
def statement(draw: st.DrawFn) -> Statement:
    table = draw(st.sampled_from(sorted(TABLES)))
    columns = draw(st.lists(st.sampled_from(TABLES[table]), min_size=1, max_size=3, unique=True))
    user = draw(st.sampled_from(sorted(USERS)))
    return Statement(identity=USERS[user], catalog="demo", schema="tpch",
                     sql=f"SELECT {', '.join(columns)} FROM {table}")


@st.composite
def narrowing(draw: st.DrawFn) -> dict[str, Any]:
    """The shipped tables with 1-3 changes that each only take access away."""
    tables = copy.deepcopy(SHIPPED)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["deny", "mask", "filter", "drop_group"]))
        if kind == "deny":
            target = draw(st.sampled_from(tables["tables"]))
            who = draw(st.one_of(st.builds(lambda g: {"groups": [g]}, st.sampled_from(GROUPS)),
                                 st.builds(lambda u: {"user": [u]}, st.sampled_from(sorted(USERS)))))
            target["access"].insert(0, {"when": who, "allow": False})
        elif kind == "mask":
            name, table = draw(st.sampled_from([("tpch.customer", "customer"), ("tpch.orders", "orders")]))
            columns = entry(tables, name).setdefault("columns", {})
            free = [c for c in TABLES[table] if c not in columns]
            if free:
                columns[draw(st.sampled_from(free))] = {"mask": draw(st.sampled_from(["redact", "null", "hash"]))}
        elif kind == "filter":
            target = entry(tables, "tpch.*")
            if "row_filters" not in target:
                target["row_filters"] = [{"filter": draw(st.sampled_from(["1 = 0", "true"]))}]
        else:
            target = entry(tables, draw(st.sampled_from(["tpch.customer", "tpch.orders", "tpch.*"])))
            groups = target["access"][-1]["when"]["groups"]
            if len(groups) > 1:
                groups.remove(draw(st.sampled_from(groups)))
    return tables


def replay(catalog: OfflineCatalog, audited: Path, proposed_tables: dict[str, Any],
           replayed: list[Statement]) -> list[Any]:
    planner = offline_planner(load_settings(audited), catalog)
    return Replay(planner=planner, snapshot=catalog.snapshot, current=policy_of(SHIPPED),
                  proposed=policy_of(proposed_tables)).changes(replayed)


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables=narrowing(), replayed=st.lists(statement(), min_size=1, max_size=6))
def test_proposals_that_only_narrow_never_widen(catalog: OfflineCatalog, audited: Path, tables: dict[str, Any],
                                                replayed: list[Statement]) -> None:
    changes = replay(catalog, audited, tables, replayed)
    assert not [c for c in changes if c.widens]


WIDENINGS: dict[str, tuple[str, str, str]] = {
    # what is removed -> (user, statement, change it must report)
    "customer filter": ("alice", "SELECT c_custkey FROM customer", "filter lost"),
    "orders filter": ("sam", "SELECT o_orderkey FROM orders", "filter lost"),
    "phone mask": ("bob", "SELECT c_phone FROM customer", "mask lost"),
    "clerk mask": ("alice", "SELECT o_clerk FROM orders", "mask lost"),
    "pii classification mask": ("sam", "SELECT c_name FROM customer", "mask lost"),
    "deny auditors": ("audrey", "SELECT n_name FROM nation", "denied->allowed"),
}


def remove(tables: dict[str, Any], what: str) -> None:
    if what == "customer filter":
        entry(tables, "tpch.customer")["row_filters"][1]["filter"] = "true"
    elif what == "orders filter":
        del entry(tables, "tpch.orders")["row_filters"]
    elif what == "phone mask":
        del entry(tables, "tpch.customer")["columns"]["c_phone"]  # its classification (pii, masked) goes too
    elif what == "clerk mask":
        del entry(tables, "tpch.orders")["columns"]["o_clerk"]
    elif what == "pii classification mask":
        del tables["classification_masks"]["pii"]
    else:
        entry(tables, "tpch.*")["access"][0]["when"]["groups"].append("auditors")


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(what=st.sampled_from(sorted(WIDENINGS)), others=st.lists(statement(), max_size=5),
       position=st.integers(0, 5))
def test_proposals_that_remove_a_restriction_widen(catalog: OfflineCatalog, audited: Path, what: str,
                                                   others: list[Statement], position: int) -> None:
    """Removing one restriction a replayed statement relies on is reported, whatever else is replayed."""
    user, sql, kind = WIDENINGS[what]
    tables = copy.deepcopy(SHIPPED)
    remove(tables, what)
    relied_on = Statement(identity=USERS[user], catalog="demo", schema="tpch", sql=sql)
    replayed = [*others]
    replayed.insert(min(position, len(replayed)), relied_on)
    changes = replay(catalog, audited, tables, replayed)
    assert any(c.widens and c.user == user and c.kind == kind for c in changes), changes


