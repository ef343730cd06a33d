"""JSON shapes of Trino's per-query and per-node resources, as clients parse them.

    error_json        the `error` object of a FAILED response (QueryError)
    failure_info      ExecutionFailureInfo: `failureInfo` of an error and of QueryInfo
    query_info_json   GET /v1/query/{id} (QueryInfo: queryId, state, query, queryStats, failureInfo, ...)
    status_json       GET /v1/status (NodeStatus)
    node_json         GET /v1/node (the coordinator's view of its nodes)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.errors import GatewayError, InternalError
from gateway.node import NodeInfo, duration_text
from gateway.query_history import QuerySummary

INTERNAL_MESSAGE = "Internal error in the gateway"


def client_message(error: GatewayError) -> str:
    """What a client is told: a gateway bug's own text is logged, never sent."""
    return INTERNAL_MESSAGE if isinstance(error, InternalError) else error.message


def _location(error: GatewayError) -> dict[str, int] | None:
    if error.line is None:
        return None
    return {"lineNumber": error.line, "columnNumber": error.column or 1}


def failure_info(error: GatewayError) -> dict[str, Any]:
    info: dict[str, Any] = {"type": "io.trino.spi.TrinoException",
                            "message": client_message(error), "suppressed": [], "stack": [],
                            "errorCode": _error_code(error)}
    location = _location(error)
    if location is not None:
        info["errorLocation"] = location
    return info


def _error_code(error: GatewayError) -> dict[str, Any]:
    return {"code": error.error.code, "name": error.error.name, "type": error.error.type}


def error_json(error: GatewayError) -> dict[str, Any]:
    body: dict[str, Any] = {"message": client_message(error), "errorCode": error.error.code,
                            "errorName": error.error.name, "errorType": error.error.type,
                            "failureInfo": failure_info(error)}
    location = _location(error)
    if location is not None:
        body["errorLocation"] = location
    return body


def _time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value is not None else None


def query_info_json(summary: QuerySummary, *, self_uri: str) -> dict[str, Any]:
    seconds = summary.elapsed_ms / 1000
    queued = summary.queued_ms / 1000
    info: dict[str, Any] = {
        "queryId": summary.query_id,
        "session": {"queryId": summary.query_id, "user": summary.user, "principal": summary.principal,
                    "source": summary.source, "catalog": summary.catalog, "schema": summary.schema},
        "state": summary.state,
        "self": self_uri,
        "query": summary.sql,
        "queryType": "SELECT",
        "scheduled": summary.state != "QUEUED",
        "resourceGroupId": [summary.resource_group] if summary.resource_group else None,
        "queryStats": {
            "createTime": _time(summary.created),
            "endTime": _time(summary.ended),
            "queuedTime": duration_text(queued),
            "elapsedTime": duration_text(seconds),
            "executionTime": duration_text(max(0.0, seconds - queued)),
            "totalCpuTime": duration_text(summary.cpu_ms / 1000),
            "processedInputPositions": summary.rows,
            "processedInputDataSize": f"{summary.bytes}B",
            "outputPositions": summary.rows,
            "peakUserMemoryReservation": "0B",
        },
        "finalQueryInfo": summary.ended is not None,
    }
    if summary.error is not None:
        info["failureInfo"] = failure_info(summary.error)
        info["errorType"] = summary.error.error.type
        info["errorCode"] = _error_code(summary.error)
    return info


def status_json(node: NodeInfo, *, draining: bool) -> dict[str, Any]:
    return {"nodeId": node.node_id, "nodeVersion": {"version": node.version}, "environment": node.environment,
            "coordinator": True, "uptime": duration_text(node.uptime_seconds), "externalAddress": node.uri,
            "internalAddress": node.uri, "state": "SHUTTING_DOWN" if draining else "ACTIVE"}


def node_json(node: NodeInfo) -> list[dict[str, Any]]:
    return [{"uri": node.uri, "nodeId": node.node_id, "nodeVersion": node.version, "coordinator": True,
             "recentRequests": 0.0, "recentFailures": 0.0, "recentSuccesses": 0.0, "recentFailureRatio": 0.0,
             "age": duration_text(node.uptime_seconds)}]
