"""Policy files -> PolicySet: the shipped examples load, and every mistake is reported as file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy import PolicyError, load_dev_users, load_policies, parse_policies
from gateway.policy.model import MaskRef

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def errors_of(text: str, file: str = "p.yaml") -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policies({file: text})
    return list(info.value.errors)


def test_shipped_policies_load() -> None:
    policy = load_policies(POLICIES)
    names = [t.name for t in policy.tables]
    assert names[:2] == ["tpch.customer", "tpch.orders"]
    assert "gateway.audit.*" in names
    customer = policy.tables[0]
    assert customer.columns["c_phone"].mask == MaskRef(builtin="last4")
    assert customer.columns["c_acctbal"].mask == MaskRef(sql="round({column}, -3)")
    # A named mask is resolved to its definition, so decide/rewrite never look names up.
    assert policy.tables[1].columns["o_clerk"].mask == policy.masks["clerk_id"]
    assert len(policy.version) == 64


def test_shipped_dev_users_load() -> None:
    users = load_dev_users(POLICIES / "dev_users.yaml")
    assert set(users) == {"alice", "bob", "sam", "admin", "audrey", "fiona"}
    assert users["alice"].groups == frozenset({"analysts"})
    assert users["alice"].attributes["nations"] == (1, 2, 3)
    assert users["admin"].cost_center == "CC-9000"


def test_directory_merges_files_and_version_follows_content(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("tables:\n  - name: s.a\n    access: [{}]\n")
    (tmp_path / "b.yaml").write_text("masks:\n  m: {sql: \"'x'\"}\ntables:\n  - name: s.b\n")
    (tmp_path / "notes.txt").write_text("not a policy")
    first = load_policies(tmp_path)
    assert [t.name for t in first.tables] == ["s.a", "s.b"]
    assert set(first.masks) == {"m"}
    assert load_policies(tmp_path).version == first.version
    (tmp_path / "b.yaml").write_text("tables:\n  - name: s.b\n")
    assert load_policies(tmp_path).version != first.version


def test_all_errors_reported_with_file_and_line() -> None:
    text = """\
tables:
  - name: tpch.customer
    row_filter:
      - filter: "true"
    access:
      - when: {groupz: [a]}
  - name: tpch.orders
    classification: secret
    columns:
      o_clerk: {mask: no_such_mask}
  - owner: nobody
"""
    assert errors_of(text, "x.yaml") == [
        "x.yaml:3: unknown key 'row_filter' in table entry",
        "x.yaml:6: unknown key 'groupz' in when",
        "x.yaml:8: classification must be one of public, internal, confidential, restricted",
        "x.yaml:11: table entry is missing 'name'",
        "x.yaml:10: unknown mask 'no_such_mask'",
    ]


def test_yaml_syntax_error_has_line() -> None:
    [error] = errors_of("tables:\n  - name: a.b\n    access: [\n", "bad.yaml")
    assert error.startswith("bad.yaml:4: invalid YAML")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tables:\n  - name: a.b\n  - name: a.b\n", "p.yaml:3: duplicate table entry 'a.b' (first at p.yaml:2)"),
        ("tables:\n  - name: a.b\n    name: c.d\n", "p.yaml:3: duplicate key 'name' in table entry"),
        ("tables:\n  - name: a\n", "p.yaml:2: table name 'a' must be [catalog.]schema.table ('*' as a wildcard)"),
        ("masks:\n  last4: {sql: x}\n", "p.yaml:2: mask 'last4' would shadow the built-in mask of that name"),
        ("tables:\n  - name: a.b\n    row_filters: [{filter: ''}]\n", "p.yaml:3: filter must be a non-empty"),
        ("tables:\n  - {name: a.b, access: [{when: {source: '('}}]}\n", "p.yaml:2: source is not a valid regular"),
        ("tables:\n  - {name: a.b, access: [{when: {attributes: {x: {}}}}]}\n", "p.yaml:2: attribute test 'x' needs"),
        ("tables:\n  - {name: a.b, access: [{allow: maybe}]}\n", "p.yaml:2: allow must be true or false"),
        ("tables:\n  - {name: a.b, columns: {c: {unmask_when: {}}}}\n", "p.yaml:2: unmask_when without a mask"),
        ("tables: {name: a.b}\n", "p.yaml:1: tables must be a list"),
        ("tabels: []\n", "p.yaml:1: unknown key 'tabels' in policy file"),
    ],
)
def test_single_errors(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert any(e.startswith(expected) for e in errors), errors


def test_other_loaders_sections_are_skipped() -> None:
    policy = parse_policies({"workload.yaml": "resource_groups: [{name: adhoc}]\n", "d.yaml": "users: {}\n"})
    assert policy.tables == ()


def test_when_forms() -> None:
    text = """\
tables:
  - name: a.b
    access:
      - when:
          user: alice
          groups: [x, y]
          source: "superset|tableau"
          attributes: {region: emea, clearance: {gte: 3, lte: 5}, tier: {in: [gold, silver]}}
"""
    [table] = parse_policies({"p.yaml": text}).tables
    when = table.access[0].when
    assert when.users == frozenset({"alice"})
    assert when.groups == frozenset({"x", "y"})
    assert when.source == "superset|tableau"
    tests = dict(when.attributes)
    assert tests["region"].equals == "emea"
    assert (tests["clearance"].gte, tests["clearance"].lte) == (3.0, 5.0)
    assert tests["tier"].any_of == ("gold", "silver")


def test_dev_users_errors(tmp_path: Path) -> None:
    path = tmp_path / "dev_users.yaml"
    path.write_text("users:\n  alice: {groups: [a], nations: [1]}\n")
    with pytest.raises(PolicyError) as info:
        load_dev_users(path)
    assert info.value.errors == (f"{path}:2: unknown key 'nations' in user 'alice'",)
