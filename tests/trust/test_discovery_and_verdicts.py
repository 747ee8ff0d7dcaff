"""Signatures found as they are pushed, verified off the request path, with one verdict per signature,
recomputed when trust material changes and read as expired once a certificate lapses; on SQLite and
PostgreSQL. Signatures are built from the specs in tests/support/signatures.py."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.services.trust import signatures as signatures_module
from tests.api.conftest import Registry
from tests.support.signatures import (
    TestCA,
    cosign_layer,
    cosign_manifest,
    make_cosign_signature,
    make_notation_cose,
    make_notation_jws,
    make_sigstore_bundle,
    new_key,
    public_pem,
    tamper_blob,
)
from tests.trust.registry_helpers import PROJECT, REPO, push_image, push_signature, signatures, trust_key


@pytest.fixture(autouse=True)
def project(registry: Registry) -> None:
    registry.services.projects.create(PROJECT, creator="admin")


def verify_all(reg: Registry) -> int:
    return reg.services.signatures.run()


def states(reg: Registry, digest: str) -> list[tuple[str, str, object]]:
    return [(str(e["format"]), str(e["state"]), e["signer"]) for e in signatures(reg, digest)]


def test_cosign_signature_is_found_pending_then_verified_by_the_trusted_key(registry: Registry) -> None:
    key = trust_key(registry, "ci")
    image = push_image(registry, "latest")
    signed = make_cosign_signature(image, key)
    push_signature(registry, signed)
    [entry] = signatures(registry, "latest")
    assert entry["state"] == "pending" and entry["digest"] == signed.digest  # found, not verified yet
    assert verify_all(registry) == 1
    [entry] = signatures(registry, "latest")
    assert (entry["format"], entry["state"], entry["signer"]) == ("cosign", "verified", "ci")
    assert entry["verified_at"] is not None
    assert verify_all(registry) == 0  # nothing left on the queue


def test_one_verdict_per_cosign_signature_layer(registry: Registry) -> None:
    trusted = trust_key(registry, "ci")
    image = push_image(registry)
    stranger = new_key()
    push_signature(registry, make_cosign_signature(image, [trusted, stranger]))
    verify_all(registry)
    assert sorted(states(registry, image)) == [("cosign", "untrusted", None), ("cosign", "verified", "ci")]


def test_invalid_cosign_signatures(registry: Registry) -> None:
    key = trust_key(registry, "ci")
    image = push_image(registry, seed="a")
    other = push_image(registry, seed="b")
    # Payload names another digest, under this image's tag.
    wrong = cosign_manifest(image, [cosign_layer(other, key)])
    push_signature(registry, wrong)
    verify_all(registry)
    assert states(registry, image) == [("cosign", "invalid", None)]
    # Tampered payload (the manifest names the tampered blob: a consistent forgery).
    third = push_image(registry, seed="c")
    forged = tamper_blob(make_cosign_signature(third, key), lambda b: b.replace(b"cosign", b"cosigN"))
    push_signature(registry, forged)
    verify_all(registry)
    assert [st for _, st, _ in states(registry, third)] == ["invalid"]


def test_sigstore_bundle_referrer_is_verified(registry: Registry) -> None:
    key = trust_key(registry, "ci")
    image = push_image(registry)
    push_signature(registry, make_sigstore_bundle(image, key))
    verify_all(registry)
    assert states(registry, image) == [("sigstore-bundle", "verified", "ci")]


@pytest.mark.parametrize("make", [make_notation_jws, make_notation_cose], ids=["jws", "cose"])
def test_notation_signatures_against_the_trust_store(registry: Registry, make) -> None:  # type: ignore[no-untyped-def]
    ca = TestCA.create()
    leaf = ca.issue_leaf()
    image = push_image(registry)
    push_signature(registry, make(image, leaf, ca.chain(leaf)))
    verify_all(registry)
    assert [st for _, st, _ in states(registry, image)] == ["untrusted"]  # no trust store yet
    r = registry.request(
        "POST",
        f"/api/v1/projects/{PROJECT}/trust/certificates",
        json={"name": "acme", "certificate": ca.root.pem, "identities": ["x509.subject: C=US, ST=WA, CN=builder"]},
    )
    assert r.status_code == 201, r.text
    verify_all(registry)  # the change queued the project's signatures again
    [(fmt, state, signer)] = states(registry, image)
    assert (fmt, state, signer) == ("notation", "verified", leaf.subject)


def test_trust_changes_recompute_verdicts(registry: Registry) -> None:
    key = new_key()
    image = push_image(registry)
    push_signature(registry, make_cosign_signature(image, key))
    verify_all(registry)
    assert states(registry, image) == [("cosign", "untrusted", None)]
    r = registry.request(
        "POST", f"/api/v1/projects/{PROJECT}/trust/keys", json={"name": "ci", "public_key": public_pem(key)}
    )
    assert r.status_code == 201
    assert verify_all(registry) == 1
    assert states(registry, image) == [("cosign", "verified", "ci")]
    assert registry.request("DELETE", f"/api/v1/projects/{PROJECT}/trust/keys/ci").status_code == 204
    verify_all(registry)
    assert states(registry, image) == [("cosign", "untrusted", None)]


def test_system_wide_keys_apply_to_every_project_and_requeue_all(registry: Registry) -> None:
    registry.services.projects.create("other", creator="admin")
    key = new_key()
    images = {repo: push_image(registry, repo=repo) for repo in (REPO, "other/app")}
    for repo, digest in images.items():
        push_signature(registry, make_cosign_signature(digest, key), repo=repo)
    verify_all(registry)
    r = registry.request("POST", "/api/v1/system/trust/keys", json={"name": "org", "public_key": public_pem(key)})
    assert r.status_code == 201, r.text
    assert verify_all(registry) == 2
    for repo, digest in images.items():
        assert [(e["state"], e["signer"]) for e in signatures(registry, digest, repo=repo)] == [("verified", "org")]
    # A project key of the same name does not clash with the system-wide one.
    assert trust_key(registry, "org", project="other") is not None


def test_a_lapsed_certificate_reads_as_expired_without_a_new_verification(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expiry is judged when read: a verified verdict past its `expires_at` is expired at once, for
    the API and the pull gate alike, with no duty needed in between."""
    ca = TestCA.create()
    not_after = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    leaf = ca.issue_leaf(not_after=not_after)
    image = push_image(registry)
    push_signature(registry, make_notation_jws(image, leaf, ca.chain(leaf)))
    registry.services.trust.add_certificate(PROJECT, "acme", ca.root.pem, [])
    verify_all(registry)
    [entry] = signatures(registry, image)
    assert entry["state"] == "verified"
    assert entry["expires_at"] == pytest.approx(not_after.timestamp(), abs=1)
    assert registry.services.signatures.verified(REPO, [image]) == {image}
    later = not_after.timestamp() + 60
    monkeypatch.setattr(signatures_module, "now", lambda: later)
    [entry] = signatures(registry, image)
    assert entry["state"] == "expired" and "expired" in str(entry["message"])
    assert registry.services.signatures.verified(REPO, [image]) == set()
    # Verified again after the lapse, the verifier itself says expired (the stored verdict follows).
    with registry.services.db.write() as conn:
        registry.services.signatures.requeue(conn, PROJECT)
    verify_all(registry)
    with registry.services.db.read() as conn:
        assert conn.execute(sa.select(s.signature_verdicts.c.state)).scalars().all() == ["expired"]


def test_deleting_the_signature_manifest_forgets_it(registry: Registry) -> None:
    key = trust_key(registry)
    image = push_image(registry)
    sig = push_signature(registry, make_cosign_signature(image, key))
    verify_all(registry)
    assert registry.request("DELETE", f"/v2/{REPO}/manifests/{sig}").status_code == 202
    assert signatures(registry, image) == []
    with registry.services.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.signature_verdicts)).scalar() == 0


def test_a_signature_blob_over_the_limit_is_invalid_and_nothing_else_is_read(registry: Registry) -> None:
    key = trust_key(registry)
    image = push_image(registry)
    registry.services.signatures.max_blob_bytes = 10
    push_signature(registry, make_cosign_signature(image, key))
    verify_all(registry)
    [entry] = signatures(registry, image)
    assert entry["state"] == "invalid" and "limit" in str(entry["message"])


def test_ordinary_images_and_unrelated_referrers_are_not_signatures(registry: Registry) -> None:
    image = push_image(registry, "v1")
    push_image(registry, f"{image.replace(':', '-')}.att", seed="att")  # an image under a cosign-style tag
    assert signatures(registry, image) == []
    with registry.services.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.signatures)).scalar() == 0
