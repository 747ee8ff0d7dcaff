"""What the Notary Project envelope readers (`notation_jws`, `notation_cose`) produce, and the
names of the signed attributes (specs/signature-specification.md, "Signed Attributes")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
JWS = "application/jose+json"
COSE = "application/cose"
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
SIGNING_SCHEME = "io.cncf.notary.signingScheme"
SIGNING_TIME = "io.cncf.notary.signingTime"
AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
EXPIRY = "io.cncf.notary.expiry"
SCHEMES = frozenset({"notary.x509", "notary.x509.signingAuthority"})
# The critical headers this verifier understands (the plugin headers are not: such signatures fail).
UNDERSTOOD = frozenset({SIGNING_SCHEME, AUTHENTIC_SIGNING_TIME, EXPIRY})


@dataclass(frozen=True)
class Envelope:
    alg: str  # JOSE name: PS256 … ES512
    signed: bytes  # the bytes the signature is over
    signature: bytes  # raw (r||s for ECDSA)
    payload: bytes
    chain: list[bytes]  # DER, leaf first
    headers: dict[str, Any] = field(default_factory=dict)  # protected: scheme, times (epoch floats)
    critical: tuple[str, ...] = ()
