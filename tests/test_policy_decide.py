"""Policy decisions: `when` matching, most-specific table entry, access, row filter and mask choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.identity import Identity
from gateway.policy import decide_table, load_dev_users, load_policies, parse_policies, when_matches
from gateway.policy.decide import equally_specific
from gateway.policy.model import AttributeTest, MaskRef, When

POLICIES = Path(__file__).resolve().parent.parent / "policies"

ALICE = Identity.create("alice", groups=["analysts"], attributes={"nations": [1, 2], "clearance": 3})


@pytest.mark.parametrize(
    ("when", "source", "expected"),
    [
        (When(), None, True),
        (When(users=frozenset({"alice"})), None, True),
        (When(users=frozenset({"bob"})), None, False),
        (When(groups=frozenset({"x", "analysts"})), None, True),
        (When(groups=frozenset({"admins"})), None, False),
        (When(groups=frozenset()), None, False),
        (When(source="superset|tableau"), "tableau", True),
        (When(source="superset|tableau"), "tableau-desktop", False),  # whole-string match
        (When(source="superset"), None, False),  # no source never matches
        (When(attributes=(("clearance", AttributeTest(equals=3)),)), None, True),
        (When(attributes=(("clearance", AttributeTest(gte=3)),)), None, True),
        (When(attributes=(("clearance", AttributeTest(gte=4)),)), None, False),
        (When(attributes=(("clearance", AttributeTest(lte=2)),)), None, False),
        (When(attributes=(("nations", AttributeTest(equals=2)),)), None, True),  # list: any element
        (When(attributes=(("nations", AttributeTest(any_of=(5, 1))),)), None, True),
        (When(attributes=(("nations", AttributeTest(any_of=(5, 6))),)), None, False),
        (When(attributes=(("nations", AttributeTest(gte=0)),)), None, False),  # ranges never match lists
        (When(attributes=(("missing", AttributeTest(lte=100)),)), None, False),
        (When(attributes=(("clearance", AttributeTest(equals="3")),)), None, False),  # no type coercion
        (When(users=frozenset({"alice"}), groups=frozenset({"admins"})), None, False),  # all parts must hold
    ],
)
def test_when_matches(when: When, source: str | None, expected: bool) -> None:
    assert when_matches(when, ALICE, source) is expected


def test_bool_attribute_is_not_a_number() -> None:
    identity = Identity.create("u", attributes={"flag": True})
    assert not when_matches(When(attributes=(("flag", AttributeTest(equals=1)),)), identity, None)
    assert not when_matches(When(attributes=(("flag", AttributeTest(gte=1)),)), identity, None)
    assert when_matches(When(attributes=(("flag", AttributeTest(equals=True)),)), identity, None)


WILDCARDS = """\
tables:
  - {name: "*.*", access: [{when: {groups: [everyone]}}]}
  - {name: "tpch.*", access: [{when: {groups: [analysts]}}]}
  - {name: "demo.tpch.cust*", access: [{when: {groups: [nobody]}}]}
  - {name: tpch.customer, access: [{when: {groups: [analysts]}}], row_filters: [{filter: x}]}
  - {name: "*.fin.*", access: [{}]}
  - {name: "other.*.ledger", access: [{}]}
"""


@pytest.mark.parametrize(
    ("table", "entry"),
    [
        ("demo.tpch.customer", "tpch.customer"),  # exact beats partial wildcard beats *
        ("demo.tpch.custom", "demo.tpch.cust*"),
        ("demo.tpch.orders", "tpch.*"),
        ("demo.misc.orders", "*.*"),
        ("x.fin.t", "*.fin.*"),
        ("other.fin.ledger", "other.*.ledger"),  # the table part outranks the schema part
        ("a.b", None),  # not catalog.schema.table
    ],
)
def test_most_specific_entry_wins(table: str, entry: str | None) -> None:
    policy = parse_policies({"p.yaml": WILDCARDS})
    found = equally_specific(policy, table)
    assert [e.name for e in found] == ([entry] if entry else [])


def test_equally_specific_entries_deny() -> None:
    policy = parse_policies({"p.yaml": 'tables:\n  - {name: "s.a*", access: [{}]}\n  - {name: "s.*b", access: [{}]}\n'})
    decision = decide_table(policy, "c.s.ab", ALICE, None)
    assert not decision.allowed
    assert "equally specific" in decision.reason
    assert decide_table(policy, "c.s.ax", ALICE, None).allowed


def test_access_first_match_wins_and_default_deny() -> None:
    text = """\
tables:
  - name: s.t
    access:
      - {when: {user: alice}, allow: false}
      - {when: {groups: [analysts]}}
"""
    policy = parse_policies({"p.yaml": text})
    assert not decide_table(policy, "c.s.t", ALICE, None).allowed
    bob = Identity.create("bob", groups=["analysts"])
    assert decide_table(policy, "c.s.t", bob, None).allowed
    assert not decide_table(policy, "c.s.t", Identity.create("eve"), None).allowed
    assert not decide_table(policy, "c.s.other", bob, None).allowed


def test_shipped_policy_decisions() -> None:
    policy = load_policies(POLICIES)
    users = load_dev_users(POLICIES / "dev_users.yaml")

    alice = decide_table(policy, "demo.tpch.customer", users["alice"], None)
    assert alice.allowed and alice.row_filter is not None
    assert alice.row_filter.filter == "c_nationkey IN (:nations)" and alice.row_filter_index == 2
    masked = {m.column: m for m in alice.masks}
    assert masked["c_phone"].mask == MaskRef(builtin="last4")
    assert masked["c_name"].origin == "classification pii"

    sam = decide_table(policy, "demo.tpch.customer", users["sam"], None)
    assert "c_phone" not in {m.column for m in sam.masks}

    admin = decide_table(policy, "demo.tpch.customer", users["admin"], None)
    assert admin.row_filter is not None and admin.row_filter.filter == "true" and not admin.masks

    assert decide_table(policy, "demo.tpch.nation", users["alice"], None).unrestricted
    assert not decide_table(policy, "demo.tpch.customer", users["audrey"], None).allowed
    assert decide_table(policy, "gateway.audit.queries", users["audrey"], None).allowed
    assert not decide_table(policy, "gateway.audit.queries", users["admin"], None).allowed


def test_row_filters_present_but_none_match_means_no_rows() -> None:
    text = "tables:\n  - name: s.t\n    access: [{}]\n    row_filters: [{when: {groups: [x]}, filter: 'true'}]\n"
    decision = decide_table(parse_policies({"p.yaml": text}), "c.s.t", ALICE, None)
    assert decision.allowed and decision.no_rows and decision.row_filter is None


def test_column_mask_beats_classification_mask() -> None:
    text = """\
tables:
  - name: s.t
    access: [{}]
    columns:
      a: {classification: pii, mask: last4}
      b: {classification: pii}
      c: {classification: public}
classification_masks:
  pii: {mask: hash, unmask_when: {attributes: {clearance: {gte: 5}}}}
"""
    decision = decide_table(parse_policies({"p.yaml": text}), "c.s.t", ALICE, None)
    assert {m.column: m.mask.describe() for m in decision.masks} == {"a": "last4", "b": "hash"}
    cleared = Identity.create("x", attributes={"clearance": 5})
    decision = decide_table(parse_policies({"p.yaml": text}), "c.s.t", cleared, None)
    assert {m.column for m in decision.masks} == {"a"}  # a's own mask has no unmask_when
