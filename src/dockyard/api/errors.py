"""Domain errors → the distribution spec's JSON error body and HTTP status, mapped once here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from dockyard.services import errors as e

STATUS: dict[type[e.RegistryError], int] = {
    e.BlobUnknown: 404,
    e.BlobUploadUnknown: 404,
    e.RangeInvalid: 416,
    e.BlobUploadInvalid: 400,
    e.DigestInvalid: 400,
    e.ManifestBlobUnknown: 400,
    e.ManifestInvalid: 400,
    e.ManifestUnknown: 404,
    e.NameInvalid: 400,
    e.NameUnknown: 404,
    e.TooLarge: 413,
    e.SizeInvalid: 400,
    e.TagInvalid: 400,
    e.Unauthorized: 401,
    e.Denied: 403,
    e.Unsupported: 415,
    e.PaginationInvalid: 400,
    e.RangeNotSatisfiable: 416,
    e.TooManyRequests: 429,
    e.NotFound: 404,
    e.Conflict: 409,
    e.InvalidInput: 400,
}


def status_for(exc: e.RegistryError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message, "detail": detail if detail is not None else {}}]}


def error_response(exc: e.RegistryError, headers: dict[str, str] | None = None) -> Response:
    # TAG_INVALID is not a spec code: clients know it as MANIFEST_INVALID.
    code = "MANIFEST_INVALID" if isinstance(exc, e.TagInvalid) else exc.code
    status = status_for(exc)
    hdrs = dict(headers or {})
    if isinstance(exc, e.RangeInvalid):
        hdrs["Range"] = f"0-{max(exc.current_size - 1, 0)}"
    if isinstance(exc, e.RangeNotSatisfiable):
        hdrs["Content-Range"] = f"bytes */{exc.size}"
    if isinstance(exc, e.TooManyRequests):
        hdrs["Retry-After"] = str(exc.retry_after)
    return JSONResponse(error_body(code, exc.message, exc.detail), status_code=status, headers=hdrs)


async def registry_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.RegistryError)
    headers = getattr(exc, "headers", None)
    delay = getattr(exc, "delay", 0.0)
    if delay:  # slow down repeated failed logins without holding a worker thread
        await asyncio.sleep(delay)
    return error_response(exc, headers)


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves at this request's path, for the `Allow` header of a 405
    (RFC 9110): one path is often several routes (GET, PUT and DELETE of a manifest)."""
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)
