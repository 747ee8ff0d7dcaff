"""The signature gates: `signature` (pull) and `signed_tags` (tag), through the one gate chain, at
service level and on /v2, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from dockyard.oci import mediatypes as mt
from dockyard.services.errors import Denied
from dockyard.services.gates.model import Stage, Subject
from dockyard.services.trust import signatures as signatures_module
from tests.api.conftest import Registry, sha256
from tests.support.signatures import TestCA, make_cosign_signature, make_notation_jws, new_key
from tests.trust.registry_helpers import PROJECT, REPO, push_image, push_index, push_signature, trust_key


@pytest.fixture(autouse=True)
def project(registry: Registry) -> None:
    registry.services.projects.create(PROJECT, creator="admin")


def policy(reg: Registry, **body: object) -> dict[str, object]:
    r = reg.request("PATCH", f"/api/v1/projects/{PROJECT}/trust-policy", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, object] = r.json()
    return out


def pull(reg: Registry, reference: str) -> tuple[int, str]:
    r = reg.request(
        "GET", f"/v2/{REPO}/manifests/{reference}", headers={"Accept": mt.OCI_MANIFEST + "," + mt.OCI_INDEX}
    )
    return r.status_code, r.text


def sign(reg: Registry, digest: str, key: object) -> str:
    sig = push_signature(reg, make_cosign_signature(digest, key))  # type: ignore[arg-type]
    reg.services.signatures.run()
    return sig


def test_require_signature_refuses_unsigned_pulls_then_allows_signed_ones(registry: Registry) -> None:
    key = trust_key(registry)
    image = push_image(registry, "v1")
    assert pull(registry, "v1")[0] == 200  # no policy yet
    policy(registry, require_signature=True)
    status, text = pull(registry, "v1")
    assert status == 403 and "DENIED" in text and "signature" in text and image in text
    assert "sign " in text  # the remedy
    sig = sign(registry, image, key)
    assert pull(registry, "v1")[0] == 200
    assert pull(registry, image)[0] == 200
    # The signature itself is never refused (by its cosign tag, or by digest).
    assert pull(registry, f"{image.replace(':', '-')}.sig")[0] == 200
    assert pull(registry, sig)[0] == 200


def test_untrusted_or_pending_signatures_do_not_satisfy_the_pull_gate(registry: Registry) -> None:
    image = push_image(registry, "v1")
    policy(registry, require_signature=True)
    push_signature(registry, make_cosign_signature(image, new_key()))
    assert pull(registry, "v1")[0] == 403  # pending
    registry.services.signatures.run()
    assert pull(registry, "v1")[0] == 403  # untrusted


def test_referrer_signatures_are_never_blocked(registry: Registry) -> None:
    ca = TestCA.create()
    leaf = ca.issue_leaf()
    image = push_image(registry)
    policy(registry, require_signature=True)
    sig = push_signature(registry, make_notation_jws(image, leaf, ca.chain(leaf)))
    assert pull(registry, sig)[0] == 200
    assert pull(registry, image)[0] == 403
    registry.services.trust.add_certificate(PROJECT, "acme", ca.root.pem, [])
    registry.services.signatures.run()
    assert pull(registry, image)[0] == 200


def test_an_index_passes_when_it_or_every_child_is_signed(registry: Registry) -> None:
    key = trust_key(registry)
    a, b = push_image(registry, seed="a"), push_image(registry, seed="b")
    push_index(registry, [a, b], "multi")
    policy(registry, require_signature=True)
    status, text = pull(registry, "multi")
    assert status == 403 and a in text
    sign(registry, a, key)
    status, text = pull(registry, "multi")
    assert status == 403 and b in text and a not in text.split("remedy")[0].split("has no")[0]
    sign(registry, b, key)
    assert pull(registry, "multi")[0] == 200  # every child
    c, d = push_image(registry, seed="c"), push_image(registry, seed="d")
    other = push_index(registry, [c, d], "multi2")
    assert pull(registry, "multi2")[0] == 403
    sign(registry, other, key)
    assert pull(registry, "multi2")[0] == 200  # the index itself
    assert pull(registry, c)[0] == 403  # a child pulled alone still needs its own signature


def test_a_lapsed_verdict_no_longer_passes(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    ca = TestCA.create()
    end = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    leaf = ca.issue_leaf(not_after=end)
    image = push_image(registry, "v1")
    push_signature(registry, make_notation_jws(image, leaf, ca.chain(leaf)))
    registry.services.trust.add_certificate(PROJECT, "acme", ca.root.pem, [])
    registry.services.signatures.run()
    policy(registry, require_signature=True)
    assert pull(registry, "v1")[0] == 200
    monkeypatch.setattr(signatures_module, "now", lambda: end.timestamp() + 1)
    assert pull(registry, "v1")[0] == 403


def test_signed_tags_push_by_digest_sign_then_tag(registry: Registry) -> None:
    key = trust_key(registry)
    policy(registry, signed_tags=["v*", "release-*"])
    body = registry.image(REPO, [b"release layer"])
    digest = sha256(body)
    r = registry.put_manifest(REPO, "v1.0", body)
    assert r.status_code == 403 and "DENIED" in r.text and "signed_tags" in r.text
    assert "then tag" in r.text and digest in r.text
    # Refused before anything was stored.
    assert registry.request("HEAD", f"/v2/{REPO}/manifests/{digest}").status_code == 404
    assert registry.put_manifest(REPO, "latest", body).status_code == 201  # not a protected tag
    sign(registry, digest, key)
    assert registry.put_manifest(REPO, "v1.0", body).status_code == 201
    assert registry.put_manifest(REPO, "release-2", body).status_code == 201
    tags = registry.request("GET", f"/v2/{REPO}/tags/list").json()["tags"]
    assert sorted(tags) == sorted(["latest", "release-2", "v1.0", digest.replace(":", "-") + ".sig"])


def test_signature_tags_are_never_blocked_by_signed_tags(registry: Registry) -> None:
    key = trust_key(registry)
    policy(registry, signed_tags=["*"])  # every tag, the signature's own included
    image = push_image(registry)  # by digest
    sign(registry, image, key)
    assert (
        registry.put_manifest(REPO, "anything", registry.services.manifests.get(REPO, image).content).status_code == 201
    )


def test_the_gates_at_service_level(registry: Registry) -> None:
    svc = registry.services
    key = trust_key(registry)
    image = push_image(registry)
    stored = svc.manifests.get(REPO, image)
    subject = Subject(REPO, image, stored.media_type, stored.content)
    assert svc.gates.refusals(Stage.PULL, subject) == []
    svc.trust.set_policy(PROJECT, require_signature=True, signed_tags=["v*"])
    [refusal] = svc.gates.refusals(Stage.PULL, Subject(REPO, image, stored.media_type, stored.content))
    assert refusal.gate == "signature" and refusal.detail["digest"] == image
    [refusal] = svc.gates.refusals(Stage.TAG, Subject(REPO, image, stored.media_type, stored.content, tag="v2"))
    assert refusal.gate == "signed_tags" and "then tag" in refusal.remedy
    assert svc.gates.refusals(Stage.TAG, Subject(REPO, image, stored.media_type, stored.content, tag="dev")) == []
    with pytest.raises(Denied) as raised:
        svc.manifests.put(REPO, "v2", stored.content, stored.media_type)
    assert "signed_tags" in raised.value.message
    sign(registry, image, key)
    assert svc.gates.refusals(Stage.PULL, Subject(REPO, image, stored.media_type, stored.content)) == []
    assert svc.manifests.put(REPO, "v2", stored.content, stored.media_type).digest == image


def test_trust_policy_api(registry: Registry) -> None:
    base = f"/api/v1/projects/{PROJECT}/trust-policy"
    assert registry.request("GET", base).json() == {"require_signature": False, "signed_tags": []}
    assert policy(registry, signed_tags=["v*", "v*", "release-*"]) == {
        "require_signature": False,
        "signed_tags": ["release-*", "v*"],
    }
    assert policy(registry, require_signature=True) == {"require_signature": True, "signed_tags": ["release-*", "v*"]}
    bad_bodies: list[dict[str, object]] = [
        {"signed_tags": None},
        {"require_signature": None},
        {"signed_tags": ["a/b"]},
        {"signed_tags": ["x" * 200]},
        {"signed_tags": ["v*"] * 51},
        {"unknown": 1},
    ]
    for bad in bad_bodies:
        r = registry.request("PATCH", base, json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert registry.request("GET", base).json() == {"require_signature": True, "signed_tags": ["release-*", "v*"]}
    assert registry.request("GET", "/api/v1/projects/nope/trust-policy").status_code == 404
    events = registry.request("GET", "/api/v1/audit", params={"project": PROJECT, "action": "project.trust_policy"})
    assert events.status_code == 200, events.text
    assert len([e for e in events.json()["events"] if e["action"] == "project.trust_policy"]) == 2
