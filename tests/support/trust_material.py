"""Trust material for the trust API tests: public keys of every accepted (and some refused) kind, and
CA certificates, made with `cryptography` (no fixture files)."""

from __future__ import annotations

import datetime as dt
import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import NameOID


def public_pem(key: object) -> str:
    return (
        key.public_key()
        .public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )


@functools.cache
def _rsa(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, bits)


def ec_pem(curve: ec.EllipticCurve | None = None) -> str:
    return public_pem(ec.generate_private_key(curve or ec.SECP256R1()))


def rsa_pem(bits: int = 2048) -> str:
    return public_pem(_rsa(bits))


def ed25519_pem() -> str:
    return public_pem(ed25519.Ed25519PrivateKey.generate())


@functools.cache
def dsa_pem() -> str:
    return public_pem(dsa.generate_private_key(2048))


def ca_pem(common_name: str = "Test Root CA", days: int = 365, ca: bool = True) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()
