"""Who is asking: credentials from a request -> an immutable `Identity`.

    model.py          Identity (who), Credentials (what they presented; secrets masked in reprs)
    authenticator.py  Authenticator: dev | jwt | api_keys -> the authenticated principal
    jwt_verify.py     bearer JWT -> verified claims (PyJWT; algorithms, iss, aud, exp/iat/nbf, kid, size)
    jwks.py           signing keys: JWKS URL with a TTL cache and rate-limited refresh, or a JWKS file
    claims.py         claims -> Identity (identity.jwt.claims; nested paths)
    api_keys.py       service-account keys: create, rotate with grace, revoke, list, verify (scrypt hashes)
    key_stores.py     API key records in a YAML file or PostgreSQL
    failures.py       per-address limit on failed attempts
    setup.py          identity.* settings -> Authenticator

Whether an authenticated principal may act as another session user (impersonation) is a policy decision:
`policy/decide.py::decide_impersonation`, applied by the pipeline.
"""

from gateway.identity.authenticator import Authenticator
from gateway.identity.model import AttributeValue, Credentials, Identity

__all__ = ["AttributeValue", "Authenticator", "Credentials", "Identity"]
