"""`gateway policy check`: everything that can be known about policy files before a query uses them.

Beyond what loading validates (YAML, schema, references to masks), this builds every secure view the files
can produce, for every table each entry covers in the backend catalog: filters and mask templates must parse
in the backend dialect, every column they name must exist, masked columns must exist, and entries that tie
for the same table are reported (a tie denies the table). Pure: the catalog arrives as an argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.policy.decide import ColumnMask, TableDecision, equally_specific
from gateway.policy.model import PolicySet, RowFilter, TablePolicy
from gateway.sql.rewrite import Catalog, check_view


@dataclass(frozen=True, order=True)
class Finding:
    location: str
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.message}"


def check_policies(policy: PolicySet, catalog: Catalog | None, *, dialects: Mapping[str, str]) -> list[Finding]:
    """Problems in `policy` against `catalog` (catalog -> schema -> table -> columns); `dialects` gives each
    catalog's backend dialect. Without a catalog only catalog-independent checks run."""
    findings: list[Finding] = _unkeyed_digests(policy)
    if catalog is None:
        return findings

    covered: dict[str, list[str]] = {}
    for name in _catalog_tables(catalog):
        entries = equally_specific(policy, name)
        if len(entries) > 1:
            where = ", ".join(f"{e.name} ({e.location})" for e in entries)
            findings.append(Finding(entries[0].location, f"{name} matches equally specific entries {where}; "
                                                         f"it is denied until one is more specific", "warning"))
            continue
        for entry in entries:
            covered.setdefault(entry.name, []).append(name)
    for entry in policy.tables:
        tables = covered.get(entry.name, [])
        if not tables and not entry.name.startswith("gateway."):
            findings.append(Finding(entry.location, f"{entry.name} matches no table in the backend catalog",
                                    "warning"))
        for table in tables:
            dialect = dialects.get(table.split(".", 1)[0], "duckdb")
            findings.extend(_check_entry(policy, entry, table, catalog, dialect))
    return sorted(set(findings))


_UNKEYED_DIGEST = re.compile(r"\b(md5|sha1|sha2|sha256|sha512|hash|xxhash\w*|murmur\w*)\s*\(", re.IGNORECASE)


def _unkeyed_digests(policy: PolicySet) -> list[Finding]:
    """`{sql}` masks that hash without the key: anyone can hash candidate values and join (dictionary)."""
    masks = [(rule.mask, rule.location) for entry in policy.tables for rule in entry.columns.values()]
    masks += [(m.mask, m.location) for m in policy.classification_masks.values()]
    return [Finding(location, f"mask {mask.sql!r} uses an unkeyed digest, which a dictionary reverses; use "
                              "gateway_hash(...) or the hash mask (keyed with the deployment's mask key)", "warning")
            for mask, location in masks if mask is not None and mask.sql and _UNKEYED_DIGEST.search(mask.sql)]


def _catalog_tables(catalog: Catalog) -> list[str]:
    return [f"{c}.{s}.{t}" for c, schemas in catalog.items() for s, tables in schemas.items() for t in tables
            if s != "information_schema" and c != "system"]


def _check_entry(policy: PolicySet, entry: TablePolicy, table: str, catalog: Catalog,
                 dialect: str) -> list[Finding]:
    """Build the view of `table` for each row filter of `entry`, with every mask the entry can apply."""
    findings = []
    catalog_name, schema, name = table.split(".")
    columns = catalog.get(catalog_name, {}).get(schema, {}).get(name, {})
    lower = {c.lower() for c in columns}
    masks = []
    for column, rule in entry.columns.items():
        if column.lower() not in lower:
            findings.append(Finding(rule.location, f"column {column} does not exist in {table}"))
            continue
        mask = rule.mask
        if mask is None and rule.classification is not None and rule.classification in policy.classification_masks:
            mask = policy.classification_masks[rule.classification].mask
        if mask is not None:
            masks.append(ColumnMask(column=column.lower(), mask=mask, origin=rule.location))
    filters: list[RowFilter | None] = [*entry.row_filters] if entry.row_filters else [None]
    for index, row_filter in enumerate(filters, start=1):
        decision = TableDecision(table=table, allowed=True, reason="policy check", row_filter=row_filter,
                                 row_filter_index=index if row_filter else None, no_rows=False,
                                 masks=tuple(m for m in masks if m.column in lower))
        try:
            check_view(decision, catalog, dialect)
        except GatewayError as error:
            location = row_filter.location if row_filter is not None else entry.location
            findings.append(Finding(location, f"{table}: {error.message.removeprefix('Access Denied: ')}"))
    return findings
