"""Notary Project signatures, JWS and COSE envelopes (notaryproject/specifications
signature-envelope-jws.md, signature-envelope-cose.md, trust-store-trust-policy.md), built
independently in tests/support/signatures.py, against the verifier."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from dockyard.services.trust import formats
from dockyard.services.trust.model import (
    SignatureFormat,
    SignatureState,
    TrustedCertificate,
    TrustMaterial,
    Verdict,
)
from tests.support.signatures import (
    Issued,
    SignedManifest,
    TestCA,
    make_notation_cose,
    make_notation_jws,
    sha256_digest,
    tamper_blob,
)

IMAGE = sha256_digest(b"an image manifest")
OTHER = sha256_digest(b"another image manifest")
NOW = time.time()
UTC = dt.UTC

Maker = Callable[..., SignedManifest]
ENVELOPES = pytest.mark.parametrize("make", [make_notation_jws, make_notation_cose], ids=["jws", "cose"])


def store(ca: TestCA, *identities: str, name: str = "acme") -> TrustMaterial:
    return TrustMaterial(certificates=(TrustedCertificate(name, ca.root.pem, tuple(identities)),))


def check(signed: SignedManifest, material: TrustMaterial, now: float = NOW) -> Verdict:
    [verdict] = formats.verify(signed.artifact(SignatureFormat.NOTATION), IMAGE, material, now)
    return verdict


@ENVELOPES
@pytest.mark.parametrize("kind", ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-2048", "rsa-3072", "rsa-4096"])
def test_each_key_type_verifies(make: Maker, kind: str) -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf(key_kind=kind)
    verdict = check(make(IMAGE, leaf, ca.chain(leaf)), store(ca))
    assert verdict.state is SignatureState.VERIFIED, verdict.message
    assert verdict.signer == leaf.subject
    assert verdict.expires_at == pytest.approx(
        min(leaf.cert.not_valid_after_utc, ca.root.cert.not_valid_after_utc).timestamp()
    )


@ENVELOPES
def test_intermediate_chain_and_rsa_root_verify(make: Maker) -> None:
    ca = TestCA.create(key_kind="rsa-3072")
    ca.add_intermediate()
    leaf = ca.issue_leaf()
    assert len(ca.chain(leaf)) == 3
    assert check(make(IMAGE, leaf, ca.chain(leaf)), store(ca)).state is SignatureState.VERIFIED


@ENVELOPES
def test_chain_without_the_root_verifies_against_the_store(make: Maker) -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf()
    assert check(make(IMAGE, leaf, [leaf.cert]), store(ca)).state is SignatureState.VERIFIED


@ENVELOPES
def test_trusted_identity_matches_a_partial_subject(make: Maker) -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf({"C": "US", "ST": "WA", "O": "acme, inc", "OU": "builds", "CN": "ci"})
    signed = make(IMAGE, leaf, ca.chain(leaf))
    ok = check(signed, store(ca, r"x509.subject: C=US, ST=WA, O=acme\, inc"))
    assert ok.state is SignatureState.VERIFIED, ok.message
    wrong = check(signed, store(ca, "x509.subject: C=US, ST=WA, O=other"))
    assert wrong.state is SignatureState.UNTRUSTED
    assert "trusted identity" in wrong.message
    assert check(signed, store(ca, "C=US, ST=OR, O=acme\\, inc", "C=US, ST=WA, OU=builds")).state is (
        SignatureState.VERIFIED
    )


@ENVELOPES
def test_chain_to_an_untrusted_ca_is_untrusted(make: Maker) -> None:
    ca, stranger = TestCA.create(), TestCA.create("Another Root")
    leaf = ca.issue_leaf()
    verdict = check(make(IMAGE, leaf, ca.chain(leaf)), store(stranger))
    assert verdict.state is SignatureState.UNTRUSTED
    assert verdict.signer == leaf.subject
    assert check(make(IMAGE, leaf, ca.chain(leaf)), TrustMaterial()).state is SignatureState.UNTRUSTED


@ENVELOPES
def test_expired_signing_certificate_is_expired(make: Maker) -> None:
    ca = TestCA.create()
    past = dt.datetime.now(UTC) - dt.timedelta(days=2)
    leaf = ca.issue_leaf(not_before=past - dt.timedelta(days=1), not_after=past)
    verdict = check(make(IMAGE, leaf, ca.chain(leaf), signing_time=past - dt.timedelta(hours=1)), store(ca))
    assert verdict.state is SignatureState.EXPIRED
    assert "expired" in verdict.message


@ENVELOPES
def test_verified_until_the_certificate_expires(make: Maker) -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf()
    signed = make(IMAGE, leaf, ca.chain(leaf))
    later = leaf.cert.not_valid_after_utc.timestamp() + 1
    assert check(signed, store(ca)).state is SignatureState.VERIFIED
    assert check(signed, store(ca), now=later).state is SignatureState.EXPIRED


@ENVELOPES
def test_signature_expiry(make: Maker) -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf()
    soon = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    signed = make(IMAGE, leaf, ca.chain(leaf), expiry=soon)
    verdict = check(signed, store(ca))
    assert verdict.state is SignatureState.VERIFIED, verdict.message
    assert verdict.expires_at == soon.timestamp()
    assert check(signed, store(ca), now=soon.timestamp() + 1).state is SignatureState.EXPIRED


@ENVELOPES
def test_payload_for_another_digest_is_invalid(make: Maker) -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf()
    verdict = check(make(IMAGE, leaf, ca.chain(leaf), payload_digest=OTHER), store(ca))
    assert verdict.state is SignatureState.INVALID
    assert OTHER in verdict.message


@ENVELOPES
def test_leaf_not_for_code_signing_is_invalid(make: Maker) -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf(code_signing=False)
    assert check(make(IMAGE, leaf, ca.chain(leaf)), store(ca)).state is SignatureState.INVALID


@ENVELOPES
def test_signature_by_another_key_than_the_leaf_is_invalid(make: Maker) -> None:
    ca = TestCA.create()
    leaf, impostor = ca.issue_leaf(), ca.issue_leaf()
    forged = Issued(leaf.cert, impostor.key)  # leaf's certificate, another key
    verdict = check(make(IMAGE, forged, ca.chain(leaf)), store(ca))
    assert verdict.state is SignatureState.INVALID


@ENVELOPES
def test_broken_chain_is_invalid(make: Maker) -> None:
    ca, stranger = TestCA.create(), TestCA.create("Another Root")
    leaf = ca.issue_leaf()
    verdict = check(make(IMAGE, leaf, [leaf.cert, stranger.root.cert]), store(ca))
    assert verdict.state is SignatureState.INVALID
    assert "not issued by" in verdict.message


def _edit_jws_payload(body: bytes) -> bytes:
    envelope = json.loads(body)
    payload = json.loads(base64.urlsafe_b64decode(envelope["payload"] + "=="))
    payload["targetArtifact"]["size"] += 1
    envelope["payload"] = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return json.dumps(envelope).encode()


def test_tampered_jws_payload_is_invalid() -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf()
    signed = tamper_blob(make_notation_jws(IMAGE, leaf, ca.chain(leaf)), _edit_jws_payload)
    verdict = check(signed, store(ca))
    assert verdict.state is SignatureState.INVALID
    assert "does not verify" in verdict.message


def test_tampered_cose_payload_is_invalid() -> None:
    import cbor2

    def edit(body: bytes) -> bytes:
        parts = list(cbor2.loads(body).value)
        parts[2] = parts[2].replace(b'"size": 1234', b'"size": 1235')
        return bytes(cbor2.dumps(cbor2.CBORTag(18, parts)))

    ca = TestCA.create()
    leaf = ca.issue_leaf()
    verdict = check(tamper_blob(make_notation_cose(IMAGE, leaf, ca.chain(leaf)), edit), store(ca))
    assert verdict.state is SignatureState.INVALID


def test_algorithm_substitution_is_invalid() -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf(key_kind="ecdsa-p384")
    verdict = check(make_notation_jws(IMAGE, leaf, ca.chain(leaf), alg="ES256"), store(ca))
    assert verdict.state is SignatureState.INVALID
    assert "alg" in verdict.message


def _edit_jws_header(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def edit(body: bytes) -> bytes:
        envelope = json.loads(body)
        protected = json.loads(base64.urlsafe_b64decode(envelope["protected"] + "=="))
        change(protected)
        envelope["protected"] = base64.urlsafe_b64encode(json.dumps(protected).encode()).rstrip(b"=").decode()
        return json.dumps(envelope).encode()

    return edit


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h.update(crit=[]),
        lambda h: h.update(crit=["io.cncf.notary.signingScheme", "io.cncf.notary.verificationPlugin"]),
        lambda h: h.update(cty="application/json"),
        lambda h: h.pop("io.cncf.notary.signingTime"),
        lambda h: h.update({"io.cncf.notary.signingScheme": "x509.other"}),
    ],
    ids=["no-crit", "unknown-crit", "cty", "no-signing-time", "scheme"],
)
def test_header_rules_are_enforced(change: Callable[[dict[str, Any]], None]) -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf()
    signed = tamper_blob(make_notation_jws(IMAGE, leaf, ca.chain(leaf)), _edit_jws_header(change))
    assert check(signed, store(ca)).state is SignatureState.INVALID


@ENVELOPES
def test_classify_and_signed_digest(make: Maker) -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf()
    signed = make(IMAGE, leaf, ca.chain(leaf))
    assert formats.classify(signed.media_type, signed.manifest, None) is SignatureFormat.NOTATION
    assert formats.signed_digest(SignatureFormat.NOTATION, signed.manifest, None) == IMAGE
    # The older form: no artifactType, the config's media type says it.
    manifest = json.loads(signed.manifest)
    del manifest["artifactType"]
    manifest["config"]["mediaType"] = "application/vnd.cncf.notary.signature"
    assert formats.classify(signed.media_type, json.dumps(manifest).encode(), None) is SignatureFormat.NOTATION


def test_garbage_envelopes_are_invalid() -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf()
    for make in (make_notation_jws, make_notation_cose):
        signed = tamper_blob(make(IMAGE, leaf, ca.chain(leaf)), lambda _: b"\xff\x00garbage")
        assert check(signed, store(ca)).state is SignatureState.INVALID


def test_trust_material_checks_for_the_api() -> None:
    from dockyard.services.trust.formats import x509chain

    ca = TestCA.create("Checked Root")
    assert "CN=Checked Root" in x509chain.check_trust_certificate(ca.root.pem)
    with pytest.raises(ValueError, match="not a CA"):
        x509chain.check_trust_certificate(ca.issue_leaf().pem)
    with pytest.raises(ValueError):
        x509chain.check_trust_certificate("garbage")
    x509chain.check_identity("x509.subject: C=US, ST=WA, O=acme")
    x509chain.check_identity("*")
    for bad in ("", "x509.subject:", "C=US, nonsense", "C="):
        with pytest.raises(ValueError):
            x509chain.check_identity(bad)
