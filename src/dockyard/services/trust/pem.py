"""Checks of the trust material a user hands in: which public keys and certificates are accepted.

Pure (no I/O). A key or certificate the verifiers could never use is refused when it is added, not
found out at the first verification: ECDSA on P-256 or P-384, RSA of 2048 bits or more, Ed25519.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from dockyard.services.errors import InvalidInput
from dockyard.services.trust.formats import x509chain

MAX_PEM_BYTES = 16 * 1024  # an RSA-8192 public key is under 1.5 KiB, a certificate a few KiB
MIN_RSA_BITS = 2048
_CURVES = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}


@dataclass(frozen=True)
class KeyFacts:
    algorithm: str  # ecdsa-p256, ecdsa-p384, rsa-<bits>, ed25519
    fingerprint: str  # sha256:<hex> of the DER SubjectPublicKeyInfo
    pem: str  # normalised: the one key, re-encoded


@dataclass(frozen=True)
class CertificateFacts:
    subject: str  # RFC 4514
    fingerprint: str  # sha256:<hex> of the DER certificate
    not_after: float
    algorithm: str
    pem: str


def _bounded(pem: str, what: str) -> bytes:
    data = pem.encode("utf-8", "replace")
    if len(data) > MAX_PEM_BYTES:
        raise InvalidInput(f"{what} is {len(data)} bytes, the limit is {MAX_PEM_BYTES}", {"size": len(data)})
    if "\x00" in pem:
        raise InvalidInput(f"{what} holds a NUL character")
    return data


def key_algorithm(key: object) -> str:
    """The accepted algorithm's name, or InvalidInput naming what is accepted."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name in _CURVES:
            return _CURVES[key.curve.name]
        raise InvalidInput(f"ECDSA curve {key.curve.name} is not accepted: use P-256 or P-384")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidInput(f"RSA key of {key.key_size} bits is too small: at least {MIN_RSA_BITS}")
        return f"rsa-{key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise InvalidInput(f"{type(key).__name__} keys are not accepted: ECDSA P-256/P-384, RSA ≥ 2048 or Ed25519")


def check_public_key(pem: str) -> KeyFacts:
    data = _bounded(pem, "public_key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"public_key is not a PEM public key: {exc}".split("\n")[0]) from None
    algorithm = key_algorithm(key)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    normalised = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyFacts(algorithm, "sha256:" + hashlib.sha256(der).hexdigest(), normalised.decode())


def check_identity(identity: str) -> str:
    """A trusted identity as the Notary Project writes it (`x509.subject: C=US, O=acme`, or `*`)."""
    value = identity.strip()
    if not value or len(value) > 1024 or "\x00" in value:
        raise InvalidInput("an identity is an X.509 subject of 1 to 1024 characters")
    try:
        x509chain.check_identity(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return value


def check_certificate(pem: str) -> CertificateFacts:
    data = _bounded(pem, "certificate")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"certificate is not a PEM X.509 certificate: {exc}".split("\n")[0]) from None
    try:
        algorithm = key_algorithm(cert.public_key())
    except InvalidInput as exc:
        raise InvalidInput(f"certificate key: {exc.message}") from None
    try:
        x509chain.check_trust_certificate(data.decode("utf-8", "replace"))  # the verifiers' own rule: a CA
    except ValueError as exc:
        raise InvalidInput(f"certificate: {exc}") from None
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertificateFacts(
        cert.subject.rfc4514_string(),
        "sha256:" + hashlib.sha256(der).hexdigest(),
        cert.not_valid_after_utc.timestamp(),
        algorithm,
        cert.public_bytes(serialization.Encoding.PEM).decode(),
    )
