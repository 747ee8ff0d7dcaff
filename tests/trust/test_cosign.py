"""cosign tag-scheme signatures (sigstore/cosign specs/SIGNATURE_SPEC.md), built independently in
tests/support/signatures.py, against the verifier."""

from __future__ import annotations

import json
import time

import pytest

from dockyard.services.trust import formats
from dockyard.services.trust.formats.cosign import simple_signing_payload
from dockyard.services.trust.model import SignatureFormat, SignatureState, TrustedKey, TrustMaterial
from tests.support.signatures import (
    KEY_KINDS,
    cosign_layer,
    cosign_manifest,
    cosign_payload,
    make_cosign_signature,
    new_key,
    public_pem,
    sha256_digest,
    tamper_blob,
)

IMAGE = sha256_digest(b"an image manifest")
OTHER = sha256_digest(b"another image manifest")
NOW = time.time()


def trust(*keys: tuple[str, object]) -> TrustMaterial:
    return TrustMaterial(keys=tuple(TrustedKey(name, public_pem(key)) for name, key in keys))  # type: ignore[arg-type]


def check(signed, material, subject=IMAGE):  # type: ignore[no-untyped-def]
    return formats.verify(signed.artifact(SignatureFormat.COSIGN), subject, material, NOW)


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_each_key_type_verifies(kind: str) -> None:
    key = new_key(kind)
    signed = make_cosign_signature(IMAGE, key)
    [verdict] = check(signed, trust(("ci", key)))
    assert verdict.state is SignatureState.VERIFIED, verdict.message
    assert verdict.signer == "ci"
    assert verdict.signature_digest == signed.digest
    assert verdict.layer == json.loads(signed.manifest)["layers"][0]["digest"]


@pytest.mark.parametrize(("kind", "scheme"), [("ecdsa-p384", "curve"), ("rsa-2048", "pss"), ("rsa-3072", "pss")])
def test_other_hash_and_padding_schemes_verify(kind: str, scheme: str) -> None:
    key = new_key(kind)
    [verdict] = check(make_cosign_signature(IMAGE, key, scheme=scheme), trust(("ci", key)))
    assert verdict.state is SignatureState.VERIFIED, verdict.message


def test_the_right_key_among_several_is_named() -> None:
    ours, theirs = new_key(), new_key("ed25519")
    [verdict] = check(make_cosign_signature(IMAGE, ours), trust(("theirs", theirs), ("ours", ours)))
    assert (verdict.state, verdict.signer) == (SignatureState.VERIFIED, "ours")


def test_wrong_key_is_untrusted() -> None:
    [verdict] = check(make_cosign_signature(IMAGE, new_key()), trust(("ci", new_key())))
    assert verdict.state is SignatureState.UNTRUSTED
    assert verdict.signer is None


def test_no_keys_is_untrusted() -> None:
    [verdict] = check(make_cosign_signature(IMAGE, new_key()), TrustMaterial())
    assert verdict.state is SignatureState.UNTRUSTED
    assert "no trusted keys" in verdict.message


def test_payload_for_another_digest_is_invalid() -> None:
    key = new_key()
    signed = cosign_manifest(IMAGE, [cosign_layer(OTHER, key)])  # stored under IMAGE's tag, names OTHER
    [verdict] = check(signed, trust(("ci", key)))
    assert verdict.state is SignatureState.INVALID
    assert OTHER in verdict.message


def test_tampered_payload_with_its_old_digest_is_invalid() -> None:
    key = new_key()
    signed = tamper_blob(make_cosign_signature(IMAGE, key), lambda b: b.replace(b"team", b"evil"), keep_digest=True)
    [verdict] = check(signed, trust(("ci", key)))
    assert verdict.state is SignatureState.INVALID
    assert "does not match its digest" in verdict.message


def test_tampered_payload_with_a_new_digest_does_not_verify() -> None:
    key = new_key()
    signed = tamper_blob(make_cosign_signature(IMAGE, key), lambda b: b.replace(b"team", b"evil"))
    [verdict] = check(signed, trust(("ci", key)))
    assert verdict.state is SignatureState.UNTRUSTED


def test_one_verdict_per_signature_layer() -> None:
    first, second, stranger = new_key(), new_key("rsa-2048"), new_key()
    signed = make_cosign_signature(IMAGE, [first, second, stranger])
    verdicts = check(signed, trust(("first", first), ("second", second)))
    assert [(v.state, v.signer) for v in verdicts] == [
        (SignatureState.VERIFIED, "first"),
        (SignatureState.VERIFIED, "second"),
        (SignatureState.UNTRUSTED, None),
    ]
    assert [v.layer_index for v in verdicts] == [0, 1, 2]


def test_garbage_signature_annotation_is_invalid() -> None:
    key = new_key()
    descriptor, body = cosign_layer(IMAGE, key)
    descriptor["annotations"]["dev.cosignproject.cosign/signature"] = "not base64!"
    [verdict] = check(cosign_manifest(IMAGE, [(descriptor, body)]), trust(("ci", key)))
    assert verdict.state is SignatureState.INVALID


def test_missing_blob_and_non_json_are_invalid() -> None:
    key = new_key()
    signed = make_cosign_signature(IMAGE, key)
    signed.blobs.clear()
    [verdict] = check(signed, trust(("ci", key)))
    assert verdict.state is SignatureState.INVALID
    not_payload = cosign_manifest(IMAGE, [cosign_layer(IMAGE, key, payload=b"plain text")])
    [verdict] = check(not_payload, trust(("ci", key)))
    assert verdict.state is SignatureState.INVALID


def test_wrong_payload_type_is_invalid() -> None:
    key = new_key()
    payload = cosign_payload(IMAGE).replace(b"cosign container image signature", b"atomic container signature")
    [verdict] = check(cosign_manifest(IMAGE, [cosign_layer(IMAGE, key, payload=payload)]), trust(("ci", key)))
    assert verdict.state is SignatureState.INVALID


def test_capitalised_digest_key_is_read_as_cosign_reads_it() -> None:
    # The spec's own example writes "Docker-manifest-digest"; Go's decoder matches names in any case.
    key = new_key()
    payload = cosign_payload(IMAGE).replace(b"docker-manifest-digest", b"Docker-manifest-digest")
    [verdict] = check(cosign_manifest(IMAGE, [cosign_layer(IMAGE, key, payload=payload)]), trust(("ci", key)))
    assert verdict.state is SignatureState.VERIFIED


def test_payload_builder_matches_cosign_bytes() -> None:
    assert simple_signing_payload("registry.example/team/app", IMAGE) == cosign_payload(IMAGE)
    with_annotations = simple_signing_payload("r/x", IMAGE, {"b": "<&>", "a": 1})
    assert with_annotations.endswith(b'"optional":{"a":1,"b":"\\u003c\\u0026\\u003e"}}')


def test_classify_and_signed_digest() -> None:
    signed = make_cosign_signature(IMAGE, new_key())
    assert formats.classify(signed.media_type, signed.manifest, signed.tag) is SignatureFormat.COSIGN
    assert formats.classify(signed.media_type, signed.manifest, None) is SignatureFormat.COSIGN
    assert formats.classify(signed.media_type, signed.manifest, "latest") is None
    assert formats.signed_digest(SignatureFormat.COSIGN, signed.manifest, signed.tag) == IMAGE
    assert formats.signed_digest(SignatureFormat.COSIGN, signed.manifest, None) is None
    assert formats.cosign_tag(IMAGE) == signed.tag
    plain = json.dumps({"schemaVersion": 2, "mediaType": signed.media_type, "layers": []}).encode()
    assert formats.classify(signed.media_type, plain, signed.tag) is None
    assert formats.classify("application/vnd.oci.image.index.v1+json", signed.manifest, signed.tag) is None


D34 = "sha256:" + "d34db33f" * 8


@pytest.mark.parametrize(
    ("reference", "annotations", "expected"),
    [
        (
            "example.com/test/image",
            None,
            '{"critical":{"identity":{"docker-reference":"example.com/test/image"},"image":{"docker-manifest-digest":"'
            + D34
            + '"},"type":"cosign container image signature"},"optional":null}',
        ),
        (
            "example.com/cosign/test/image",
            {
                "creator": "anyone",
                "some_struct": {"foo": "bar", "false": True, "nothing": None},
                "CamelCase WithSpace": 8.314,
            },
            '{"critical":{"identity":{"docker-reference":"example.com/cosign/test/image"},"image":{"docker-manifest-digest":"'
            + D34
            + '"},"type":"cosign container image signature"},'
            '"optional":{"CamelCase WithSpace":8.314,"creator":"anyone",'
            '"some_struct":{"false":true,"foo":"bar","nothing":null}}}',
        ),
    ],
)
def test_payload_matches_sigstores_own_marshalling_vectors(
    reference: str, annotations: dict[str, object] | None, expected: str
) -> None:
    # sigstore/sigstore pkg/signature/payload/payload_test.go, TestMarshalCosign.
    assert simple_signing_payload(reference, D34, annotations) == expected.encode()


def test_a_tag_or_digest_with_a_trailing_newline_is_not_a_cosign_name() -> None:
    from dockyard.services.trust.formats import SignatureFormat, signed_digest
    from dockyard.services.trust.formats.common import DIGEST

    hexdigest = "ab" * 32
    assert signed_digest(SignatureFormat.COSIGN, b"{}", f"sha256-{hexdigest}.sig") == f"sha256:{hexdigest}"
    assert signed_digest(SignatureFormat.COSIGN, b"{}", f"sha256-{hexdigest}.sig\n") is None
    assert DIGEST.fullmatch(f"sha256:{hexdigest}") and not DIGEST.fullmatch(f"sha256:{hexdigest}\n")
