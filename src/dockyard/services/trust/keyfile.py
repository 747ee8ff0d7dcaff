"""cosign's key files (sigstore/cosign pkg/cosign/keys.go; secure-systems-lab/go-securesystemslib
encrypted): the public key as a PKIX PEM `PUBLIC KEY`; the private key as an `ENCRYPTED SIGSTORE
PRIVATE KEY` PEM whose body is JSON — scrypt (N=2^16, r=8, p=1, 32-byte salt) derives a key from
the password, NaCl secretbox (24-byte nonce) seals the PKCS#8 DER of the key. Plain PKCS#8, EC and
RSA PEM private keys are read too (`cosign import-key-pair` accepts those). Pure: bytes in, bytes out."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
SIGSTORE_PEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PEM = "ENCRYPTED COSIGN PRIVATE KEY"  # cosign before v2: the same contents
# The parameter sets go-securesystemslib reads (legacy, standard, OWASP); others are refused so that
# a crafted file cannot make the KDF take minutes or gigabytes.
SCRYPT_PARAMS = ({"N": 32768, "r": 8, "p": 1}, {"N": 65536, "r": 8, "p": 1}, {"N": 131072, "r": 8, "p": 1})


class KeyFileError(ValueError):
    """The key file cannot be read (format, or a wrong password)."""


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes  # encrypted, cosign's format
    public_pem: bytes


def generate(password: bytes) -> KeyPair:
    """A new ECDSA P-256 key pair, as `cosign generate-key-pair` writes it."""
    key = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(encrypt(key, password), public_pem(key))


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def encrypt(key: PrivateKey, password: bytes) -> bytes:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    params = SCRYPT_PARAMS[1]
    salt, nonce = os.urandom(32), os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_derive(password, salt, params))
    sealed = box.encrypt(der, nonce).ciphertext  # Go's secretbox.Seal: the MAC, then the ciphertext
    document = {
        "kdf": {"name": "scrypt", "params": params, "salt": _b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(sealed),
    }
    return _pem(SIGSTORE_PEM, json.dumps(document, separators=(",", ":")).encode())


def load_private_key(pem: bytes, password: bytes | None) -> PrivateKey:
    """A private key from cosign's encrypted format or a plain PEM."""
    kind, body = _unpem(pem)
    if kind in (SIGSTORE_PEM, COSIGN_PEM):
        der = _decrypt(body, password or b"")
        key = serialization.load_der_private_key(der, None)
    else:
        try:
            key = serialization.load_pem_private_key(pem, password or None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(f"cannot read the private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"unsupported key type {type(key).__name__}")
    return key


def _decrypt(body: bytes, password: bytes) -> bytes:
    try:
        document = json.loads(body)
        kdf, cipher = document["kdf"], document["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise KeyFileError("unknown key encryption")
        params = {"N": kdf["params"]["N"], "r": kdf["params"]["r"], "p": kdf["params"]["p"]}
        salt, nonce = base64.b64decode(kdf["salt"]), base64.b64decode(cipher["nonce"])
        sealed = base64.b64decode(document["ciphertext"])
    except (ValueError, KeyError, TypeError):
        raise KeyFileError("the encrypted private key is malformed") from None
    if params not in SCRYPT_PARAMS:
        raise KeyFileError("unsupported scrypt parameters")
    try:
        return nacl.secret.SecretBox(_derive(password, salt, params)).decrypt(sealed, nonce)
    except (nacl.exceptions.CryptoError, ValueError):
        raise KeyFileError("cannot decrypt the private key: wrong password?") from None


def _derive(password: bytes, salt: bytes, params: dict[str, int]) -> bytes:
    return Scrypt(salt=salt, length=32, n=params["N"], r=params["r"], p=params["p"]).derive(password)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pem(kind: str, body: bytes) -> bytes:
    text = base64.b64encode(body).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n").encode()


def _unpem(pem: bytes) -> tuple[str, bytes]:
    text = pem.decode("ascii", "replace").strip()
    first = text.splitlines()[0] if text else ""
    if not first.startswith("-----BEGIN ") or not first.endswith("-----"):
        raise KeyFileError("not a PEM file")
    kind = first[len("-----BEGIN ") : -5]
    end = f"-----END {kind}-----"
    if end not in text:
        raise KeyFileError(f"PEM block {kind} is not closed")
    inner = text[len(first) : text.index(end)]
    try:
        return kind, base64.b64decode("".join(inner.split()), validate=True)
    except ValueError:
        raise KeyFileError("the PEM body is not base64") from None
