"""fakesnow's Snowflake server on a given port, recording what clients send with each statement.

Run by tests/test_snowflake_backend.py with .venv-fakesnow's Python (never imports the gateway):

    .venv-fakesnow/bin/python tests/fakesnow/serve.py PORT RECORD_FILE

fakesnow ignores the per-statement parameters the connector sends (QUERY_TAG, STATEMENT_TIMEOUT_IN_SECONDS)
and has no QUERY_HISTORY to read them back from, so every query request's `sqlText` and `parameters` are
appended to RECORD_FILE (one JSON object a line) as the server received them: the tests check the wire.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import uvicorn

QUERY_PATH = "/queries/v1/query-request"


class Recorder:
    def __init__(self, app: Any, record: Path) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != QUERY_PATH:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        text = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
        request = json.loads(text)
        with self.record.open("a") as out:
            out.write(json.dumps({"sqlText": request.get("sqlText"), "parameters": request.get("parameters")}) + "\n")
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def main() -> None:
    import importlib

    fakesnow_server = importlib.import_module("fakesnow.server")  # `fakesnow.server` is also a function
    port, record = int(sys.argv[1]), Path(sys.argv[2])
    record.touch()
    uvicorn.run(Recorder(fakesnow_server.app, record), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
