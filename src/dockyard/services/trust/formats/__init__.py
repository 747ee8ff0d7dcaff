"""Signature formats: which stored manifests are signatures (`classify`), which image each is about
(`signed_digest`), and whether it holds (`verify`). Pure functions of bytes: no I/O, no database; the
caller reads the signature manifest and its blobs and passes the project's trust material.

- cosign tag scheme: `formats.cosign` (sigstore/cosign specs/SIGNATURE_SPEC.md)
- sigstore bundle v0.3 as an OCI referrer, key-based: `formats.sigstore` (sigstore/protobuf-specs
  protos/sigstore_bundle.proto, secure-systems-lab/dsse protocol.md, in-toto Statement v1)
- Notary Project JWS and COSE_Sign1 envelopes: `formats.notation` (notaryproject/specifications
  specs/signature-specification.md, signature-envelope-jws.md, signature-envelope-cose.md,
  trust-store-trust-policy.md)
"""

from __future__ import annotations

import json
import re
from typing import Any

from dockyard.services.trust.formats import cosign, notation, sigstore
from dockyard.services.trust.model import SignatureArtifact, SignatureFormat, TrustMaterial, Verdict

IMAGE_MANIFESTS = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.artifact.manifest.v1+json",
    }
)

__all__ = ["classify", "cosign_tag", "signed_digest", "verify"]


def cosign_tag(digest: str) -> str:
    """The tag cosign stores an image's signatures under: `sha256:<hex>` → `sha256-<hex>.sig`."""
    return digest.replace(":", "-", 1) + ".sig"


def classify(media_type: str, manifest: bytes, tag: str | None) -> SignatureFormat | None:
    """The signature format of a stored manifest, or None when it is not a signature."""
    if media_type.split(";")[0].strip() not in IMAGE_MANIFESTS:
        return None
    document = _object(manifest)
    if document is None:
        return None
    artifact_type = document.get("artifactType")
    found = document.get("config")
    config: dict[str, Any] = found if isinstance(found, dict) else {}
    media_types = [layer.get("mediaType") for layer in _layers(document)]
    if artifact_type == notation.ARTIFACT_TYPE or config.get("mediaType") == notation.ARTIFACT_TYPE:
        return SignatureFormat.NOTATION
    if sigstore.is_bundle_type(artifact_type) or any(sigstore.is_bundle_type(m) for m in media_types):
        return SignatureFormat.SIGSTORE_BUNDLE
    annotated = any(
        layer.get("mediaType") == cosign.SIMPLE_SIGNING
        and isinstance(layer.get("annotations"), dict)
        and cosign.SIGNATURE_ANNOTATION in layer["annotations"]
        for layer in _layers(document)
    )
    # A cosign signature is found by its tag; a manifest of that shape pushed without one (by digest)
    # is still a cosign signature, only not yet tied to an image.
    if annotated and (tag is None or cosign.tagged_subject(tag, ("sig",))):
        return SignatureFormat.COSIGN
    return None


def signed_digest(fmt: SignatureFormat, manifest: bytes, tag: str | None) -> str | None:
    """The digest of the image a signature is about: from the tag for cosign (its only link), from
    the manifest's `subject` for referrers. None when it names none."""
    if fmt is SignatureFormat.COSIGN:
        return cosign.tagged_subject(tag, ("sig",))
    document = _object(manifest)
    subject = document.get("subject") if document else None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    return digest if isinstance(digest, str) and re.match(r"^sha256:[0-9a-f]{64}$", digest) else None


def verify(artifact: SignatureArtifact, subject_digest: str, trust: TrustMaterial, now: float) -> list[Verdict]:
    """Verdicts on `artifact` as a signature of the image `subject_digest`, by `trust`, at time `now`
    (seconds since the epoch). A cosign manifest yields one verdict per signature layer; the referrer
    formats one per envelope."""
    if artifact.format is SignatureFormat.COSIGN:
        return cosign.verify(artifact, subject_digest, trust, now)
    if artifact.format is SignatureFormat.SIGSTORE_BUNDLE:
        return sigstore.verify(artifact, subject_digest, trust, now)
    return notation.verify(artifact, subject_digest, trust, now)


def _object(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _layers(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = document.get("layers", document.get("blobs"))
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []
