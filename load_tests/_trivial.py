"""The reference the fast-path benchmark measures the gateway against: a starlette app on the same uvicorn
stack (uvloop, the gateway's connection guard) that answers every `POST /v1/statement` with a finished
one-row Trino result, doing no work at all. What the gateway adds is the difference.

    python -m load_tests._trivial PORT
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.connection_guard import ConnectionGuard, guarded_protocol
from gateway.frontends.settings import ServerSettings
from gateway.metrics import Metrics

_ANSWER = {
    "id": "20261202_000000_00000_trivl", "infoUri": "http://127.0.0.1/ui", "columns": [
        {"name": "_col0", "type": "integer",
         "typeSignature": {"rawType": "integer", "arguments": []}}],
    "data": [[1]], "stats": {"state": "FINISHED", "queued": False, "scheduled": True, "nodes": 1, "totalSplits": 0,
                             "queuedSplits": 0, "runningSplits": 0, "completedSplits": 0, "cpuTimeMillis": 0,
                             "wallTimeMillis": 0, "queuedTimeMillis": 0, "elapsedTimeMillis": 0,
                             "processedRows": 0, "processedBytes": 0, "peakMemoryBytes": 0, "spilledBytes": 0},
    "warnings": [],
}


async def statement(request: Request) -> Response:
    await request.body()
    return JSONResponse(_ANSWER)


async def info(request: Request) -> Response:
    return JSONResponse({"nodeVersion": {"version": "trivial"}, "coordinator": True, "starting": False})


def main() -> None:
    port = int(sys.argv[1])
    settings = ServerSettings()
    guard = ConnectionGuard(header_timeout=settings.header_timeout_seconds, body_timeout=settings.body_timeout_seconds,
                            max_connections=settings.max_connections, max_header_bytes=settings.max_header_bytes,
                            metrics=Metrics())
    app = Starlette(routes=[Route("/v1/statement", statement, methods=["POST"]),
                            Route("/v1/info", info, methods=["GET"]),
                            Route("/health/ready", info, methods=["GET"])])
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http=guarded_protocol(guard),
                log_level="warning", access_log=False,
                timeout_keep_alive=max(1, round(settings.keep_alive_timeout_seconds)))


if __name__ == "__main__":
    main()
