"""Policy files -> `PolicySet`, and the dev users file -> identities.

Every mistake is reported as `file:line: message`, all of them at once, so an admin fixes a file in one pass.
Line numbers come from the YAML node marks (`yaml.compose`), which is why this reads nodes rather than the
plain dicts `yaml.safe_load` would give.

Unknown keys are errors, because a misspelt key (`row_filter:`) would otherwise silently drop a rule. The
policies directory also holds other loaders' files (workload, cost, dev users); their top-level sections are
skipped by name (`FOREIGN_SECTIONS`), so a loader that adds a section adds its name there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from gateway.identity import Identity
from gateway.policy.model import (
    BUILTIN_MASKS,
    DEFAULT_MAX_GRANT_SECONDS,
    TABLE_CLASSIFICATIONS,
    AccessRule,
    Approvers,
    AttributeTest,
    ClassificationMask,
    ColumnPolicy,
    ImpersonationRule,
    MaskRef,
    PolicySet,
    RowFilter,
    Scalar,
    TablePolicy,
    When,
)
from gateway.units import parse_duration

POLICY_SECTIONS = frozenset({"tables", "masks", "classification_masks", "impersonation", "mask_key_version",
                             "classification_approvers"})
FOREIGN_SECTIONS = frozenset({"users", "resource_groups", "capacity", "rates", "budgets", "cost_centers",
                              "cost_center_from", "canaries"})

_NAME_PART = re.compile(r"[A-Za-z0-9_*-]+")


class PolicyError(Exception):
    """One or more invalid policy files. `errors` holds every `file:line: message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = tuple(errors)


def read_policy_texts(path: str | Path) -> dict[str, str]:
    """file name -> text of a policy file, or of every `*.yaml` file of a directory, in name order."""
    root = Path(path)
    files = sorted(root.glob("*.yaml")) if root.is_dir() else [root] if root.exists() else []
    try:
        return {str(f): f.read_text(encoding="utf-8") for f in files}
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([f"{path}: cannot read: {exc}"]) from exc


def load_policies(path: str | Path, *, foreign_sections: Collection[str] = FOREIGN_SECTIONS) -> PolicySet:
    """Load a policy file, or every `*.yaml` file of a directory (in name order) merged into one set."""
    if not Path(path).exists():
        raise PolicyError([f"{path}: cannot read: no such file or directory"])
    return parse_policies(read_policy_texts(path), foreign_sections=foreign_sections)


@dataclass
class Sections:
    """The top-level sections one loader owns, gathered from all policy files: each section may be defined in
    one file only. Other loaders' sections are left to them."""

    found: dict[str, tuple[NodeReader, yaml.Node]]  # section -> the reader of its file, its node
    owners: dict[str, str]  # file -> text, for the files that define any of the sections (the version hash)
    readers: list[NodeReader]

    def raise_errors(self) -> None:
        errors = [error for reader in self.readers for error in reader.errors]
        if errors:
            raise PolicyError(errors)

    @property
    def version(self) -> str:
        return content_hash(self.owners)


def collect_sections(texts: Mapping[str, str], sections: Collection[str]) -> Sections:
    collected = Sections(found={}, owners={}, readers=[])
    for file, text in texts.items():
        reader = NodeReader(file)
        collected.readers.append(reader)
        root = reader.document(text)  # a YAML error anywhere is an error here too: never silently ignored
        if not isinstance(root, yaml.MappingNode):
            continue
        for key_node, value_node in root.value:
            section = key_node.value
            if section not in sections:
                continue
            if section in collected.found:
                first_reader, first_node = collected.found[section]
                reader.error(key_node, f"{section!r} is already defined at {first_reader.location(first_node)}")
                continue
            collected.found[section] = (reader, value_node)
            collected.owners[file] = text
    return collected


def parse_policies(texts: Mapping[str, str], *, foreign_sections: Collection[str] = FOREIGN_SECTIONS) -> PolicySet:
    """The pure half of `load_policies`: file name -> YAML text, merged in the given order."""
    merged = _Merged()
    for file, text in texts.items():
        reader = NodeReader(file)
        root = reader.document(text)
        if root is not None:
            _read_file(reader, root, merged, foreign_sections)
        merged.errors.extend(reader.errors)
    masks = _resolve_named_masks(merged)
    tables = tuple(_resolve_table(merged, t, masks) for t in merged.tables)
    classification_masks = {
        tag: ClassificationMask(_resolve(merged, ref, masks, loc), unmask, loc)
        for tag, (ref, unmask, loc) in merged.classification_masks.items()
    }
    if merged.errors:
        raise PolicyError(merged.errors)
    return PolicySet(
        tables=tables,
        masks=MappingProxyType(masks),
        classification_masks=MappingProxyType(classification_masks),
        version=content_hash(texts),
        impersonation=tuple(merged.impersonation),
        mask_key_version=merged.mask_key_version[0] if merged.mask_key_version else 1,
        classification_approvers=MappingProxyType(dict(merged.classification_approvers)),
    )


def load_dev_users(path: str | Path) -> dict[str, Identity]:
    """The dev-mode users file: `users: {name: {groups: [...], attributes: {...}, cost_center: ...}}`."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([f"{file}: cannot read: {exc}"]) from exc
    reader = NodeReader(file)
    users: dict[str, Identity] = {}
    root = reader.document(text)
    top = reader.mapping(root, "dev users file", {"users"}, required={"users"}) if root else None
    entries = reader.mapping_of(top["users"], "users") if top and "users" in top else {}
    for name, node in entries.items():
        fields = reader.mapping(node, f"user {name!r}", {"groups", "attributes", "cost_center"})
        if fields is None:
            continue
        groups = reader.strings(fields["groups"], "groups") if "groups" in fields else []
        attributes = reader.attribute_values(fields["attributes"]) if "attributes" in fields else {}
        cost_center = reader.string(fields["cost_center"], "cost_center") if "cost_center" in fields else None
        users[name] = Identity.create(name, groups=groups or [], attributes=attributes, cost_center=cost_center)
    if reader.errors:
        raise PolicyError(reader.errors)
    return users


# --- reading one file ------------------------------------------------------------------------------------


@dataclass
class _RawTable:
    policy: TablePolicy
    # Column masks still by name: named masks may be defined in a later file.
    mask_names: dict[str, tuple[str | MaskRef, str]]


@dataclass
class _Merged:
    errors: list[str] = field(default_factory=list)
    tables: list[_RawTable] = field(default_factory=list)
    table_names: dict[str, str] = field(default_factory=dict)  # pattern -> location, to catch duplicates
    masks: dict[str, tuple[str | MaskRef, str]] = field(default_factory=dict)
    classification_masks: dict[str, tuple[str | MaskRef, When | None, str]] = field(default_factory=dict)
    impersonation: list[ImpersonationRule] = field(default_factory=list)  # in file order, then rule order
    mask_key_version: tuple[int, str] | None = None  # the version, where it is set
    classification_approvers: dict[str, Approvers] = field(default_factory=dict)


def _read_file(reader: NodeReader, root: yaml.Node, merged: _Merged, foreign_sections: Collection[str]) -> None:
    top = reader.mapping(root, "policy file", POLICY_SECTIONS | set(foreign_sections))
    if top is None:
        return
    for node in reader.sequence(top.get("tables"), "tables"):
        table = _read_table(reader, node)
        if table is None:
            continue
        name = table.policy.name
        if name in merged.table_names:
            reader.error(node, f"duplicate table entry {name!r} (first at {merged.table_names[name]})")
            continue
        merged.table_names[name] = table.policy.location
        merged.tables.append(table)
    for name, node in reader.mapping_of(top.get("masks"), "masks").items():
        if name in BUILTIN_MASKS:
            reader.error(node, f"mask {name!r} would shadow the built-in mask of that name")
        elif name in merged.masks:
            reader.error(node, f"duplicate mask {name!r} (first at {merged.masks[name][1]})")
        elif (spec := reader.mask_spec(node)) is not None:
            merged.masks[name] = (spec, reader.location(node))
    for tag, node in reader.mapping_of(top.get("classification_masks"), "classification_masks").items():
        fields = reader.mapping(node, f"classification mask {tag!r}", {"mask", "unmask_when"}, {"mask"})
        if fields is None:
            continue
        if tag in merged.classification_masks:
            first = merged.classification_masks[tag][2]
            reader.error(node, f"duplicate classification mask {tag!r} (first at {first})")
            continue
        spec = reader.mask_spec(fields["mask"])
        unmask = reader.when(fields["unmask_when"]) if "unmask_when" in fields else None
        if spec is not None:
            merged.classification_masks[tag] = (spec, unmask, reader.location(node))
    for tag, node in reader.mapping_of(top.get("classification_approvers"), "classification_approvers").items():
        if tag not in TABLE_CLASSIFICATIONS:
            reader.error(node, f"classification_approvers: {tag!r} is not one of {', '.join(TABLE_CLASSIFICATIONS)}")
        elif tag in merged.classification_approvers:
            first = merged.classification_approvers[tag].location
            reader.error(node, f"duplicate classification_approvers {tag!r} (first at {first})")
        elif (approvers := _read_approvers(reader, node, f"classification_approvers {tag!r}")) is not None:
            merged.classification_approvers[tag] = approvers
    if (version_node := top.get("mask_key_version")) is not None:
        _read_mask_key_version(reader, version_node, merged)
    for node in reader.sequence(top.get("impersonation"), "impersonation"):
        rule = _read_impersonation(reader, node)
        if rule is not None:
            merged.impersonation.append(rule)


def _read_mask_key_version(reader: NodeReader, node: yaml.Node, merged: _Merged) -> None:
    """`mask_key_version: N`: which key, derived from the deployment's mask secret, keys the hash masks.
    Raising it rotates every keyed mask's values, as a reviewed policy change."""
    version = reader.number(node, "mask_key_version")
    if version is None:
        return
    if version != int(version) or not 1 <= version <= 1_000_000:
        reader.error(node, "mask_key_version must be a whole number from 1 to 1000000")
    elif merged.mask_key_version is not None:
        reader.error(node, f"mask_key_version is already set at {merged.mask_key_version[1]}")
    else:
        merged.mask_key_version = (int(version), reader.location(node))


def _read_impersonation(reader: NodeReader, node: yaml.Node) -> ImpersonationRule | None:
    """`- {when: {...}, new_user: "regex", allow: true}`; `when` matches the authenticated principal."""
    fields = reader.mapping(node, "impersonation rule", {"when", "new_user", "allow"}, required={"new_user"})
    if fields is None or "new_user" not in fields:
        return None
    pattern = reader.string(fields["new_user"], "new_user")
    if pattern is None:
        return None
    try:
        re.compile(pattern)
    except re.error as exc:
        reader.error(fields["new_user"], f"new_user is not a valid regular expression: {exc}")
        return None
    allow = reader.boolean(fields["allow"], "allow") if "allow" in fields else True
    return ImpersonationRule(_when_of(reader, fields), pattern, allow is True, reader.location(node))


_TABLE_KEYS = {"name", "owner", "cost_center", "classification", "access", "row_filters", "columns", "approvers"}


def _read_approvers(reader: NodeReader, node: yaml.Node, what: str) -> Approvers | None:
    """`{groups: [...], users: [...], max_duration: 8h}`: who may approve access requests, for how long."""
    fields = reader.mapping(node, what, {"groups", "users", "max_duration"})
    if fields is None:
        return None
    users = reader.strings(fields["users"], "users") if "users" in fields else []
    groups = reader.strings(fields["groups"], "groups") if "groups" in fields else []
    if not users and not groups:
        reader.error(node, f"{what} must name users or groups")
        return None
    longest = float(DEFAULT_MAX_GRANT_SECONDS)
    if "max_duration" in fields:
        seconds = parse_duration(reader.scalar(fields["max_duration"], "max_duration"))
        if seconds is None or seconds < 1:
            reader.error(fields["max_duration"], "max_duration must be a duration like 30m, 8h or 2d")
            return None
        longest = seconds
    return Approvers(users=frozenset(users or ()), groups=frozenset(groups or ()),
                     max_duration_seconds=int(longest), location=reader.location(node))


def _read_table(reader: NodeReader, node: yaml.Node) -> _RawTable | None:
    fields = reader.mapping(node, "table entry", _TABLE_KEYS, required={"name"})
    if fields is None or "name" not in fields:
        return None
    name = reader.string(fields["name"], "name")
    if name is None:
        return None
    name = name.lower()
    parts = name.split(".")
    if len(parts) not in (2, 3) or not all(_NAME_PART.fullmatch(p) for p in parts):
        reader.error(fields["name"], f"table name {name!r} must be [catalog.]schema.table ('*' as a wildcard)")
    classification = reader.optional_string(fields, "classification")
    if classification is not None and classification not in TABLE_CLASSIFICATIONS:
        reader.error(fields["classification"], f"classification must be one of {', '.join(TABLE_CLASSIFICATIONS)}")

    access = []
    for rule in reader.sequence(fields.get("access"), "access"):
        rule_fields = reader.mapping(rule, "access rule", {"when", "allow"})
        if rule_fields is not None:
            allow = reader.boolean(rule_fields["allow"], "allow") if "allow" in rule_fields else True
            access.append(AccessRule(_when_of(reader, rule_fields), allow is True, reader.location(rule)))

    row_filters: tuple[RowFilter, ...] | None = None
    if "row_filters" in fields:
        filters = []
        for rule in reader.sequence(fields["row_filters"], "row_filters"):
            rule_fields = reader.mapping(rule, "row filter", {"when", "filter"}, required={"filter"})
            if rule_fields is not None and "filter" in rule_fields:
                text = reader.string(rule_fields["filter"], "filter")
                if text is not None and text.strip():
                    filters.append(RowFilter(_when_of(reader, rule_fields), text, reader.location(rule)))
                else:
                    reader.error(rule_fields["filter"], "filter must be a non-empty SQL expression")
        row_filters = tuple(filters)

    columns: dict[str, ColumnPolicy] = {}
    mask_names: dict[str, tuple[str | MaskRef, str]] = {}
    for column, col_node in reader.mapping_of(fields.get("columns"), "columns").items():
        col_fields = reader.mapping(col_node, f"column {column!r}", {"classification", "mask", "unmask_when"})
        if col_fields is None:
            continue
        column = column.lower()
        spec = reader.mask_spec(col_fields["mask"]) if "mask" in col_fields else None
        if spec is not None:
            mask_names[column] = (spec, reader.location(col_fields["mask"]))
        columns[column] = ColumnPolicy(
            name=column,
            classification=reader.optional_string(col_fields, "classification"),
            mask=None,
            unmask_when=reader.when(col_fields["unmask_when"]) if "unmask_when" in col_fields else None,
            location=reader.location(col_node),
        )
    policy = TablePolicy(
        name=name,
        owner=reader.optional_string(fields, "owner"),
        cost_center=reader.optional_string(fields, "cost_center"),
        classification=classification,
        access=tuple(access),
        row_filters=row_filters,
        columns=MappingProxyType(columns),
        location=reader.location(node),
        approvers=_read_approvers(reader, fields["approvers"], f"approvers of {name}") if "approvers" in fields
        else None,
    )
    return _RawTable(policy, mask_names)


def _when_of(reader: NodeReader, fields: dict[str, yaml.Node]) -> When:
    return reader.when(fields["when"]) if "when" in fields else When()


# --- resolving names across files ------------------------------------------------------------------------


def _resolve_named_masks(merged: _Merged) -> dict[str, MaskRef]:
    resolved: dict[str, MaskRef] = {}
    for name, (spec, location) in merged.masks.items():
        if isinstance(spec, MaskRef):
            resolved[name] = spec
        elif spec in BUILTIN_MASKS:
            resolved[name] = MaskRef(builtin=spec)
        else:
            # One level only: a named mask naming another named mask is more indirection than it is worth.
            merged.errors.append(f"{location}: mask {name!r} must be a built-in mask or {{sql: ...}}")
    return resolved


def _resolve(merged: _Merged, spec: str | MaskRef, masks: Mapping[str, MaskRef], location: str) -> MaskRef:
    if isinstance(spec, MaskRef):
        return spec
    if spec in BUILTIN_MASKS:
        return MaskRef(builtin=spec)
    if spec in masks:
        return masks[spec]
    merged.errors.append(f"{location}: unknown mask {spec!r}")
    return MaskRef(builtin="null")  # never used: the error above rejects the whole set


def _resolve_table(merged: _Merged, raw: _RawTable, masks: Mapping[str, MaskRef]) -> TablePolicy:
    policy = raw.policy
    columns = dict(policy.columns)
    for name, (spec, location) in raw.mask_names.items():
        columns[name] = _replace_mask(columns[name], _resolve(merged, spec, masks, location))
    for column in columns.values():
        known = column.mask is not None or column.classification in merged.classification_masks
        if column.unmask_when is not None and not known:
            merged.errors.append(f"{column.location}: unmask_when without a mask for column {column.name!r}")
    return TablePolicy(
        name=policy.name,
        owner=policy.owner,
        cost_center=policy.cost_center,
        classification=policy.classification,
        access=policy.access,
        row_filters=policy.row_filters,
        columns=MappingProxyType(columns),
        location=policy.location,
        approvers=policy.approvers,
    )


def _replace_mask(column: ColumnPolicy, mask: MaskRef) -> ColumnPolicy:
    return ColumnPolicy(column.name, column.classification, mask, column.unmask_when, column.location)


def content_hash(texts: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for file, text in texts.items():
        for chunk in (Path(file).name, text):
            data = chunk.encode("utf-8")
            digest.update(len(data).to_bytes(8, "big"))  # length-prefixed, so file boundaries are unambiguous
            digest.update(data)
    return digest.hexdigest()


# --- YAML nodes with line numbers ------------------------------------------------------------------------


class NodeReader:
    """Typed accessors over YAML nodes that record `file:line: message` instead of raising."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[str] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def location(self, node: yaml.Node) -> str:
        return f"{self.file}:{node.start_mark.line + 1}"

    def error(self, node: yaml.Node, message: str) -> None:
        self.errors.append(f"{self.location(node)}: {message}")

    def document(self, text: str) -> yaml.Node | None:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            self.errors.append(f"{self.file}{line}: invalid YAML: {exc.problem or exc.context}")
        except yaml.YAMLError as exc:
            self.errors.append(f"{self.file}: invalid YAML: {exc}")
        return None

    def mapping(
        self, node: yaml.Node, what: str, allowed: Collection[str], required: Collection[str] = ()
    ) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping")
            return None
        fields = self.mapping_of(node, what)
        for key in fields:
            if key not in allowed:
                self.error(self._key_node(node, key), f"unknown key {key!r} in {what}")
        for key in sorted(set(required) - fields.keys()):
            self.error(node, f"{what} is missing {key!r}")
        return {k: v for k, v in fields.items() if k in allowed}

    def mapping_of(self, node: yaml.Node | None, what: str) -> dict[str, yaml.Node]:
        """Any string keys; duplicates are errors (YAML would silently keep the last one)."""
        if node is None or self._is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping")
            return {}
        fields: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self._constructor.construct_object(key_node)
            if not isinstance(key, str):
                self.error(key_node, f"keys in {what} must be strings")
            elif key in fields:
                self.error(key_node, f"duplicate key {key!r} in {what}")
            else:
                fields[key] = value_node
        return fields

    def sequence(self, node: yaml.Node | None, what: str) -> Iterator[yaml.Node]:
        if node is None or self._is_null(node):
            return iter(())
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"{what} must be a list")
            return iter(())
        return iter(node.value)

    def scalar(self, node: yaml.Node, what: str) -> Scalar | None:
        value = self._constructor.construct_object(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, str | int | float | bool):
            return value
        self.error(node, f"{what} must be a string, number or boolean")
        return None

    def string(self, node: yaml.Node, what: str) -> str | None:
        value = self._constructor.construct_object(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, str):
            return value
        self.error(node, f"{what} must be a string")
        return None

    def optional_string(self, fields: dict[str, yaml.Node], key: str) -> str | None:
        return self.string(fields[key], key) if key in fields else None

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        value = self._constructor.construct_object(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, bool):
            return value
        self.error(node, f"{what} must be true or false")
        return None

    def number(self, node: yaml.Node, what: str) -> float | None:
        value = self._constructor.construct_object(node) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self.error(node, f"{what} must be a number")
        return None

    def strings(self, node: yaml.Node, what: str) -> list[str] | None:
        """A list of strings; a single string is accepted as a list of one."""
        if isinstance(node, yaml.ScalarNode):
            one = self.string(node, what)
            return None if one is None else [one]
        items = [self.string(item, what) for item in self.sequence(node, what)]
        return None if None in items else [i for i in items if i is not None]

    def mask_spec(self, node: yaml.Node) -> str | MaskRef | None:
        """A mask name (resolved later, when every file is read) or an inline `{sql: ...}`."""
        if isinstance(node, yaml.ScalarNode):
            return self.string(node, "mask")
        fields = self.mapping(node, "mask", {"sql"}, required={"sql"})
        if fields is None or "sql" not in fields:
            return None
        sql = self.string(fields["sql"], "sql")
        if sql is None or not sql.strip():
            if sql is not None:
                self.error(fields["sql"], "sql must be a non-empty SQL expression")
            return None
        return MaskRef(sql=sql)

    def when(self, node: yaml.Node) -> When:
        fields = self.mapping(node, "when", {"user", "groups", "attributes", "source"})
        if fields is None:
            # An unreadable condition must not become "everyone": the file is rejected anyway.
            return When(users=frozenset())
        users = self.strings(fields["user"], "user") if "user" in fields else None
        groups = self.strings(fields["groups"], "groups") if "groups" in fields else None
        source = self.optional_string(fields, "source")
        if source is not None:
            try:
                re.compile(source)
            except re.error as exc:
                self.error(fields["source"], f"source is not a valid regular expression: {exc}")
        tests = [
            (name, self._attribute_test(test_node, name))
            for name, test_node in self.mapping_of(fields.get("attributes"), "attributes").items()
        ]
        return When(
            users=None if users is None else frozenset(users),
            groups=None if groups is None else frozenset(groups),
            attributes=tuple(tests),
            source=source,
        )

    def attribute_values(self, node: yaml.Node) -> dict[str, Scalar | list[Scalar]]:
        values: dict[str, Scalar | list[Scalar]] = {}
        for name, value_node in self.mapping_of(node, "attributes").items():
            if isinstance(value_node, yaml.SequenceNode):
                items = [self.scalar(item, f"attribute {name!r}") for item in value_node.value]
                values[name] = [i for i in items if i is not None]
            elif (value := self.scalar(value_node, f"attribute {name!r}")) is not None:
                values[name] = value
        return values

    def _attribute_test(self, node: yaml.Node, name: str) -> AttributeTest:
        if isinstance(node, yaml.ScalarNode):
            return AttributeTest(equals=self.scalar(node, f"attribute {name!r}"))
        fields = self.mapping(node, f"attribute test {name!r}", {"in", "gte", "lte"})
        if not fields:
            if fields is not None:
                self.error(node, f"attribute test {name!r} needs one of in, gte, lte")
            return AttributeTest(any_of=())  # matches nobody; the error rejects the file anyway
        any_of = None
        if "in" in fields:
            items = [self.scalar(item, "in") for item in self.sequence(fields["in"], "in")]
            any_of = tuple(i for i in items if i is not None)
        return AttributeTest(
            any_of=any_of,
            gte=self.number(fields["gte"], "gte") if "gte" in fields else None,
            lte=self.number(fields["lte"], "lte") if "lte" in fields else None,
        )

    def _is_null(self, node: yaml.Node) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"

    @staticmethod
    def _key_node(node: yaml.MappingNode, key: str) -> yaml.Node:
        return next((k for k, _ in node.value if getattr(k, "value", None) == key), node)
