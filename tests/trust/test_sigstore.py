"""Sigstore bundle v0.3 referrers, key-based (sigstore/protobuf-specs bundle, DSSE protocol), built
independently in tests/support/signatures.py, against the verifier."""

from __future__ import annotations

import base64
import json
import time

import pytest

from dockyard.services.trust import formats
from dockyard.services.trust.model import (
    SignatureFormat,
    SignatureState,
    TrustedCertificate,
    TrustedKey,
    TrustMaterial,
)
from tests.support.signatures import (
    KEY_KINDS,
    TestCA,
    make_sigstore_bundle,
    new_key,
    public_pem,
    sha256_digest,
    tamper_blob,
)

IMAGE = sha256_digest(b"an image manifest")
OTHER = sha256_digest(b"another image manifest")
NOW = time.time()


def trust(name: str, key: object) -> TrustMaterial:
    return TrustMaterial(keys=(TrustedKey(name, public_pem(key)),))  # type: ignore[arg-type]


def check(signed, material, subject=IMAGE):  # type: ignore[no-untyped-def]
    return formats.verify(signed.artifact(SignatureFormat.SIGSTORE_BUNDLE), subject, material, NOW)


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_dsse_bundle_verifies_for_each_key_type(kind: str) -> None:
    key = new_key(kind)
    [verdict] = check(make_sigstore_bundle(IMAGE, key), trust("release", key))
    assert (verdict.state, verdict.signer) == (SignatureState.VERIFIED, "release"), verdict.message


@pytest.mark.parametrize("kind", ["ecdsa-p256", "rsa-2048"])
def test_message_signature_bundle_verifies(kind: str) -> None:
    key = new_key(kind)
    [verdict] = check(make_sigstore_bundle(IMAGE, key, kind="message"), trust("release", key))
    assert verdict.state is SignatureState.VERIFIED, verdict.message


def test_wrong_key_is_untrusted() -> None:
    [verdict] = check(make_sigstore_bundle(IMAGE, new_key()), trust("release", new_key()))
    assert verdict.state is SignatureState.UNTRUSTED


@pytest.mark.parametrize("kind", ["dsse", "message"])
def test_statement_about_another_digest_is_invalid(kind: str) -> None:
    key = new_key()
    signed = make_sigstore_bundle(IMAGE, key, kind=kind, statement_digest=OTHER)
    [verdict] = check(signed, trust("release", key))
    assert verdict.state is SignatureState.INVALID
    assert IMAGE in verdict.message


def _swap_statement(body: bytes) -> bytes:
    bundle = json.loads(body)
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"] = {"evil": True}
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(bundle).encode()


def test_tampered_statement_does_not_verify() -> None:
    key = new_key()
    signed = tamper_blob(make_sigstore_bundle(IMAGE, key), _swap_statement)
    [verdict] = check(signed, trust("release", key))
    assert verdict.state is SignatureState.UNTRUSTED


def test_tampered_bundle_under_its_old_digest_is_invalid() -> None:
    key = new_key()
    signed = tamper_blob(make_sigstore_bundle(IMAGE, key), _swap_statement, keep_digest=True)
    [verdict] = check(signed, trust("release", key))
    assert verdict.state is SignatureState.INVALID


def test_keyless_bundle_is_untrusted_with_a_reason() -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf()
    signed = make_sigstore_bundle(IMAGE, leaf.key, keyless_certificate=leaf.cert)
    [verdict] = check(signed, trust("release", leaf.key))
    assert verdict.state is SignatureState.UNTRUSTED
    assert "keyless" in verdict.message


def test_certificate_bundle_chaining_to_a_trusted_ca_verifies() -> None:
    ca, stranger = TestCA.create(), TestCA.create("Another Root")
    leaf = ca.issue_leaf()
    signed = make_sigstore_bundle(IMAGE, leaf.key, keyless_certificate=leaf.cert)
    anchored = TrustMaterial(certificates=(TrustedCertificate("private-ca", ca.root.pem),))
    [verdict] = check(signed, anchored)
    assert (verdict.state, verdict.signer) == (SignatureState.VERIFIED, leaf.subject), verdict.message
    assert verdict.expires_at == pytest.approx(leaf.cert.not_valid_after_utc.timestamp())
    [verdict] = check(signed, TrustMaterial(certificates=(TrustedCertificate("other", stranger.root.pem),)))
    assert verdict.state is SignatureState.UNTRUSTED
    forged = make_sigstore_bundle(IMAGE, ca.issue_leaf().key, keyless_certificate=leaf.cert)
    [verdict] = check(forged, anchored)
    assert verdict.state is SignatureState.INVALID


def test_not_a_bundle_is_invalid() -> None:
    key = new_key()
    signed = tamper_blob(make_sigstore_bundle(IMAGE, key), lambda _: b'{"mediaType": "something/else"}')
    [verdict] = check(signed, trust("release", key))
    assert verdict.state is SignatureState.INVALID


def test_classify_and_signed_digest() -> None:
    signed = make_sigstore_bundle(IMAGE, new_key())
    assert formats.classify(signed.media_type, signed.manifest, None) is SignatureFormat.SIGSTORE_BUNDLE
    assert formats.signed_digest(SignatureFormat.SIGSTORE_BUNDLE, signed.manifest, None) == IMAGE
    # Without artifactType, the layer's media type is enough.
    manifest = json.loads(signed.manifest)
    del manifest["artifactType"]
    assert formats.classify(signed.media_type, json.dumps(manifest).encode(), None) is SignatureFormat.SIGSTORE_BUNDLE
