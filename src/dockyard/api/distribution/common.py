"""Request helpers shared by the /v2/ endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from dockyard.api.auth import authorize
from dockyard.oci.errors import OCIFormatError
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.scopes import Scope
from dockyard.services.errors import PaginationInvalid, TooLarge
from dockyard.services.registry.validation import check_name
from dockyard.wiring import Services

# Request bodies are handed to the (synchronous) storage layer in batches of the size the store
# takes best (BlobStore.append_bytes: 4 MiB on disk, a whole 8 MiB part on S3), so a thread hop is
# paid per batch rather than per network read, and memory per request is bounded.
# Every number a request carries is read through `decimal`: at most this, whatever its digits say.
MAX_NUMBER = 2**63 - 1
# Largest page of tags or repositories one request gets; a larger `n` gets this and a Link header.
MAX_PAGE = 10_000
_DIGITS = re.compile(r"[0-9]+")


def decimal(text: str) -> int | None:
    """A non-negative decimal integer of ASCII digits, saturated at MAX_NUMBER; None if `text` is
    not one. Never int() on request text directly: it accepts signs, spaces, underscores and
    non-ASCII digits, and raises on 5,000 digits; a saturated value still compares as "too big"."""
    if not _DIGITS.fullmatch(text):
        return None
    significant = text.lstrip("0")
    if len(significant) > len(str(MAX_NUMBER)):
        return MAX_NUMBER
    return min(int(significant or "0"), MAX_NUMBER)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def require(request: Request, name: str, *actions: str) -> Identity:
    check_name(name)  # a malformed name is NAME_INVALID for everyone, before any access question
    return await authorize(request, services(request), Scope("repository", name, frozenset(actions)))


async def body_batches(request: Request, batch_bytes: int) -> AsyncIterator[bytes]:
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        parts.append(chunk)
        size += len(chunk)
        if size >= batch_bytes:
            yield b"".join(parts)  # the one copy per batch
            parts.clear()
            size = 0
    if parts:
        yield b"".join(parts)


async def pump(request: Request, write: Callable[[bytes, int], int], offset: int, batch_bytes: int) -> int:
    """Stream the body to `write(batch, offset)` in a worker thread, receiving the next batch while
    the previous one is written and hashed (at most one write in flight: memory stays ~2 batches).
    Returns the offset after the last byte."""
    pending: asyncio.Future[int] | None = None
    try:
        async for batch in body_batches(request, batch_bytes):
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(run_in_threadpool(write, batch, offset))
            offset += len(batch)
        if pending is not None:
            offset = await pending
            pending = None
    finally:
        if pending is not None:  # the client went away mid-body: let the write finish before failing
            with contextlib.suppress(Exception):
                await pending
    return offset


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refusing (without reading on) once it exceeds `limit`."""
    declared = decimal(request.headers.get("content-length") or "")
    if declared is not None and declared > limit:
        raise TooLarge(f"body of {declared} bytes exceeds the limit of {limit}", {"limit": limit})
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise TooLarge(f"body exceeds the limit of {limit} bytes", {"limit": limit})
    return bytes(buf)


def pagination(request: Request, validate_last: Callable[[str], str]) -> tuple[int | None, str | None]:
    """`n` (clamped to MAX_PAGE) and `last`, which must look like an item of the list (`validate_last`,
    the grammar's own check: `oci.names.validate_tag` or `validate_name`): clients pass back an item or
    the Link header, and anything else could not sort among them."""
    raw_n = request.query_params.get("n")
    n = None
    if raw_n is not None and raw_n != "":
        n = decimal(raw_n)
        if n is None:
            raise PaginationInvalid("n must be a non-negative integer", {"n": raw_n[:64]})
        n = min(n, MAX_PAGE)
    last = request.query_params.get("last") or None
    if last is not None:
        try:
            validate_last(last)
        except OCIFormatError:
            raise PaginationInvalid(
                "last must be an item of the list (from the previous page)", {"last": last[:256]}
            ) from None
    return n, last


def next_link(path: str, n: int | None, last: str | None) -> dict[str, str]:
    from urllib.parse import urlencode

    if n is None or last is None:
        return {}
    return {"Link": f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'}
