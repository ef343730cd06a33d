"""`policies/canaries.yaml`: probe queries run as named test identities, each with its expected outcome.

    canaries:
      users:                              # test identities: groups and attributes only, never credentials
        canary-americas: {groups: [analysts], attributes: {nations: [1, 2, 3]}}
      probes:
        - name: americas analysts see nations 1, 2, 3 only
          user: canary-americas
          sql: SELECT c_nationkey FROM customer
          expect: {rows_where: "c_nationkey IN (1, 2, 3)", max_rows: 1000}
        - name: auditors cannot read customers
          user: canary-auditor
          sql: SELECT * FROM customer
          expect: denied

`expect` is `denied`, `allowed`, or a mapping (the statement must be allowed) of `rows_where` (a DuckDB SQL
predicate over the result's columns every returned row must satisfy), `max_rows`, `min_rows` and `masked`
(result columns a column mask must produce). Mistakes are `file:line` errors, as in every policy file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway.identity import Identity
from gateway.policy.load import NodeReader, PolicyError

CANARIES_FILE = "canaries.yaml"
SECTION = "canaries"
DENIED = "denied"
ALLOWED = "allowed"
CANARY_COST_CENTER = "canary"  # what canary probes cost is charged here, never to a team's budget


@dataclass(frozen=True)
class Expectation:
    outcome: str  # DENIED or ALLOWED
    rows_where: str | None = None
    max_rows: int | None = None
    min_rows: int | None = None
    masked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Canary:
    name: str
    identity: Identity
    sql: str
    expect: Expectation
    location: str
    catalog: str | None = None
    schema: str | None = None


@dataclass(frozen=True)
class CanarySet:
    canaries: tuple[Canary, ...] = ()


def load_canaries(directory: Path) -> CanarySet:
    """The canaries of a policies directory (none without `canaries.yaml`); raises PolicyError."""
    path = directory / CANARIES_FILE
    if not path.exists():
        return CanarySet()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([f"{path}: cannot read: {exc}"]) from exc
    return parse_canaries(str(path), text)


def parse_canaries(file: str, text: str) -> CanarySet:
    reader = NodeReader(file)
    root = reader.document(text)
    canaries: list[Canary] = []
    top = reader.mapping_of(root, "canaries file") if root is not None else None  # other sections: others'
    section = top.get(SECTION) if top else None
    if section is not None:
        fields = reader.mapping(section, SECTION, {"users", "probes"}, required={"probes"})
        users = _users(reader, fields.get("users")) if fields else {}
        for node in reader.sequence(fields["probes"], "probes") if fields and "probes" in fields else []:
            canary = _probe(reader, node, users)
            if canary is not None:
                canaries.append(canary)
        names = [c.name for c in canaries]
        for canary in canaries:
            if names.count(canary.name) > 1:
                reader.errors.append(f"{canary.location}: canary name {canary.name!r} is used more than once")
                names = [n for n in names if n != canary.name]
    if reader.errors:
        raise PolicyError(reader.errors)
    return CanarySet(tuple(canaries))


def _users(reader: NodeReader, node: yaml.Node | None) -> dict[str, Identity]:
    users: dict[str, Identity] = {}
    for name, user_node in reader.mapping_of(node, "users").items():
        fields = reader.mapping(user_node, f"user {name!r}", {"groups", "attributes"})
        if fields is None:
            continue
        groups = reader.strings(fields["groups"], "groups") if "groups" in fields else []
        attributes = reader.attribute_values(fields["attributes"]) if "attributes" in fields else {}
        users[name] = Identity.create(name, groups=groups or [], attributes=attributes, auth_method="canary",
                                      cost_center=CANARY_COST_CENTER)
    return users


def _probe(reader: NodeReader, node: yaml.Node, users: dict[str, Identity]) -> Canary | None:
    fields = reader.mapping(node, "probe", {"name", "user", "sql", "expect", "catalog", "schema"},
                            required={"name", "user", "sql", "expect"})
    if not fields or not {"name", "user", "sql", "expect"} <= fields.keys():
        return None
    name, user, sql = (reader.string(fields[k], k) for k in ("name", "user", "sql"))
    expect = _expectation(reader, fields["expect"])
    if user is not None and user not in users:
        reader.error(fields["user"], f"user {user!r} is not defined under canaries.users")
        return None
    if name is None or user is None or sql is None or expect is None:
        return None
    return Canary(name=name, identity=users[user], sql=sql, expect=expect, location=reader.location(node),
                  catalog=reader.optional_string(fields, "catalog"), schema=reader.optional_string(fields, "schema"))


def _expectation(reader: NodeReader, node: yaml.Node) -> Expectation | None:
    if isinstance(node, yaml.ScalarNode):
        outcome = reader.string(node, "expect")
        if outcome not in (DENIED, ALLOWED):
            reader.error(node, f"expect must be {DENIED}, {ALLOWED} or a mapping of rows_where, max_rows, "
                               f"min_rows, masked")
            return None
        return Expectation(outcome)
    fields = reader.mapping(node, "expect", {"rows_where", "max_rows", "min_rows", "masked"})
    if fields is None:
        return None
    bounds = {}
    for key in ("max_rows", "min_rows"):
        if key in fields:
            value = reader.number(fields[key], key)
            if value is not None and (value < 0 or value != int(value)):
                reader.error(fields[key], f"{key} must be a whole number >= 0")
            bounds[key] = int(value) if value is not None else None
    masked = reader.strings(fields["masked"], "masked") if "masked" in fields else []
    return Expectation(ALLOWED, rows_where=reader.optional_string(fields, "rows_where"),
                       max_rows=bounds.get("max_rows"), min_rows=bounds.get("min_rows"),
                       masked=tuple(c.lower() for c in masked or []))
