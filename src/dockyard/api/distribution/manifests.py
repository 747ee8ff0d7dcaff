"""GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from dockyard.api.distribution.common import read_limited, require, services


async def get_manifest(request: Request) -> Response:
    name, reference = request.path_params["name"], request.path_params["reference"]
    identity = await require(request, name, "pull")
    # A single indexed query on the event loop: cheaper than a thread hop for this hot path.
    svc = services(request)
    manifest = svc.manifests.get(name, reference)
    headers = {"Docker-Content-Digest": manifest.digest, "ETag": f'"{manifest.digest}"'}
    if request.method == "GET":  # a pull, for "who pulled this image, when, from where"
        svc.gates.check_pull(name, manifest.digest, manifest.media_type, manifest.content, identity)
        svc.manifests.pulled(name, reference, manifest.digest)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(manifest.content))
        return Response(status_code=200, headers=headers, media_type=manifest.media_type)
    return Response(manifest.content, headers=headers, media_type=manifest.media_type)


async def put_manifest(request: Request) -> Response:
    name, reference = request.path_params["name"], request.path_params["reference"]
    identity = await require(request, name, "pull", "push")
    svc = services(request)
    body = await read_limited(request, svc.settings.max_manifest_bytes)
    content_type = request.headers.get("content-type", "")  # none declared: refused by the parser
    # A push by tag passes the tag-time gates (signed tags) in the service, before anything is stored.
    result = await run_in_threadpool(svc.manifests.put, name, reference, body, content_type, identity)
    headers = {
        "Location": f"/v2/{name}/manifests/{result.digest}",
        "Docker-Content-Digest": result.digest,
        "Content-Length": "0",
    }
    if result.subject:
        headers["OCI-Subject"] = result.subject
    return Response(status_code=201, headers=headers)


async def delete_manifest(request: Request) -> Response:
    name, reference = request.path_params["name"], request.path_params["reference"]
    await require(request, name, "delete")
    await run_in_threadpool(services(request).manifests.delete, name, reference)
    return Response(status_code=202, headers={"Content-Length": "0"})
