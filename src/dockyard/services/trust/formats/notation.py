"""Notary Project signatures (notaryproject/specifications specs/signature-specification.md): an OCI
referrer with artifactType (or, older, config media type) `application/vnd.cncf.notary.signature`
whose layer is a JWS (`application/jose+json`, `notation_jws`) or COSE_Sign1 (`application/cose`,
`notation_cose`) envelope. Both are read into an `Envelope`; the checks after that are common:
integrity (the leaf certificate's key, the `alg` it allows), the payload's target digest, the chain to
a trust store and its trusted identities (`x509chain`), expiry."""

from __future__ import annotations

from dockyard.services.trust.formats import keys, notation_cose, notation_jws, x509chain
from dockyard.services.trust.formats.common import Malformed, Outcome, blob_of, invalid, layers, parse_json
from dockyard.services.trust.formats.notation_envelope import (
    ARTIFACT_TYPE,
    AUTHENTIC_SIGNING_TIME,
    COSE,
    EXPIRY,
    JWS,
    SCHEMES,
    SIGNING_SCHEME,
    SIGNING_TIME,
    UNDERSTOOD,
    Envelope,
)
from dockyard.services.trust.model import SignatureArtifact, SignatureState, TrustMaterial, Verdict

__all__ = ["ARTIFACT_TYPE", "verify"]


def verify(artifact: SignatureArtifact, subject_digest: str, trust: TrustMaterial, now: float) -> list[Verdict]:
    readers = {JWS: notation_jws.read, COSE: notation_cose.read}
    try:
        manifest = parse_json(artifact.manifest, "signature manifest")
    except Malformed as exc:
        return [invalid(str(exc)).verdict(artifact)]
    found = layers(manifest, readers)
    if not found:
        return [invalid("no JWS or COSE envelope layer").verdict(artifact)]
    verdicts = []
    for index, layer in found:
        name = layer.get("digest") if isinstance(layer.get("digest"), str) else None
        try:
            envelope = readers[layer["mediaType"]](blob_of(artifact, layer))
            outcome = check(envelope, subject_digest, trust, now, name)
        except (Malformed, ValueError) as exc:
            outcome = invalid(str(exc), name)
        verdicts.append(outcome.verdict(artifact, index))
    return verdicts


def check(envelope: Envelope, subject_digest: str, trust: TrustMaterial, now: float, layer: str | None) -> Outcome:
    _check_headers(envelope)
    chain = x509chain.load_chain(envelope.chain)
    leaf = chain[0]
    try:
        key = keys.checked_key(leaf.public_key())
    except keys.UnsupportedKey as exc:
        raise Malformed(f"signing certificate: {exc}") from None
    expected = keys.notary_alg(key)
    if envelope.alg != expected:
        raise Malformed(f"alg {envelope.alg} does not match the signing key ({keys.describe(key)}: {expected})")
    if not keys.verify_jose(key, envelope.alg, envelope.signature, envelope.signed):
        return invalid("the signature does not verify with the signing certificate's key", layer)
    target = _target_digest(envelope.payload)
    if target != subject_digest:
        return invalid(f"the payload's target artifact is {target}, not {subject_digest}", layer)
    chained = x509chain.evaluate(chain, trust.certificates, now)
    signer = x509chain.subject(leaf)
    if chained.state is not SignatureState.VERIFIED:
        return Outcome(chained.state, chained.message, signer, layer=layer)
    expiry = envelope.headers.get(EXPIRY)
    if expiry is not None and expiry < now:
        return Outcome(SignatureState.EXPIRED, "the signature's expiry has passed", signer, layer=layer)
    expires_at = min(t for t in (chained.expires_at, expiry) if t is not None)
    return Outcome(SignatureState.VERIFIED, f"signed by {signer}, {chained.message}", signer, expires_at, layer)


def _check_headers(envelope: Envelope) -> None:
    headers, critical = envelope.headers, envelope.critical
    scheme = headers.get(SIGNING_SCHEME)
    if scheme not in SCHEMES:
        raise Malformed(f"signing scheme {scheme!r} is not supported")
    if SIGNING_SCHEME not in critical:
        raise Malformed(f"{SIGNING_SCHEME} is not marked critical")
    unknown = [name for name in critical if name not in UNDERSTOOD]
    if unknown:
        raise Malformed(f"critical headers not understood: {', '.join(map(str, unknown))}")
    missing = [name for name in critical if name not in headers]
    if missing:
        raise Malformed(f"critical headers missing: {', '.join(missing)}")
    for name in (EXPIRY, AUTHENTIC_SIGNING_TIME):
        if name in headers and name not in critical:
            raise Malformed(f"{name} must be critical")
    if scheme == "notary.x509" and SIGNING_TIME not in headers:
        raise Malformed(f"{SIGNING_TIME} is required by notary.x509")
    if scheme == "notary.x509.signingAuthority" and AUTHENTIC_SIGNING_TIME not in headers:
        raise Malformed(f"{AUTHENTIC_SIGNING_TIME} is required by notary.x509.signingAuthority")


def _target_digest(payload: bytes) -> str:
    document = parse_json(payload, "payload")
    target = document.get("targetArtifact")
    if not isinstance(target, dict) or not isinstance(target.get("digest"), str):
        raise Malformed("the payload has no targetArtifact digest")
    if not isinstance(target.get("mediaType"), str) or not isinstance(target.get("size"), int):
        raise Malformed("the payload's targetArtifact lacks mediaType or size")
    return str(target["digest"])
