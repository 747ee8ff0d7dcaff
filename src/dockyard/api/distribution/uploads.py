"""Blob uploads: POST (start, monolithic, mount), PATCH (chunk), PUT (finish), GET (status), DELETE."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TypeVar

import anyio
import anyio.from_thread
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from dockyard.api.auth import authorize
from dockyard.api.distribution.common import body_batches, decimal, pump, require, services
from dockyard.services.auth.scopes import Scope
from dockyard.services.errors import DigestInvalid, RangeInvalid, RegistryError
from dockyard.wiring import Services

T = TypeVar("T")
_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?")


def _upload_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Docker-Upload-UUID": upload_id,
        "Range": f"0-{max(size - 1, 0)}",
        "Content-Length": "0",
    }


def _blob_created(name: str, digest: str) -> Response:
    return Response(
        status_code=201,
        headers={
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        },
    )


def _chunk_start(request: Request) -> int | None:
    """Start offset from Content-Range, checked against Content-Length; None when absent."""
    header = request.headers.get("content-range")
    if not header:
        return None
    m = _CONTENT_RANGE_RE.fullmatch(header.strip())
    if not m:
        raise RangeInvalid(f"malformed Content-Range {header[:100]!r}", 0)
    start, end = decimal(m.group(1)), decimal(m.group(2))  # bounded: never int() of 5,000 digits
    assert start is not None and end is not None
    length = decimal(request.headers.get("content-length") or "")
    if end < start or (length is not None and length != end - start + 1):
        raise RangeInvalid(f"Content-Range {header[:100]!r} does not match Content-Length {length}", start)
    return start


async def _stream(
    svc: Services, request: Request, name: str, upload_id: str, start: int | None, digest: str | None = None
) -> int:
    size = await run_in_threadpool(svc.uploads.status, name, upload_id)
    if start is not None and start != size:
        raise RangeInvalid(f"chunk starts at {start}, upload has {size} bytes", size)
    return await pump(
        request,
        lambda batch, offset: svc.uploads.append(name, upload_id, [batch], offset, digest),
        size,
        svc.store.append_bytes,
    )


async def _with_body(request: Request, consume: Callable[[Iterator[bytes]], T]) -> T:
    """`consume(batches)` in a worker thread, `batches` being the request body as it arrives: the
    next batch is received on the event loop while the thread writes the previous one (as `pump`
    does), so a service that takes an iterable of bytes can be handed a request body."""
    send, receive = anyio.create_memory_object_stream[bytes | Exception](1)

    async def produce() -> None:
        async with send:
            try:
                async for batch in body_batches(request, services(request).store.append_bytes):
                    await send.send(batch)
            except Exception as exc:  # the client went away: raised in the thread, where the upload is
                await send.send(exc)

    def batches() -> Iterator[bytes]:
        while True:
            try:
                item = anyio.from_thread.run(receive.receive)
            except anyio.EndOfStream:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        try:
            result = await run_in_threadpool(consume, batches())
        except Exception as exc:  # raised below, outside the task group, which would wrap it in a group
            error = exc
        finally:
            tg.cancel_scope.cancel()  # refused before the end of the body: stop receiving it
    if error is not None:
        raise error
    return result


async def _may_pull(request: Request, svc: Services, name: str) -> bool:
    try:  # the caller was authenticated for the target repository: this only checks the scope
        await authorize(request, svc, Scope("repository", name, frozenset({"pull"})))
        return True
    except RegistryError:
        return False


async def start_upload(request: Request) -> Response:
    name = request.path_params["name"]
    identity = await require(request, name, "pull", "push")
    svc = services(request)
    params = request.query_params
    mount, source = params.get("mount"), params.get("from")
    if mount and source and await _may_pull(request, svc, source):
        size = await run_in_threadpool(svc.blobs.mount, name, mount, source)
        if size is not None:
            return _blob_created(name, mount)
    digest = params.get("digest")
    if digest is not None:  # monolithic upload: the whole blob is this request's body
        await _with_body(request, lambda batches: svc.uploads.monolithic(name, digest, batches, identity.subject))
        return _blob_created(name, digest)
    upload_id = await run_in_threadpool(svc.uploads.start, name, identity.subject)
    return Response(status_code=202, headers=_upload_headers(name, upload_id, 0))


async def patch_upload(request: Request) -> Response:
    name, upload_id = request.path_params["name"], request.path_params["uuid"]
    await require(request, name, "pull", "push")
    svc = services(request)
    size = await _stream(svc, request, name, upload_id, _chunk_start(request))
    return Response(status_code=202, headers=_upload_headers(name, upload_id, size))


async def finish_upload(request: Request) -> Response:
    name, upload_id = request.path_params["name"], request.path_params["uuid"]
    await require(request, name, "pull", "push")
    svc = services(request)
    digest = request.query_params.get("digest")
    if not digest:
        raise DigestInvalid("digest parameter is required to complete an upload")
    await _stream(svc, request, name, upload_id, _chunk_start(request), digest)
    await run_in_threadpool(svc.uploads.finish, name, upload_id, digest)
    return _blob_created(name, digest)


async def upload_status(request: Request) -> Response:
    name, upload_id = request.path_params["name"], request.path_params["uuid"]
    # Reading an upload's progress is a read, as in the reference registry: clients retry after a
    # 416 with the pull-scoped token they already hold.
    await require(request, name, "pull")
    size = await run_in_threadpool(services(request).uploads.status, name, upload_id)
    return Response(status_code=204, headers=_upload_headers(name, upload_id, size))


async def cancel_upload(request: Request) -> Response:
    name, upload_id = request.path_params["name"], request.path_params["uuid"]
    await require(request, name, "pull", "push")
    await run_in_threadpool(services(request).uploads.cancel, name, upload_id)
    return Response(status_code=204, headers={"Content-Length": "0"})
