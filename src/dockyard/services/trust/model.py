"""The vocabulary shared by the signature verifiers (pure, no I/O) and the services that find
signatures, keep trust material and store verdicts."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class SignatureFormat(enum.StrEnum):
    COSIGN = "cosign"  # tag scheme: sha256-<hex>.sig, simple-signing layers with a signature annotation
    SIGSTORE_BUNDLE = "sigstore-bundle"  # a referrer with application/vnd.dev.sigstore.bundle.v0.3+json
    NOTATION = "notation"  # a referrer with application/vnd.cncf.notary.signature (JWS or COSE envelope)


class SignatureState(enum.StrEnum):
    VERIFIED = "verified"  # the signature is valid, by trusted material, over this image's digest
    INVALID = "invalid"  # malformed, tampered, or over another digest
    UNTRUSTED = "untrusted"  # well formed, but no trusted key or certificate vouches for it
    EXPIRED = "expired"  # was valid, but the signing certificate (or signature expiry) has passed


@dataclass(frozen=True)
class TrustedKey:
    """A cosign public key (PEM: ECDSA P-256/P-384, RSA or Ed25519)."""

    name: str
    public_key_pem: str


@dataclass(frozen=True)
class TrustedCertificate:
    """A Notary Project trust-store certificate (a root or intermediate CA, PEM) and the X.509
    subjects of signing certificates it is trusted for (empty: any subject chaining to it)."""

    name: str
    certificate_pem: str
    identities: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrustMaterial:
    keys: tuple[TrustedKey, ...] = ()
    certificates: tuple[TrustedCertificate, ...] = ()


@dataclass(frozen=True)
class SignatureArtifact:
    """A stored signature: its manifest and the bytes of the blobs it names (read by the caller,
    each bounded in size)."""

    format: SignatureFormat
    digest: str  # the signature manifest's own digest
    manifest: bytes
    blobs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    format: SignatureFormat
    signature_digest: str
    state: SignatureState
    signer: str | None  # the trusted key's name, or the signing certificate's subject
    message: str  # why, in words: "signed by key 'ci'", "payload names another digest", …
    expires_at: float | None = None  # when a verified verdict stops holding (certificate not-after)
    layer: str | None = None  # the digest of the layer (signature blob) this verdict is about
    # Its position in the manifest's layers: layers can share a digest (cosign writes the same payload
    # for every signature of an image), so (signature_digest, layer_index) is what identifies a verdict.
    layer_index: int | None = None
