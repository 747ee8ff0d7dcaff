"""Attach an image's SBOM to it as an OCI referrer artifact, so clients discover it with the
referrers API (`oras discover`, `GET /v2/<name>/referrers/<digest>`) and copy it with the image."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from dockyard.oci import mediatypes as mt
from dockyard.services.registry import ManifestService, UploadService

CYCLONEDX = "application/vnd.cyclonedx+json"
SPDX = "application/spdx+json"
EMPTY_CONFIG = b"{}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def attach_sbom(
    uploads: UploadService,
    manifests: ManifestService,
    repository: str,
    subject_digest: str,
    document: bytes,
    media_type: str,
) -> str:
    """Store the document as a blob and an artifact manifest whose subject is the image; returns its digest."""
    subject = manifests.get(repository, subject_digest)
    for blob in (EMPTY_CONFIG, document):
        uploads.monolithic(repository, _digest(blob), [blob])
    filename = "sbom.cdx.json" if media_type == CYCLONEDX else "sbom.spdx.json"
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": media_type,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": _digest(EMPTY_CONFIG), "size": len(EMPTY_CONFIG)},
        "layers": [
            {
                "mediaType": media_type,
                "digest": _digest(document),
                "size": len(document),
                "annotations": {"org.opencontainers.image.title": filename},
            }
        ],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.content)},
        "annotations": {
            "org.opencontainers.image.created": datetime.now(UTC).isoformat(timespec="seconds"),
            "dev.dockyard.sbom.generator": "dockyard",
        },
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    digest = _digest(body)
    manifests.put(repository, digest, body, mt.OCI_MANIFEST)
    return digest
