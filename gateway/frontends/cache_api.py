"""Admin JSON endpoint of the result cache.

    POST /api/cache/purge            drop every cached result (all replicas, with Redis)
    POST /api/cache/purge?table=T    drop the results that read table T (catalog.schema.table)

Callers authenticate as on the Trino endpoint and must belong to one of `cache.admin_groups`. Answers
`{"purged": N}`: entries dropped here and in the shared tier (other replicas drop theirs on the broadcast).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.cache.store import ResultCache
from gateway.errors import PermissionDenied
from gateway.frontends.api_common import authenticated, json_error
from gateway.pipeline import Pipeline


class CacheApi:
    def __init__(self, *, pipeline: Pipeline, cache: ResultCache | None) -> None:
        self.pipeline = pipeline
        self.cache = cache

    def routes(self) -> list[Route]:
        return [Route("/api/cache/purge", self.purge, methods=["POST"])]

    async def purge(self, request: Request) -> Response:
        identity = await authenticated(request, self.pipeline)
        if isinstance(identity, Response):
            return identity
        try:
            self.pipeline.access.require_cache_admin(identity)
        except PermissionDenied as denied:
            return json_error(403, "PERMISSION_DENIED", denied.message)
        if self.cache is None:
            return JSONResponse({"purged": 0, "cache": "disabled"})
        table = request.query_params.get("table")
        if table is not None and table.count(".") != 2:
            return json_error(400, "GENERIC_USER_ERROR", "table must be catalog.schema.table")
        return JSONResponse({"purged": await self.cache.purge(table.lower() if table else None)})

