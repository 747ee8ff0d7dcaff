"""RFC 9457 problem+json answers, the management API's error shape. Kept apart from the management
application so the parts of the server that answer in this shape before it (the body timeout, the
OIDC login) do not import FastAPI, which a worker loads only on its first /api/v1 request."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, code: str, headers: dict[str, str] | None = None) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "code": code}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)
