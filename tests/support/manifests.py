"""Manifest documents for tests that push images through the services."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from dockyard.oci import mediatypes as mt

LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_manifest(config: bytes, layers: Sequence[bytes], annotations: dict[str, str] | None = None) -> bytes:
    """An OCI image manifest (its JSON bytes) of this config and these layers."""
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": sha256(layer), "size": len(layer)} for layer in layers],
    }
    if annotations is not None:
        doc["annotations"] = annotations
    return json.dumps(doc).encode()
