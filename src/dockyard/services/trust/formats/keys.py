"""Public keys and raw signature checks shared by the formats (pure: bytes in, bool out)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


class UnsupportedKey(ValueError):
    """A key or certificate key of a type the verifiers do not accept."""


def load_public_key(pem: str | bytes) -> PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UnsupportedKey(f"not a PEM public key: {exc}") from None
    return checked_key(key)


def checked_key(key: object) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVE_HASH:
            raise UnsupportedKey(f"unsupported curve {key.curve.name}")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise UnsupportedKey(f"RSA key of {key.key_size} bits is too small")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise UnsupportedKey(f"unsupported key type {type(key).__name__}")


def describe(key: PublicKey) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return "Ed25519"


def b64decode(value: object) -> bytes:
    """Strict standard base64 (what cosign, DSSE and sigstore bundles write)."""
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


def b64decode_either(value: object) -> bytes:
    """Standard or URL-safe base64 (DSSE: "verifiers MUST accept either alphabet")."""
    if isinstance(value, str) and ("-" in value or "_" in value):
        value = value.replace("-", "+").replace("_", "/")
    return b64decode(value)


def b64url_decode(value: object) -> bytes:
    """Unpadded base64url (JWS); padding is tolerated."""
    if not isinstance(value, str) or not value.isascii():
        raise ValueError("expected a base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64url") from None


def verify_any(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether `signature` over `data` verifies with `key` under one of the schemes cosign can write
    for that key type: ECDSA (DER) with SHA-256 or the curve's own hash, RSA PKCS#1 v1.5 or PSS with
    SHA-256, Ed25519. The scheme is not recorded in a cosign signature, so each candidate is tried."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return any(_ok(key.verify, signature, data, ec.ECDSA(a())) for a in _hashes_for_curve(key))
    if isinstance(key, rsa.RSAPublicKey):
        sha256 = hashes.SHA256()
        schemes: list[padding.AsymmetricPadding] = [padding.PKCS1v15(), _pss(sha256, padding.PSS.AUTO)]
        return any(_ok(key.verify, signature, data, scheme, sha256) for scheme in schemes)
    return _ok(key.verify, signature, data)


def verify_prehashed(key: PublicKey, signature: bytes, digest: bytes, algorithm: hashes.HashAlgorithm) -> bool:
    """A signature over a message of which only the digest is known (sigstore messageSignature).
    Ed25519 signs the message itself, so it cannot be checked this way."""
    pre = utils.Prehashed(algorithm)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _ok(key.verify, signature, digest, ec.ECDSA(pre))
    if isinstance(key, rsa.RSAPublicKey):
        schemes: list[padding.AsymmetricPadding] = [padding.PKCS1v15(), _pss(algorithm, padding.PSS.AUTO)]
        return any(_ok(key.verify, signature, digest, scheme, pre) for scheme in schemes)
    return False


def verify_jose(key: PublicKey, alg: str, signature: bytes, data: bytes) -> bool:
    """A JOSE/COSE signature (ES*: raw r||s; PS*: RSASSA-PSS, salt as long as the hash)."""
    algorithm = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
    if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        if len(signature) != 2 * size:
            return False
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        return _ok(key.verify, utils.encode_dss_signature(r, s), data, ec.ECDSA(algorithm))
    if alg.startswith("PS") and isinstance(key, rsa.RSAPublicKey):
        return _ok(key.verify, signature, data, _pss(algorithm, algorithm.digest_size), algorithm)
    return False


def notary_alg(key: PublicKey) -> str | None:
    """The one signing algorithm the Notary Project allows for a certificate's key (its size picks the
    hash), so that an envelope's `alg` can be checked against it (no algorithm substitution)."""
    if isinstance(key, rsa.RSAPublicKey):
        return {2048: "PS256", 3072: "PS384", 4096: "PS512"}.get(key.key_size)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name)
    return None


def _hashes_for_curve(key: ec.EllipticCurvePublicKey) -> list[type[hashes.HashAlgorithm]]:
    own = _CURVE_HASH[key.curve.name]
    return [hashes.SHA256] if own is hashes.SHA256 else [hashes.SHA256, own]


def _pss(algorithm: hashes.HashAlgorithm, salt: Any) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(algorithm), salt_length=salt)


def _ok(check: Callable[..., object], *args: Any) -> bool:
    try:
        check(*args)
    except (InvalidSignature, ValueError):
        return False
    return True
