"""The one response envelope of spec §1, encoded with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

JSON = "application/json"


def success_body(entity: Any) -> bytes:
    return orjson.dumps({"entity": entity, "warnings": [], "errors": [], "success": True})


def failure_body(code: int, message: str) -> bytes:
    return orjson.dumps(
        {
            "warnings": [],
            "errors": [{"status": False, "code": code, "message": message}],
            "success": False,
        }
    )


def success(entity: Any, status_code: int = 200) -> Response:
    return Response(success_body(entity), status_code=status_code, media_type=JSON)


def failure(
    code: int, message: str, status_code: int, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        failure_body(code, message), status_code=status_code, media_type=JSON, headers=headers
    )
