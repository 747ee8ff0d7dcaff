"""cosign key-based signatures in the tag scheme (sigstore/cosign specs/SIGNATURE_SPEC.md): a
`sha256-<hex>.sig` image manifest whose `application/vnd.dev.cosign.simplesigning.v1+json` layers are
simple-signing payloads, each with its base64 signature in the `dev.cosignproject.cosign/signature`
annotation. One verdict per layer."""

from __future__ import annotations

import json
import re
from typing import Any

from cryptography import x509

from dockyard.services.trust.formats import keys
from dockyard.services.trust.formats.common import Malformed, Outcome, blob_of, invalid, layers, parse_json
from dockyard.services.trust.model import SignatureArtifact, SignatureState, TrustMaterial, Verdict

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
SIGNATURE_TYPE = "cosign container image signature"
# cosign's tag scheme: the signature, attestation and SBOM of sha256:<hex> live under these tags.
TAG_SCHEME = re.compile(r"sha256-([0-9a-f]{64})\.(sig|att|sbom)")


def tagged_subject(tag: str | None, kinds: tuple[str, ...] = ("sig", "att", "sbom")) -> str | None:
    """The digest a cosign tag-scheme tag of one of `kinds` names (`sha256-<hex>.sig` → `sha256:<hex>`)."""
    m = TAG_SCHEME.fullmatch(tag or "")
    return f"sha256:{m.group(1)}" if m and m.group(2) in kinds else None


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def verify(artifact: SignatureArtifact, subject_digest: str, trust: TrustMaterial, now: float) -> list[Verdict]:
    try:
        manifest = parse_json(artifact.manifest, "signature manifest")
    except Malformed as exc:
        return [invalid(str(exc)).verdict(artifact)]
    signing = layers(manifest, {SIMPLE_SIGNING})
    if not signing:
        return [invalid("no simple-signing layer").verdict(artifact)]
    return [_layer(artifact, layer, subject_digest, trust).verdict(artifact, i) for i, layer in signing]


def _layer(artifact: SignatureArtifact, layer: dict[str, Any], subject_digest: str, trust: TrustMaterial) -> Outcome:
    name = layer.get("digest") if isinstance(layer.get("digest"), str) else None
    found = layer.get("annotations")
    annotations: dict[str, Any] = found if isinstance(found, dict) else {}
    try:
        payload = blob_of(artifact, layer)
        signature = keys.b64decode(annotations.get(SIGNATURE_ANNOTATION))
        signed = payload_digest(payload)
    except (Malformed, ValueError) as exc:
        return invalid(str(exc), name)
    if signed != subject_digest:
        return invalid(f"the payload names {signed}, not {subject_digest}", name)
    for trusted in trust.keys:
        try:
            key = keys.load_public_key(trusted.public_key_pem)
        except keys.UnsupportedKey:
            continue
        if keys.verify_any(key, signature, payload):
            return Outcome(SignatureState.VERIFIED, f"signed by key {trusted.name!r}", trusted.name, layer=name)
    embedded = _embedded_key(annotations)
    if embedded is not None and not keys.verify_any(embedded, signature, payload):
        return invalid("the signature does not verify with the certificate it carries", name)
    if embedded is not None:
        return Outcome(
            SignatureState.UNTRUSTED,
            "keyless signature (certificate, transparency log): verifying it needs an online trust root; "
            "no trusted key verifies it",
            layer=name,
        )
    if not trust.keys:
        return Outcome(SignatureState.UNTRUSTED, "no trusted keys are configured", layer=name)
    return Outcome(
        SignatureState.UNTRUSTED, "no trusted key verifies this signature (another key, or altered)", layer=name
    )


def payload_digest(payload: bytes) -> str:
    """The image digest a simple-signing payload is about (`critical.image.docker-manifest-digest`)."""
    document = parse_json(payload, "simple-signing payload")
    critical = _field(document, "critical")
    if not isinstance(critical, dict):
        raise Malformed("the payload has no critical section")
    kind = _field(critical, "type")
    if kind != SIGNATURE_TYPE:
        raise Malformed(f"the payload's type is {kind!r}, not {SIGNATURE_TYPE!r}")
    image = _field(critical, "image")
    digest = _field(image, "docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(digest, str):
        raise Malformed("the payload names no docker-manifest-digest")
    return digest


def simple_signing_payload(docker_reference: str, digest: str, annotations: dict[str, Any] | None = None) -> bytes:
    """The payload bytes as cosign writes them (Go's encoding/json of sigstore's SimpleContainerImage:
    fields in declaration order, no spaces, `optional` null without annotations, `<`, `>`, `&`, U+2028
    and U+2029 escaped)."""
    document = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": annotations or None,
    }
    # The struct's field order happens to be alphabetical, and Go sorts map keys: sort_keys matches both.
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text.encode()


def _field(document: dict[str, Any], name: str) -> Any:
    """A JSON field as Go's encoding/json finds it (cosign's reader): exact name, else any case."""
    if name in document:
        return document[name]
    folded = name.casefold()
    return next((value for key, value in document.items() if key.casefold() == folded), None)


def _embedded_key(annotations: dict[str, Any]) -> keys.PublicKey | None:
    pem = annotations.get(CERTIFICATE_ANNOTATION)
    if not isinstance(pem, str):
        return None
    try:
        return keys.checked_key(x509.load_pem_x509_certificate(pem.encode()).public_key())
    except (ValueError, keys.UnsupportedKey):
        return None
