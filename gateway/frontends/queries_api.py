"""Admin JSON endpoints of workload management.

    GET    /api/queries          running and queued queries per resource group (this replica's queries, and with
                                 `workload.redis` every replica's, with cluster-wide counts per group)
    DELETE /api/queries/{id}     kill a query (ADMINISTRATIVELY_KILLED); optional `?message=...` for its user

Callers authenticate as on the Trino endpoint. Everyone sees the per-group counts; the query list shows a
caller's own queries, and every query (with its SQL) to members of `workload.admin_groups`. A caller may
kill their own queries; admins any query (the same rule as `CALL system.runtime.kill_query`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import GatewayError, NotFound, PermissionDenied
from gateway.frontends.api_common import authenticated, json_error
from gateway.pipeline import Pipeline


class QueriesApi:
    def __init__(self, *, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def routes(self) -> list[Route]:
        return [Route("/api/queries", self.list_queries, methods=["GET"]),
                Route("/api/queries/{query_id}", self.kill_query, methods=["DELETE"])]

    async def list_queries(self, request: Request) -> Response:
        identity = await authenticated(request, self.pipeline)
        if isinstance(identity, Response):
            return identity
        return JSONResponse(await self.pipeline.workload.snapshot(identity))

    async def kill_query(self, request: Request) -> Response:
        identity = await authenticated(request, self.pipeline)
        if isinstance(identity, Response):
            return identity
        query_id = request.path_params["query_id"]
        try:
            await self.pipeline.workload.kill(query_id, request.query_params.get("message"), identity)
        except GatewayError as error:
            status = 404 if isinstance(error, NotFound) else 403 if isinstance(error, PermissionDenied) else 400
            return json_error(status, error.error_name, error.message)
        return JSONResponse({"query_id": query_id, "killed": True})
