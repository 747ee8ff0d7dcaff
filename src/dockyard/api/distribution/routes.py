"""Route table for /v2/. Repository names contain slashes, hence the `path` convertors; the more
specific routes (uploads) come before the general ones (blobs)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.api.distribution import blobs, listing, manifests, uploads

Endpoint = Callable[[Request], Awaitable[Response]]


def _resource(path: str, **by_method: Endpoint) -> list[Route]:
    """One route per method of a resource (a GET route answers HEAD too: Starlette adds it)."""
    return [Route(path, endpoint, methods=[method]) for method, endpoint in by_method.items()]


# Routes are tried in order and a pull is mostly manifest GETs, so those come first. No path matches
# two of these patterns except an upload's and a blob's, which keep their order.
routes = [
    *_resource(
        "/v2/{name:path}/manifests/{reference}",
        GET=manifests.get_manifest,
        PUT=manifests.put_manifest,
        DELETE=manifests.delete_manifest,
    ),
    *_resource("/v2/", GET=listing.base),
    *_resource("/v2/_catalog", GET=listing.catalog),
    *_resource("/v2/{name:path}/tags/list", GET=listing.list_tags),
    *_resource("/v2/{name:path}/referrers/{digest}", GET=listing.referrers),
    *_resource("/v2/{name:path}/blobs/uploads/", POST=uploads.start_upload),
    *_resource(
        "/v2/{name:path}/blobs/uploads/{uuid}",
        PATCH=uploads.patch_upload,
        PUT=uploads.finish_upload,
        GET=uploads.upload_status,
        DELETE=uploads.cancel_upload,
    ),
    *_resource("/v2/{name:path}/blobs/{digest}", GET=blobs.get_blob, DELETE=blobs.delete_blob),
]
