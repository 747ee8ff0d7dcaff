"""cosign's tag-scheme signatures against any registry (sigstore/cosign specs/SIGNATURE_SPEC.md):
`sign` resolves the image to its digest, builds the simple-signing payload byte for byte as cosign
does, signs it, and pushes the payload blob, the config and the `sha256-<hex>.sig` manifest — adding a
layer to the signatures already there; `verify` reads them back and verifies them with the library in
`services.trust.formats`. The manifest and config are serialised as go-containerregistry writes them
(cosign builds them with it), so that the stored objects are what cosign itself would have stored."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from dockyard.clients.registry import Manifest, Reference, RegistryClient, RegistryError
from dockyard.services.trust import formats
from dockyard.services.trust.formats import keys
from dockyard.services.trust.formats.cosign import SIGNATURE_ANNOTATION, SIMPLE_SIGNING, simple_signing_payload
from dockyard.services.trust.keyfile import PrivateKey
from dockyard.services.trust.model import SignatureArtifact, SignatureFormat, TrustMaterial, Verdict

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


@dataclass(frozen=True)
class SignResult:
    image: str  # registry/repository@digest
    signature_tag: str
    manifest_digest: str
    signatures: int  # layers in the .sig manifest now
    added: bool  # False when this very signature was already there


def resolve(client: RegistryClient, ref: Reference) -> Manifest:
    manifest = client.get_manifest(ref.repository, ref.reference)
    if manifest is None:
        raise RegistryError(f"{ref} does not exist")
    return manifest


def sign_payload(key: PrivateKey, payload: bytes) -> bytes:
    """cosign's default schemes: ECDSA with SHA-256 (ASN.1 DER), RSA PKCS#1 v1.5 with SHA-256, Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(payload)
    raise ValueError(f"unsupported key type {type(key).__name__}")


def sign(client: RegistryClient, ref: Reference, key: PrivateKey) -> SignResult:
    image = resolve(client, ref)
    payload = simple_signing_payload(ref.name, image.digest)
    signature = base64.b64encode(sign_payload(key, payload)).decode()
    tag = formats.cosign_tag(image.digest)
    existing = client.get_manifest(ref.repository, tag)
    layers: list[dict[str, Any]] = []
    if existing is not None:
        found = json.loads(existing.data).get("layers")
        layers = [layer for layer in found if isinstance(layer, dict)] if isinstance(found, list) else []
    payload_digest = client.push_blob(ref.repository, payload)
    layer = {
        "mediaType": SIMPLE_SIGNING,
        "size": len(payload),
        "digest": payload_digest,
        "annotations": {SIGNATURE_ANNOTATION: signature},
    }
    # As cosign's duplicate detector: a signature this key already made over the same payload is kept
    # and no second one is added (ECDSA signatures differ each time, so bytes alone cannot tell).
    added = not any(_signed_by(old, payload_digest, payload, key) for old in layers)
    if added:
        layers.append(layer)
    config = config_blob([str(old.get("digest")) for old in layers])
    config_digest = client.push_blob(ref.repository, config)
    manifest = manifest_bytes(config_digest, len(config), layers)
    digest = client.put_manifest(ref.repository, tag, manifest, OCI_MANIFEST)
    return SignResult(f"{ref.name}@{image.digest}", tag, digest, len(layers), added)


def verify(client: RegistryClient, ref: Reference, trust: TrustMaterial, now: float) -> tuple[str, list[Verdict]]:
    """The image's digest and a verdict for each cosign signature stored for it (none: no .sig)."""
    image = resolve(client, ref)
    signatures = client.get_manifest(ref.repository, formats.cosign_tag(image.digest))
    if signatures is None:
        return image.digest, []
    document = json.loads(signatures.data)
    blobs = {}
    for layer in document.get("layers") or []:
        digest = layer.get("digest") if isinstance(layer, dict) else None
        if layer.get("mediaType") == SIMPLE_SIGNING and isinstance(digest, str) and digest not in blobs:
            blobs[digest] = client.get_blob(ref.repository, digest)
    artifact = SignatureArtifact(SignatureFormat.COSIGN, signatures.digest, signatures.data, blobs)
    return image.digest, formats.verify(artifact, image.digest, trust, now)


def config_blob(layer_digests: list[str]) -> bytes:
    """go-containerregistry's ConfigFile of cosign's empty image with these layers appended."""
    history = ",".join('{"created":"0001-01-01T00:00:00Z"}' for _ in layer_digests)
    diff_ids = json.dumps(layer_digests, separators=(",", ":"))
    return (
        '{"architecture":"","created":"0001-01-01T00:00:00Z","history":[' + history + '],"os":"",'
        '"rootfs":{"type":"layers","diff_ids":' + diff_ids + '},"config":{}}'
    ).encode()


def manifest_bytes(config_digest: str, config_size: int, layers: list[dict[str, Any]]) -> bytes:
    """An OCI image manifest in go-containerregistry's field order (schemaVersion, mediaType, config,
    layers; descriptors: mediaType, size, digest, annotations), compact, as cosign pushes it."""
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config_size, "digest": config_digest},
        "layers": [_descriptor(layer) for layer in layers],
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


# go-containerregistry's v1.Descriptor fields, in order (others are dropped, as cosign drops them).
_DESCRIPTOR_FIELDS = ("mediaType", "size", "digest", "data", "urls", "annotations", "platform", "artifactType")


def _descriptor(layer: dict[str, Any]) -> dict[str, Any]:
    ordered: dict[str, Any] = {name: layer[name] for name in _DESCRIPTOR_FIELDS if name in layer}
    if isinstance(ordered.get("annotations"), dict):
        ordered["annotations"] = dict(sorted(ordered["annotations"].items()))  # Go sorts map keys
    return ordered


def _signed_by(layer: dict[str, Any], payload_digest: str, payload: bytes, key: PrivateKey) -> bool:
    found = layer.get("annotations")
    annotations: dict[str, Any] = found if isinstance(found, dict) else {}
    if layer.get("digest") != payload_digest:
        return False
    try:
        signature = keys.b64decode(annotations.get(SIGNATURE_ANNOTATION))
    except ValueError:
        return False
    return keys.verify_any(keys.checked_key(key.public_key()), signature, payload)
