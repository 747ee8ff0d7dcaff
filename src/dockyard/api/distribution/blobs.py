"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>, with single byte ranges."""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from dockyard.api.distribution.common import decimal, require, services
from dockyard.services.errors import RangeNotSatisfiable


class _WholeFile(FileResponse):
    """FileResponse minus its own Range handling: ranges are decided (and errors shaped) above, so
    this only ever sends the whole file, zero-copy when the server supports ASGI pathsend."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"range", b"if-range")]
        await super().__call__({**scope, "headers": headers}, receive, send)


_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) for a single-range `Range` header; None = whole blob.

    A syntactically invalid header is ignored (RFC 9110 §14.2); a valid but unsatisfiable one
    raises RangeNotSatisfiable. Positions are read saturated (`decimal`): a position of a
    thousand digits is simply past the end.
    """
    if not header:
        return None
    m = _RANGE_RE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = decimal(m.group(1)), decimal(m.group(2))
    if first is None:  # suffix range: the last N bytes
        assert last is not None
        if last == 0:
            raise RangeNotSatisfiable("empty suffix range", size)
        return max(size - last, 0), size
    if first >= size or (last is not None and last < first):
        raise RangeNotSatisfiable(f"range {header[:100]} not satisfiable for a blob of {size} bytes", size)
    end = size if last is None else min(last + 1, size)
    return first, end


async def get_blob(request: Request) -> Response:
    name, digest = request.path_params["name"], request.path_params["digest"]
    await require(request, name, "pull")
    svc = services(request)
    info = await run_in_threadpool(svc.blobs.info, name, digest)
    headers = {
        "Docker-Content-Digest": info.digest,
        "Accept-Ranges": "bytes",
        "ETag": f'"{info.digest}"',
        "Cache-Control": "max-age=31536000",
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(info.size)
        return Response(status_code=200, headers=headers, media_type="application/octet-stream")
    byte_range = parse_range(request.headers.get("range"), info.size)  # a bad range is ours to refuse (416)
    if info.redirect_url:
        # The client repeats its Range header to the storage URL, which answers 206 itself.
        return RedirectResponse(info.redirect_url, status_code=307, headers=headers)
    if byte_range is None:
        if info.local_path:
            # Zero-copy: the server sends the file itself (ASGI pathsend / sendfile).
            return _WholeFile(info.local_path, media_type="application/octet-stream", headers=headers, stat_result=None)
        headers["Content-Length"] = str(info.size)
        return StreamingResponse(
            await run_in_threadpool(svc.blobs.read, digest), media_type="application/octet-stream", headers=headers
        )
    start, end = byte_range
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(
        await run_in_threadpool(svc.blobs.read, digest, start, end),
        status_code=206,
        media_type="application/octet-stream",
        headers=headers,
    )


async def delete_blob(request: Request) -> Response:
    name, digest = request.path_params["name"], request.path_params["digest"]
    await require(request, name, "delete")
    await run_in_threadpool(services(request).blobs.delete, name, digest)
    return Response(status_code=202, headers={"Content-Length": "0"})
