"""The trust pages for every role: a project's keys, certificates and signature rules, quarantine and
release on the image page, a tag's history with revert, and what the tags page shows of each tag
(signature, quarantine, pusher, last pull). Absent where a role may not act, refused by the server
anyway."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from dockyard.oci import mediatypes as mt
from dockyard.services.auth.permissions import Permission
from tests.access.conftest import PROJECT, Principal
from tests.api.conftest import ADMIN, Registry, sha256
from tests.support.signatures import make_cosign_signature, new_key, public_pem
from tests.ui.conftest import browser, csrf_of, humans

REPO = f"{PROJECT}/app"


@pytest.fixture
def pushed(registry: Registry, principals: list[Principal]) -> Registry:  # principals: the project first
    for seed in ("one", "two"):  # v1 moves once: its history has two entries
        body = registry.image(REPO, [seed.encode() * 10], config=b'{"os":"linux","seed":"%s"}' % seed.encode())
        assert registry.put_manifest(REPO, "v1", body).status_code == 201
    return registry


def _post(ui: TestClient, url: str, csrf: str, **data: str) -> int:
    return ui.post(url, data={"csrf": csrf, **data}, follow_redirects=False).status_code


def test_trust_page_forms_follow_the_matrix(pushed: Registry, principals: list[Principal]) -> None:
    svc = pushed.services
    base = f"/projects/{PROJECT}/trust"
    for p in humans(principals):
        ui = browser(pushed.http, p)
        page = ui.get(base)
        if not p.sees_project():
            assert page.status_code == 404, p.label
            continue
        assert page.status_code == 200, p.label
        trust, update = p.holds(Permission.TRUST_MANAGE), p.holds(Permission.PROJECT_UPDATE)
        assert ("Save signature policy" in page.text) is trust, p.label
        assert ("Trust this key" in page.text) is trust, p.label
        assert ("Add to trust store" in page.text) is trust, p.label
        assert ("Save rule" in page.text) is update, p.label
        csrf = csrf_of(page.text)
        status = _post(ui, base + "/policy", csrf, require_signature="on", signed_tags="v*, release-*")
        assert status == (303 if trust else 403), p.label
        policy = svc.trust.policy(PROJECT)
        assert (policy.require_signature, list(policy.signed_tags)) == (
            (True, ["release-*", "v*"]) if trust else (False, [])
        )
        svc.trust.set_policy(PROJECT, False, [])
        name = "k-" + p.label
        assert _post(ui, base + "/keys", csrf, name=name, public_key=public_pem(new_key())) == (303 if trust else 403)
        assert any(k.name == name for k in svc.trust.keys(PROJECT)) is trust, p.label
        if trust:
            assert name in ui.get(base).text
            assert _post(ui, f"{base}/keys/{name}/delete", csrf) == 303
            assert not any(k.name == name for k in svc.trust.keys(PROJECT))
        assert _post(ui, base + "/auto-quarantine", csrf, auto_quarantine_severity="high") == (303 if update else 403)
        assert (svc.quarantines.auto_severity(PROJECT) or "").lower() == ("high" if update else ""), p.label
        svc.quarantines.set_auto_severity(PROJECT, None)


def test_bad_trust_material_is_refused_with_a_message(pushed: Registry, principals: list[Principal]) -> None:
    ui = browser(pushed.http, next(p for p in principals if p.sysadmin))
    base = f"/projects/{PROJECT}/trust"
    csrf = csrf_of(ui.get(base).text)
    r = ui.post(base + "/keys", data={"csrf": csrf, "name": "bad", "public_key": "not a key"})
    assert r.status_code == 400 and "public_key" in r.text
    r = ui.post(base + "/certificates", data={"csrf": csrf, "name": "bad", "certificate": "-----BEGIN nothing"})
    assert r.status_code == 400
    assert pushed.services.trust.keys(PROJECT) == [] and pushed.services.trust.certificates(PROJECT) == []


def test_quarantine_and_release_from_the_image_page(pushed: Registry, principals: list[Principal]) -> None:
    svc = pushed.services
    digest = svc.manifests.get(REPO, "v1").digest
    image = f"/repositories/{REPO}/images/{digest}"
    for p in humans(principals):
        ui = browser(pushed.http, p)
        page = ui.get(image)
        if not p.holds(Permission.PULL):
            assert page.status_code == 404, p.label
            continue
        assert page.status_code == 200 and "Not quarantined" in page.text, p.label
        may = p.holds(Permission.QUARANTINE_MANAGE)
        assert ("Quarantine this image" in page.text) is may, p.label
        csrf = csrf_of(page.text)
        reason = f"<b>held</b> by {p.label}"
        assert _post(ui, image + "/quarantine", csrf, reason=reason) == (303 if may else 403), p.label
        assert bool(svc.quarantines.list([PROJECT])) is may
        if not may:
            continue
        shown = ui.get(image).text
        assert "&lt;b&gt;held&lt;/b&gt;" in shown and "<b>held" not in shown  # the reason is text
        assert "Release" in shown
        tags = ui.get(f"/repositories/{REPO}/tags").text
        assert "quarantined" in tags
        assert _post(ui, image + "/release", csrf) == 303
        assert svc.quarantines.list([PROJECT]) == []
    # Those who may not release cannot, either: quarantine as the administrator, try as each.
    svc.quarantines.quarantine(REPO, digest, "held")
    for p in humans(principals):
        if p.holds(Permission.QUARANTINE_MANAGE) or not p.holds(Permission.PULL):
            continue
        ui = browser(pushed.http, p)
        page = ui.get(image).text
        assert "Quarantined" in page and "Release" not in page, p.label
        assert _post(ui, image + "/release", csrf_of(page)) == 403, p.label
    assert len(svc.quarantines.list([PROJECT])) == 1


def test_tag_history_and_revert_follow_the_matrix(pushed: Registry, principals: list[Principal]) -> None:
    svc = pushed.services
    first, second = [e.digest for e in reversed(svc.history.history(REPO, "v1")[0])]
    url = f"/repositories/{REPO}/tags/v1/history"
    for p in humans(principals):
        ui = browser(pushed.http, p)
        page = ui.get(url)
        if not p.holds(Permission.PULL):
            assert page.status_code == 404, p.label
            continue
        assert page.status_code == 200, p.label
        assert first[7:19] in page.text and second[7:19] in page.text and "admin" in page.text
        may = p.holds(Permission.PUSH)
        assert ("Revert to" in page.text) is may, p.label
        csrf = csrf_of(page.text)
        status = _post(ui, f"/repositories/{REPO}/tags/v1/revert", csrf, digest=first)
        assert status == (303 if may else 403), p.label
        assert svc.manifests.get(REPO, "v1").digest == (first if may else second)
        if may:  # and forward again, for the next role
            assert _post(ui, f"/repositories/{REPO}/tags/v1/revert", csrf, digest=second) == 303
    assert svc.manifests.get(REPO, "v1").digest == second
    ui = browser(pushed.http, next(p for p in principals if p.sysadmin))
    csrf = csrf_of(ui.get(url).text)
    assert _post(ui, f"/repositories/{REPO}/tags/v1/revert", csrf, digest="sha256:" + "0" * 64) == 404
    assert _post(ui, f"/repositories/{REPO}/tags/v1/revert", csrf, digest="v1") == 400


def test_tags_page_shows_signature_pusher_and_last_pull(pushed: Registry, principals: list[Principal]) -> None:
    svc = pushed.services
    digest = svc.manifests.get(REPO, "v1").digest
    ui = browser(pushed.http, next(p for p in principals if p.sysadmin))
    page = ui.get(f"/repositories/{REPO}/tags").text
    row = page[page.index('href="/repositories/' + REPO + "/images/" + digest) :]
    row = row[: row.index("</tr>")]
    assert "unsigned" in row and "by admin" in row and "—</td>" in row  # never pulled
    r = pushed.http.get(f"/v2/{REPO}/manifests/v1", headers={**ADMIN, "Accept": mt.OCI_MANIFEST})
    assert r.status_code == 200
    key = new_key()
    r = pushed.request(
        "POST", f"/api/v1/projects/{PROJECT}/trust/keys", json={"name": "ci", "public_key": public_pem(key)}
    )
    assert r.status_code == 201, r.text
    signed = make_cosign_signature(digest, key, docker_reference=f"registry.test/{REPO}")
    for data in signed.blobs.values():
        pushed.push_blob(REPO, data)
    assert pushed.put_manifest(REPO, signed.tag or signed.digest, signed.manifest, signed.media_type).status_code == 201
    svc.signatures.run()
    page = ui.get(f"/repositories/{REPO}/tags").text
    row = page[page.index('href="/repositories/' + REPO + "/images/" + digest) :]
    row = row[: row.index("</tr>")]
    assert '<span class="sig verified">verified</span>' in row
    assert "UTC" in row.split("</td>")[4]  # the last pull's time
    image = ui.get(f"/repositories/{REPO}/images/{digest}").text
    assert "verified" in image and "ci" in image and sha256(signed.manifest)[7:19] in image


def test_page_cursors_are_held_to_the_apis_pattern(pushed: Registry, principals: list[Principal]) -> None:
    """The pages take `before` as the API does: anything else is a 400, never a database error."""
    ui = browser(pushed.http, next(p for p in principals if p.sysadmin))
    url = f"/repositories/{REPO}/tags/v1/history"
    for before in ("x", "nan_1", "-1_2", "1_99999999999999999999999", "1.5_2\n"):
        assert ui.get(url, params={"before": before}).status_code == 400, before
        assert ui.get("/security", params={"package": "x", "before": before}).status_code == 400, before
    first = pushed.services.history.history(REPO, "v1", 1)[0][0]
    assert ui.get(url, params={"before": first.cursor}).status_code == 200
