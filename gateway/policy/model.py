"""The policy model: what `policies/*.yaml` says, as immutable typed values.

Built by `load.py`, read by `decide.py` and the SQL rewriter. Nothing here does I/O or knows SQL dialects:
filters and mask templates stay as the admin wrote them and are parsed where they are used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

Scalar = str | int | float | bool

# Table-level sensitivity tags, in increasing order (DESIGN: public < internal < confidential < restricted).
TABLE_CLASSIFICATIONS: tuple[str, ...] = ("public", "internal", "confidential", "restricted")

BUILTIN_MASKS: frozenset[str] = frozenset({"redact", "null", "hash", "last4", "first4", "email_domain", "year_only"})


@dataclass(frozen=True, slots=True)
class AttributeTest:
    """One `attributes:` entry of a `when`: every test that is set must hold.

    `equals` and `any_of` compare with ==; against a list-valued attribute (such as `nations`) they hold when
    any element matches. `gte`/`lte` compare numbers only; a non-numeric value never matches.
    """

    equals: Scalar | None = None
    any_of: tuple[Scalar, ...] | None = None
    gte: float | None = None
    lte: float | None = None


@dataclass(frozen=True, slots=True)
class When:
    """A condition on the caller. All parts that are set must hold; an empty `When` matches everyone.

    `users`: exact user names (any of). `groups`: any of. `source`: a regular expression that must match the
    whole client source (X-Trino-Source), as Trino's resource-group selectors do; a plain name is a regex that
    matches itself. A missing attribute or source never matches.
    """

    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    attributes: tuple[tuple[str, AttributeTest], ...] = ()  # a tuple, not a dict, so rules stay hashable
    source: str | None = None


EVERYONE = When()


@dataclass(frozen=True, slots=True)
class MaskRef:
    """A mask as written: a built-in name (`last4`) or a SQL template with `{column}` (`{sql: ...}`).

    Named masks from the `masks:` section are resolved at load time, so a `MaskRef` is always one of the two.
    """

    builtin: str | None = None
    sql: str | None = None

    def describe(self) -> str:
        return self.builtin if self.builtin is not None else "sql"


@dataclass(frozen=True, slots=True)
class AccessRule:
    when: When
    allow: bool
    location: str  # "file:line", for explain output and audit


@dataclass(frozen=True, slots=True)
class RowFilter:
    when: When
    filter: str  # SQL boolean expression over the table's raw columns; `:name` binds identity attributes
    location: str


@dataclass(frozen=True, slots=True)
class ColumnPolicy:
    name: str
    classification: str | None
    mask: MaskRef | None
    unmask_when: When | None  # None: the mask always applies
    location: str


@dataclass(frozen=True, slots=True)
class ClassificationMask:
    mask: MaskRef
    unmask_when: When | None
    location: str


@dataclass(frozen=True, slots=True)
class Approvers:
    """Who may approve just-in-time access requests for a table (`approvers:` on a table entry, or per table
    classification in `classification_approvers:`), and the longest grant they may approve."""

    users: frozenset[str]
    groups: frozenset[str]
    max_duration_seconds: int
    location: str


DEFAULT_MAX_GRANT_SECONDS = 8 * 3600  # an `approvers:` entry without max_duration


@dataclass(frozen=True, slots=True)
class TableGrant:
    """An approved, unexpired just-in-time grant of one identity, as decisions see it (data, no I/O).

    `table` is catalog.schema.table; `columns` the lower-cased column names it unmasks (empty: none, the
    grant gives read access under the policy's masks and row filters). `expires_at` is seconds since the epoch.
    """

    id: str
    table: str
    columns: frozenset[str]
    expires_at: float


@dataclass(frozen=True, slots=True)
class TablePolicy:
    """One `tables:` entry. `name` is a lower-cased pattern of 2 or 3 dot-separated parts; `*` is a wildcard
    within one part. A 2-part name (`schema.table`) applies in every catalog."""

    name: str
    owner: str | None
    cost_center: str | None
    classification: str | None
    access: tuple[AccessRule, ...]
    row_filters: tuple[RowFilter, ...] | None  # None: the key was absent -> all rows
    columns: Mapping[str, ColumnPolicy]
    location: str
    approvers: Approvers | None = None  # None: its classification's approvers, if any


@dataclass(frozen=True, slots=True)
class ImpersonationRule:
    """One `impersonation:` entry: a principal matching `when` may (or, with allow false, may not) act as any
    session user whose whole name matches the regular expression `new_user` (Trino's file-based rules)."""

    when: When
    new_user: str
    allow: bool
    location: str


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Every policy file merged. `version` is the sha256 of the files' names and contents."""

    tables: tuple[TablePolicy, ...]
    masks: Mapping[str, MaskRef]
    classification_masks: Mapping[str, ClassificationMask]
    version: str
    impersonation: tuple[ImpersonationRule, ...] = ()  # first rule matching principal and user decides
    mask_key_version: int = 1  # which derived key keys the hash masks (raising it rotates them)
    # table classification -> who approves access requests for its tables
    classification_approvers: Mapping[str, Approvers] = field(default_factory=lambda: MappingProxyType({}))
