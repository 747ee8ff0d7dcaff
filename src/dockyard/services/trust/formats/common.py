"""Small helpers the format modules share: manifest parsing and verdict building."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from dockyard.services.trust.model import SignatureArtifact, SignatureState, Verdict

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class Malformed(ValueError):
    """The signature cannot be read: its verdict is INVALID with this message."""


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Malformed(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not a JSON object")
    return value


def layers(manifest: dict[str, Any], media_types: Container[object]) -> list[tuple[int, dict[str, Any]]]:
    """The manifest's layers of these media types, with their positions."""
    found = manifest.get("layers")
    if found is None:
        found = manifest.get("blobs")  # the short-lived OCI artifact manifest
    if not isinstance(found, list):
        return []
    return [
        (i, item) for i, item in enumerate(found) if isinstance(item, dict) and item.get("mediaType") in media_types
    ]


def blob_of(artifact: SignatureArtifact, descriptor: dict[str, Any], limit: int = 4 << 20) -> bytes:
    """The bytes a descriptor names, checked against its digest (the caller read them from storage,
    but a blob is only as good as its digest: the signature manifest commits to that)."""
    digest = descriptor.get("digest")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise Malformed(f"layer digest {digest!r} is not a sha256 digest")
    data = artifact.blobs.get(digest)
    if data is None:
        raise Malformed(f"blob {digest} was not provided")
    if len(data) > limit:
        raise Malformed(f"blob {digest} is larger than {limit} bytes")
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise Malformed(f"blob {digest} does not match its digest")
    return data


@dataclass(frozen=True)
class Outcome:
    """One verdict before it is tied to its artifact."""

    state: SignatureState
    message: str
    signer: str | None = None
    expires_at: float | None = None
    layer: str | None = None

    def verdict(self, artifact: SignatureArtifact, index: int | None = None) -> Verdict:
        return Verdict(
            format=artifact.format,
            signature_digest=artifact.digest,
            state=self.state,
            signer=self.signer,
            message=self.message,
            expires_at=self.expires_at,
            layer=self.layer,
            layer_index=index,
        )


def invalid(message: str, layer: str | None = None) -> Outcome:
    return Outcome(SignatureState.INVALID, message, layer=layer)
