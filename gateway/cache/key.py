"""What makes two queries the same for the result cache.

The key is the SQL the gateway sends the backend — policy filters and masks already in it, identity values
bound as literals — plus the backend and the policy version. So two users share an entry exactly when the
gateway would send the backend the same statement for them, and a policy change never serves an entry made
under the old version. A plan that relies on a just-in-time grant adds the grant ids, so its entry is never
shared with (or kept for) a plan that does not. Whether a statement may be cached at all is a property of the statement:
`gateway.sql.determinism`. Pure functions.
"""

from __future__ import annotations

import hashlib


def cache_key(*, backend_sql: str, target: str, policy_version: str, properties: tuple[tuple[str, str], ...],
              grants: tuple[str, ...] = ()) -> str:
    """A stable key: sha256 over everything that decides the result."""
    digest = hashlib.sha256()
    for part in (target, policy_version, backend_sql, repr(properties), *((repr(grants),) if grants else ())):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()
