"""Route table for /v2/. Repository names contain slashes, hence the `path` convertors; the more
specific routes (uploads) come before the general ones (blobs)."""

from __future__ import annotations

from starlette.routing import Route

from dockyard.api.distribution import blobs, listing, manifests, uploads

routes = [
    Route("/v2/", listing.base, methods=["GET"]),
    Route("/v2/_catalog", listing.catalog, methods=["GET"]),
    Route("/v2/{name:path}/tags/list", listing.list_tags, methods=["GET"]),
    Route("/v2/{name:path}/referrers/{digest}", listing.referrers, methods=["GET"]),
    Route("/v2/{name:path}/manifests/{reference}", manifests.get_manifest, methods=["GET", "HEAD"]),
    Route("/v2/{name:path}/manifests/{reference}", manifests.put_manifest, methods=["PUT"]),
    Route("/v2/{name:path}/manifests/{reference}", manifests.delete_manifest, methods=["DELETE"]),
    Route("/v2/{name:path}/blobs/uploads/", uploads.start_upload, methods=["POST"]),
    Route("/v2/{name:path}/blobs/uploads/{uuid}", uploads.patch_upload, methods=["PATCH"]),
    Route("/v2/{name:path}/blobs/uploads/{uuid}", uploads.finish_upload, methods=["PUT"]),
    Route("/v2/{name:path}/blobs/uploads/{uuid}", uploads.upload_status, methods=["GET"]),
    Route("/v2/{name:path}/blobs/uploads/{uuid}", uploads.cancel_upload, methods=["DELETE"]),
    Route("/v2/{name:path}/blobs/{digest}", blobs.get_blob, methods=["GET", "HEAD"]),
    Route("/v2/{name:path}/blobs/{digest}", blobs.delete_blob, methods=["DELETE"]),
]
