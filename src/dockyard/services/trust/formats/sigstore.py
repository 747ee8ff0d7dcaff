"""Sigstore bundles (v0.3) stored as OCI referrers, verified against trusted public keys.

The bundle (sigstore/protobuf-specs protos/sigstore_bundle.proto, JSON form) carries either a
`messageSignature` (a signature over the artifact, with the artifact's digest in `messageDigest`;
here the artifact is the image manifest, so the digest must be the subject's) or a `dsseEnvelope`
(secure-systems-lab/dsse: the signature is over PAE(payloadType, payload); the payload is an in-toto
Statement one of whose subjects must carry the image's digest). Keyless bundles (a Fulcio certificate
and Rekor entries) need an online trust root and are reported UNTRUSTED, unless the certificate chains
to a trusted certificate and is valid now (a private CA)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes

from dockyard.services.trust.formats import keys, x509chain
from dockyard.services.trust.formats.common import Malformed, Outcome, blob_of, invalid, layers, parse_json
from dockyard.services.trust.model import SignatureArtifact, SignatureState, TrustMaterial, Verdict

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
_BUNDLE_TYPES = frozenset(
    {
        BUNDLE_V03,
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
    }
)
IN_TOTO = "application/vnd.in-toto+json"
STATEMENTS = frozenset({"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"})
_DIGESTS: dict[str, tuple[str, hashes.HashAlgorithm]] = {
    "SHA2_256": ("sha256", hashes.SHA256()),
    "SHA2_384": ("sha384", hashes.SHA384()),
    "SHA2_512": ("sha512", hashes.SHA512()),
}
Check = Callable[[keys.PublicKey], bool]
KEYLESS = (
    "keyless bundle (Fulcio certificate, Rekor entries): verifying it needs an online trust root, "
    "which this registry does not use; sign with a key"
)


def is_bundle_type(media_type: object) -> bool:
    return isinstance(media_type, str) and media_type.replace(" ", "") in _BUNDLE_TYPES


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def verify(artifact: SignatureArtifact, subject_digest: str, trust: TrustMaterial, now: float) -> list[Verdict]:
    try:
        manifest = parse_json(artifact.manifest, "signature manifest")
    except Malformed as exc:
        return [invalid(str(exc)).verdict(artifact)]
    found = layers(manifest, _BUNDLE_TYPES)
    if not found:
        return [invalid("no sigstore bundle layer").verdict(artifact)]
    return [_layer(artifact, layer, subject_digest, trust, now).verdict(artifact, i) for i, layer in found]


def _layer(
    artifact: SignatureArtifact, layer: dict[str, Any], subject_digest: str, trust: TrustMaterial, now: float
) -> Outcome:
    name = layer.get("digest") if isinstance(layer.get("digest"), str) else None
    try:
        bundle = parse_json(blob_of(artifact, layer), "bundle")
        if not is_bundle_type(bundle.get("mediaType")):
            raise Malformed(f"bundle media type {bundle.get('mediaType')!r} is not supported")
        material = bundle.get("verificationMaterial")
        if not isinstance(material, dict):
            raise Malformed("the bundle has no verificationMaterial")
        if "messageSignature" in bundle:
            check = _message_signature(bundle["messageSignature"], subject_digest)
        elif "dsseEnvelope" in bundle:
            check = _dsse(bundle["dsseEnvelope"], subject_digest)
        else:
            raise Malformed("the bundle has neither messageSignature nor dsseEnvelope")
    except (Malformed, ValueError) as exc:
        return invalid(str(exc), name)
    if "publicKey" not in material:
        return _certificate(material, check, trust, now, name)
    for trusted in trust.keys:
        try:
            key = keys.load_public_key(trusted.public_key_pem)
        except keys.UnsupportedKey:
            continue
        if check(key):
            return Outcome(SignatureState.VERIFIED, f"signed by key {trusted.name!r}", trusted.name, layer=name)
    if not trust.keys:
        return Outcome(SignatureState.UNTRUSTED, "no trusted keys are configured", layer=name)
    return Outcome(
        SignatureState.UNTRUSTED, "no trusted key verifies this bundle (another key, or altered)", layer=name
    )


def _certificate(
    material: dict[str, Any], check: Check, trust: TrustMaterial, now: float, layer: str | None
) -> Outcome:
    """A bundle signed with a certificate: verified only when its chain leads to one of the trusted
    certificates (bring-your-own PKI) and it is valid now. Fulcio's short-lived certificates would
    need the transparency log's signing time, which is not checked: they are untrusted."""
    if not trust.certificates:
        return Outcome(SignatureState.UNTRUSTED, KEYLESS, layer=layer)
    try:
        chain = x509chain.load_chain(_certificates(material))
        key = keys.checked_key(chain[0].public_key())
    except (Malformed, ValueError, keys.UnsupportedKey) as exc:
        return invalid(str(exc), layer)
    signer = x509chain.subject(chain[0]) or "(empty subject)"
    if not check(key):
        return invalid("the signature does not verify with the bundle's certificate", layer)
    chained = x509chain.evaluate(chain, trust.certificates, now)
    if chained.state is not SignatureState.VERIFIED:
        note = f"{chained.message}; {KEYLESS}" if chained.state is SignatureState.UNTRUSTED else chained.message
        return Outcome(chained.state, note, signer, layer=layer)
    return Outcome(SignatureState.VERIFIED, f"signed by {signer}, {chained.message}", signer, chained.expires_at, layer)


def _certificates(material: dict[str, Any]) -> list[bytes]:
    if isinstance(material.get("certificate"), dict):
        return [keys.b64decode(material["certificate"].get("rawBytes"))]
    chain = material.get("x509CertificateChain")
    certificates = chain.get("certificates") if isinstance(chain, dict) else None
    if not isinstance(certificates, list) or not certificates:
        raise Malformed("the bundle has neither a public key nor certificates")
    return [keys.b64decode(c.get("rawBytes") if isinstance(c, dict) else None) for c in certificates]


def _message_signature(section: object, subject_digest: str) -> Check:
    if not isinstance(section, dict):
        raise Malformed("messageSignature is not an object")
    digest = section.get("messageDigest")
    if not isinstance(digest, dict) or digest.get("algorithm") not in _DIGESTS:
        raise Malformed("messageSignature has no supported messageDigest")
    prefix, algorithm = _DIGESTS[digest["algorithm"]]
    value = keys.b64decode(digest.get("digest"))
    signature = keys.b64decode(section.get("signature"))
    named = f"{prefix}:{value.hex()}"
    if named != subject_digest:
        raise Malformed(f"the bundle's message digest is {named}, not {subject_digest}")
    return lambda key: keys.verify_prehashed(key, signature, value, algorithm)


def _dsse(envelope: object, subject_digest: str) -> Check:
    if not isinstance(envelope, dict):
        raise Malformed("dsseEnvelope is not an object")
    payload_type = envelope.get("payloadType")
    if payload_type != IN_TOTO:
        raise Malformed(f"DSSE payload type {payload_type!r} is not {IN_TOTO}")
    payload = keys.b64decode_either(envelope.get("payload"))
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise Malformed("the DSSE envelope has no signatures")
    sigs = [keys.b64decode_either(item.get("sig") if isinstance(item, dict) else None) for item in signatures]
    statement = parse_json(payload, "in-toto statement")
    if statement.get("_type") not in STATEMENTS:
        raise Malformed(f"the DSSE payload is not an in-toto statement ({statement.get('_type')!r})")
    algorithm, _, hexdigest = subject_digest.partition(":")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not any(
        isinstance(s, dict) and isinstance(s.get("digest"), dict) and s["digest"].get(algorithm) == hexdigest
        for s in subjects
    ):
        raise Malformed(f"no subject of the statement has digest {subject_digest}")
    message = pae(payload_type, payload)
    return lambda key: any(keys.verify_any(key, sig, message) for sig in sigs)
