"""Signatures in every format Dockyard verifies, built here from the specifications with `cryptography`
alone (never with Dockyard's own verifier or signer code), so that tests check the verifier against an
independent reading of each spec:

- `make_cosign_signature`: sigstore/cosign specs/SIGNATURE_SPEC.md (tag scheme, simple signing);
- `make_sigstore_bundle`: sigstore/protobuf-specs bundle v0.3 (messageSignature or DSSE envelope);
- `make_notation_jws`, `make_notation_cose`: notaryproject/specifications signature-envelope-jws.md and
  signature-envelope-cose.md;
- `TestCA`: a small CA issuing code-signing chains for the Notary Project signatures.

Each `make_*` returns a `SignedManifest`: the signature manifest's bytes, digest and media type, the
blobs it names, and (cosign) the tag it is stored under. `.artifact()` gives the `SignatureArtifact`
the verifier takes. Keys: `new_key("ecdsa-p256" | "ecdsa-p384" | "rsa-2048" | "rsa-3072" | "rsa-4096" |
"ed25519")`, `public_pem(key)`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockyard.services.trust.model import SignatureArtifact, SignatureFormat

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
KEY_KINDS = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
NOTARY = "application/vnd.cncf.notary.signature"
NOTARY_PAYLOAD = "application/vnd.cncf.notary.payload.v1+json"

_RSA_CACHE: dict[int, rsa.RSAPrivateKey] = {}


def new_key(kind: str = "ecdsa-p256", fresh: bool = False) -> PrivateKey:
    """A private key of `kind`. RSA keys are slow to make: one per size is reused unless `fresh`."""
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ecdsa-p521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind.startswith("rsa-"):
        bits = int(kind[4:])
        if fresh or bits not in _RSA_CACHE:
            key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            if fresh:
                return key
            _RSA_CACHE[bits] = key
        return _RSA_CACHE[bits]
    raise ValueError(f"unknown key kind {kind}")


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class SignedManifest:
    media_type: str
    manifest: bytes
    blobs: dict[str, bytes]
    tag: str | None = None

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    def artifact(self, fmt: SignatureFormat) -> SignatureArtifact:
        return SignatureArtifact(format=fmt, digest=self.digest, manifest=self.manifest, blobs=dict(self.blobs))


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


# --- cosign ---------------------------------------------------------------------------------------


def cosign_payload(image_digest: str, docker_reference: str = "registry.example/team/app") -> bytes:
    """The simple-signing payload as cosign writes it (Go's encoding/json: no spaces, `optional` null)."""
    critical = (
        f'{{"identity":{{"docker-reference":"{docker_reference}"}},'
        f'"image":{{"docker-manifest-digest":"{image_digest}"}},"type":"cosign container image signature"}}'
    )
    return ('{"critical":' + critical + ',"optional":null}').encode()


def sign_cosign(key: PrivateKey, payload: bytes, scheme: str = "default") -> bytes:
    """A cosign signature over `payload`: ECDSA DER (SHA-256, or with scheme "curve" the curve's own
    hash), RSA PKCS#1 v1.5 SHA-256 (scheme "pss": RSA-PSS), Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm: hashes.HashAlgorithm = hashes.SHA256()
        if scheme == "curve":
            algorithm = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]
        return key.sign(payload, ec.ECDSA(algorithm))
    if isinstance(key, rsa.RSAPrivateKey):
        if scheme == "pss":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
            return key.sign(payload, pss, hashes.SHA256())
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(payload)


def cosign_layer(
    image_digest: str,
    key: PrivateKey,
    docker_reference: str = "registry.example/team/app",
    scheme: str = "default",
    payload: bytes | None = None,
) -> tuple[dict[str, Any], bytes]:
    """One signature layer (descriptor with the signature annotation) and its payload blob."""
    body = payload if payload is not None else cosign_payload(image_digest, docker_reference)
    signature = base64.b64encode(sign_cosign(key, body, scheme)).decode()
    descriptor = _descriptor(SIMPLE_SIGNING, body, annotations={"dev.cosignproject.cosign/signature": signature})
    return descriptor, body


def cosign_config(payload_digests: list[str]) -> bytes:
    """The config blob cosign writes (go-containerregistry's ConfigFile of an empty image with one
    layer per signature)."""
    return json.dumps(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"} for _ in payload_digests],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": payload_digests},
            "config": {},
        },
        separators=(",", ":"),
    ).encode()


def cosign_manifest(image_digest: str, layers: list[tuple[dict[str, Any], bytes]]) -> SignedManifest:
    config = cosign_config([descriptor["digest"] for descriptor, _ in layers])
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(OCI_CONFIG, config),
        "layers": [descriptor for descriptor, _ in layers],
    }
    blobs = {sha256_digest(config): config, **{descriptor["digest"]: body for descriptor, body in layers}}
    return SignedManifest(OCI_MANIFEST, json.dumps(manifest).encode(), blobs, image_digest.replace(":", "-") + ".sig")


def make_cosign_signature(
    image_digest: str,
    keys: PrivateKey | list[PrivateKey],
    docker_reference: str = "registry.example/team/app",
    scheme: str = "default",
) -> SignedManifest:
    """A `sha256-<hex>.sig` manifest with one signature layer per key."""
    signers = keys if isinstance(keys, list) else [keys]
    return cosign_manifest(image_digest, [cosign_layer(image_digest, key, docker_reference, scheme) for key in signers])


# --- sigstore bundle ------------------------------------------------------------------------------


def dsse_pae(payload_type: str, payload: bytes) -> bytes:
    return b"DSSEv1 " + b" ".join(
        [str(len(payload_type.encode())).encode(), payload_type.encode(), str(len(payload)).encode(), payload]
    )


def make_sigstore_bundle(
    subject_digest: str,
    key: PrivateKey,
    kind: str = "dsse",
    subject_size: int = 1234,
    statement_digest: str | None = None,
    keyless_certificate: x509.Certificate | None = None,
) -> SignedManifest:
    """A cosign v3-style referrer: an OCI manifest (artifactType the bundle media type, empty config,
    one bundle layer, `subject` the image) whose bundle carries a DSSE in-toto statement about the
    image (`kind="dsse"`) or a messageSignature over the manifest digest (`kind="message"`).
    `statement_digest` names another digest inside the signed content."""
    named = statement_digest or subject_digest
    if kind == "dsse":
        statement = {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "registry.example/team/app", "digest": {"sha256": named.split(":", 1)[1]}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {},
        }
        payload = json.dumps(statement).encode()
        signature = sign_cosign(key, dsse_pae("application/vnd.in-toto+json", payload))
        content: dict[str, Any] = {
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": "application/vnd.in-toto+json",
                "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
            }
        }
    else:
        digest = bytes.fromhex(named.split(":", 1)[1])
        if isinstance(key, ec.EllipticCurvePrivateKey):
            signature = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        elif isinstance(key, rsa.RSAPrivateKey):
            signature = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        else:
            raise ValueError("Ed25519 cannot sign a digest")
        content = {
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(digest).decode()},
                "signature": base64.b64encode(signature).decode(),
            }
        }
    material: dict[str, Any] = {"publicKey": {"hint": ""}, "tlogEntries": []}
    if keyless_certificate is not None:
        der = keyless_certificate.public_bytes(serialization.Encoding.DER)
        material = {"certificate": {"rawBytes": base64.b64encode(der).decode()}, "tlogEntries": []}
    bundle = json.dumps({"mediaType": BUNDLE, "verificationMaterial": material, **content}).encode()
    return _referrer(BUNDLE, OCI_EMPTY, b"{}", _descriptor(BUNDLE, bundle), bundle, subject_digest, subject_size)


def _referrer(
    artifact_type: str,
    config_type: str,
    config: bytes,
    layer: dict[str, Any],
    body: bytes,
    subject_digest: str,
    subject_size: int,
) -> SignedManifest:
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": _descriptor(config_type, config),
        "layers": [layer],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject_size},
    }
    return SignedManifest(
        OCI_MANIFEST, json.dumps(manifest).encode(), {sha256_digest(config): config, layer["digest"]: body}
    )


# --- a test CA ------------------------------------------------------------------------------------


def _name(subject: str | dict[str, str]) -> x509.Name:
    oids = {
        "C": NameOID.COUNTRY_NAME,
        "ST": NameOID.STATE_OR_PROVINCE_NAME,
        "L": NameOID.LOCALITY_NAME,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "CN": NameOID.COMMON_NAME,
    }
    attrs = {"CN": subject} if isinstance(subject, str) else subject
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in attrs.items()])


def _usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _sign_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@dataclass
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def subject(self) -> str:
        return self.cert.subject.rfc4514_string()


@dataclass
class TestCA:
    """A root CA (and optional intermediates) issuing code-signing leaves. `chain(leaf)` is the x5c
    order the Notary Project wants: leaf, intermediates, root."""

    root: Issued
    intermediates: list[Issued] = field(default_factory=list)

    __test__ = False  # not a pytest test class

    @classmethod
    def create(cls, name: str = "Dockyard Test Root", key_kind: str = "ecdsa-p256", days: float = 30) -> TestCA:
        key = new_key(key_kind)
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name({"C": "US", "ST": "WA", "O": "Dockyard Test", "CN": name}))
            .issuer_name(_name({"C": "US", "ST": "WA", "O": "Dockyard Test", "CN": name}))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(ca=True), critical=True)
            .sign(key, _sign_hash(key))
        )
        return cls(Issued(cert, key))

    @property
    def issuer(self) -> Issued:
        return self.intermediates[-1] if self.intermediates else self.root

    def add_intermediate(self, name: str = "Dockyard Test Intermediate", key_kind: str = "ecdsa-p256") -> Issued:
        issued = self._issue(_name({"C": "US", "ST": "WA", "O": "Dockyard Test", "CN": name}), new_key(key_kind), True)
        self.intermediates.append(issued)
        return issued

    def issue_leaf(
        self,
        subject: dict[str, str] | None = None,
        key_kind: str = "ecdsa-p256",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        code_signing: bool = True,
    ) -> Issued:
        attrs = subject or {"C": "US", "ST": "WA", "O": "Dockyard Test", "CN": "builder"}
        return self._issue(_name(attrs), new_key(key_kind), False, not_before, not_after, code_signing)

    def chain(self, leaf: Issued) -> list[x509.Certificate]:
        return [leaf.cert, *(i.cert for i in reversed(self.intermediates)), self.root.cert]

    def _issue(
        self,
        name: x509.Name,
        key: PrivateKey,
        ca: bool,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        code_signing: bool = True,
    ) -> Issued:
        now = dt.datetime.now(dt.UTC)
        issuer = self.issuer
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(hours=1))
            .not_valid_after(not_after or now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(_usage(ca), critical=True)
        )
        if not ca:
            purpose = ExtendedKeyUsageOID.CODE_SIGNING if code_signing else ExtendedKeyUsageOID.SERVER_AUTH
            builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        return Issued(builder.sign(issuer.key, _sign_hash(issuer.key)), key)


# --- Notary Project -------------------------------------------------------------------------------


def notary_alg(key: PrivateKey) -> tuple[str, int, hashes.HashAlgorithm]:
    """(JWS alg, COSE alg, hash) as signature-envelope-*.md map them from the key type and size."""
    if isinstance(key, rsa.RSAPrivateKey):
        return {
            2048: ("PS256", -37, hashes.SHA256()),
            3072: ("PS384", -38, hashes.SHA384()),
            4096: ("PS512", -39, hashes.SHA512()),
        }[key.key_size]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {
            256: ("ES256", -7, hashes.SHA256()),
            384: ("ES384", -35, hashes.SHA384()),
            521: ("ES512", -36, hashes.SHA512()),
        }[key.curve.key_size]
    raise ValueError("the Notary Project does not sign with Ed25519")


def _jose_sign(key: PrivateKey, data: bytes) -> bytes:
    """RSASSA-PSS (salt = hash length) or ECDSA as the raw r||s that JOSE and COSE use."""
    _, _, algorithm = notary_alg(key)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size), algorithm)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(algorithm)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def notary_payload(subject_digest: str, subject_size: int = 1234) -> bytes:
    return json.dumps(
        {"targetArtifact": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject_size}}
    ).encode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_notation_jws(
    subject_digest: str,
    leaf: Issued,
    chain: list[x509.Certificate],
    signing_time: dt.datetime | None = None,
    expiry: dt.datetime | None = None,
    payload_digest: str | None = None,
    alg: str | None = None,
    subject_size: int = 1234,
) -> SignedManifest:
    """A notation JWS signature referrer (signing scheme notary.x509). `payload_digest` names another
    digest in the signed payload; `alg` overrides the header's algorithm (substitution tests)."""
    signed_at = signing_time or dt.datetime.now(dt.UTC)
    protected: dict[str, Any] = {
        "alg": alg or notary_alg(leaf.key)[0],
        "cty": NOTARY_PAYLOAD,
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": signed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    critical = ["io.cncf.notary.signingScheme"]
    if expiry is not None:
        protected["io.cncf.notary.expiry"] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
        critical.append("io.cncf.notary.expiry")
    protected["crit"] = critical
    protected_b64 = _b64url(json.dumps(protected).encode())
    payload_b64 = _b64url(notary_payload(payload_digest or subject_digest, subject_size))
    signature = _jose_sign(leaf.key, f"{protected_b64}.{payload_b64}".encode())
    envelope = {
        "payload": payload_b64,
        "protected": protected_b64,
        "header": {
            "x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain],
            "io.cncf.notary.signingAgent": "dockyard-tests/1.0",
        },
        "signature": _b64url(signature),
    }
    body = json.dumps(envelope).encode()
    layer = _descriptor("application/jose+json", body)
    return _referrer(NOTARY, OCI_EMPTY, b"{}", layer, body, subject_digest, subject_size)


def make_notation_cose(
    subject_digest: str,
    leaf: Issued,
    chain: list[x509.Certificate],
    signing_time: dt.datetime | None = None,
    expiry: dt.datetime | None = None,
    payload_digest: str | None = None,
    subject_size: int = 1234,
) -> SignedManifest:
    """A notation COSE_Sign1_Tagged signature referrer (signing scheme notary.x509)."""
    signed_at = signing_time or dt.datetime.now(dt.UTC)
    protected: dict[Any, Any] = {
        1: notary_alg(leaf.key)[1],
        2: ["io.cncf.notary.signingScheme"],
        3: NOTARY_PAYLOAD,
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": cbor2.CBORTag(1, int(signed_at.timestamp())),
    }
    if expiry is not None:
        protected["io.cncf.notary.expiry"] = cbor2.CBORTag(1, int(expiry.timestamp()))
        protected[2].append("io.cncf.notary.expiry")
    protected_raw = cbor2.dumps(protected)
    payload = notary_payload(payload_digest or subject_digest, subject_size)
    to_be_signed = cbor2.dumps(["Signature1", protected_raw, b"", payload])
    signature = _jose_sign(leaf.key, to_be_signed)
    unprotected = {
        33: [c.public_bytes(serialization.Encoding.DER) for c in chain],
        "io.cncf.notary.signingAgent": "dockyard-tests/1.0",
    }
    body = cbor2.dumps(cbor2.CBORTag(18, [protected_raw, unprotected, payload, signature]))
    layer = _descriptor("application/cose", body)
    return _referrer(NOTARY, OCI_EMPTY, b"{}", layer, body, subject_digest, subject_size)


def tamper_blob(signed: SignedManifest, mutate: Any, keep_digest: bool = False) -> SignedManifest:
    """`signed` with its signature blob (the last layer) changed by `mutate(bytes) -> bytes`. With
    `keep_digest` the manifest still names the old digest (a blob that fails its digest); otherwise
    the manifest is rewritten to name the new blob (a consistent forgery the signature must catch)."""
    manifest = json.loads(signed.manifest)
    layer = manifest["layers"][-1]
    old = layer["digest"]
    new_body = mutate(signed.blobs[old])
    blobs = {k: v for k, v in signed.blobs.items() if k != old}
    if keep_digest:
        blobs[old] = new_body
    else:
        layer["digest"], layer["size"] = sha256_digest(new_body), len(new_body)
        blobs[layer["digest"]] = new_body
    return SignedManifest(signed.media_type, json.dumps(manifest).encode(), blobs, signed.tag)
