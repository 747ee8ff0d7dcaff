"""The base check, tag lists, the catalog and the referrers API."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dockyard.api.auth import authorize
from dockyard.api.distribution.common import next_link, pagination, require, services
from dockyard.oci import mediatypes as mt
from dockyard.oci.names import validate_name, validate_tag
from dockyard.services.auth.scopes import Scope

CATALOG_DEFAULT_PAGE = 100


async def base(request: Request) -> Response:
    await authorize(request, services(request), None)
    return JSONResponse({})


async def list_tags(request: Request) -> Response:
    name = request.path_params["name"]
    await require(request, name, "pull")
    n, last = pagination(request, validate_tag)
    page = await run_in_threadpool(services(request).catalog.tags, name, n, last)
    headers = next_link(f"/v2/{name}/tags/list", n, page.last) if page.more else {}
    return JSONResponse({"name": name, "tags": page.items}, headers=headers)


async def catalog(request: Request) -> Response:
    await authorize(request, services(request), Scope("registry", "catalog", frozenset({"*"})))
    n, last = pagination(request, validate_name)
    if n is None:  # the catalog is paged even when the client does not ask, as distribution does
        n = CATALOG_DEFAULT_PAGE
    page = await run_in_threadpool(services(request).catalog.repositories, n, last)
    headers = next_link("/v2/_catalog", n, page.last) if page.more else {}
    return JSONResponse({"repositories": page.items}, headers=headers)


async def referrers(request: Request) -> Response:
    name, digest = request.path_params["name"], request.path_params["digest"]
    await require(request, name, "pull")
    artifact_type = request.query_params.get("artifactType") or None
    index = await run_in_threadpool(services(request).manifests.referrers, name, digest, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    return JSONResponse(index, media_type=mt.OCI_INDEX, headers=headers)
