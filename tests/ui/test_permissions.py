"""Every role against every page and form, without a browser: what a role may not use is absent
from the page AND refused by the server (the permission matrix decides both)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from dockyard.services.audit import AuditFilter
from dockyard.services.auth.permissions import Permission
from tests.access.conftest import PROJECT, Principal
from tests.api.conftest import Registry
from tests.ui.conftest import browser, csrf_of, humans

REPO = f"{PROJECT}/app"


@pytest.fixture
def pushed(registry: Registry, principals: list[Principal]) -> Registry:  # principals: the project first
    for tag in ("v1", "v2"):
        body = registry.image(
            REPO, [tag.encode() * 10], config=b'{"architecture":"amd64","os":"linux","n":"%s"}' % tag.encode()
        )
        assert registry.put_manifest(REPO, tag, body).status_code == 201
    return registry


def _token(ui: TestClient, url: str = "/account") -> str:
    return csrf_of(ui.get(url).text)


def test_anonymous_is_sent_to_sign_in_and_posts_are_refused(pushed: Registry, principals: list[Principal]) -> None:
    ui = browser(pushed.http, principals[0])
    for url in ("/projects", f"/projects/{PROJECT}", f"/repositories/{REPO}/tags", "/audit", "/admin", "/account"):
        r = ui.get(url, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), url
    for url in ("/projects", f"/repositories/{REPO}/tags/v1/delete", "/admin/users", "/account/tokens"):
        assert ui.post(url, data={"csrf": "x", "name": "p", "confirm": "v1"}).status_code == 403, url
    assert pushed.services.manifests.get(REPO, "v1")


def test_robots_cannot_sign_in_to_the_ui(pushed: Registry, principals: list[Principal]) -> None:
    for p in principals:
        if p.robot_actions is not None:
            ui = browser(pushed.http, p)
            assert ui.get("/projects", follow_redirects=False).status_code == 303
            assert "dockyard_ui" not in ui.cookies


def test_each_role_sees_the_tags_page_and_delete_only_where_allowed(
    pushed: Registry, principals: list[Principal]
) -> None:
    for p in humans(principals):
        ui = browser(pushed.http, p)
        page = ui.get(f"/repositories/{REPO}/tags")
        if not p.holds(Permission.PULL):
            assert page.status_code == 404, p.label  # a private project the caller cannot see is missing
            continue
        assert page.status_code == 200, p.label
        assert "v1" in page.text and "podman pull" in page.text
        may = p.holds(Permission.DELETE)
        assert ("/tags/v1/delete" in page.text) is may, p.label
        confirm = ui.get(f"/repositories/{REPO}/tags/v1/delete")
        assert confirm.status_code == (200 if may else 403), p.label
        csrf = _token(ui)
        r = ui.post(
            f"/repositories/{REPO}/tags/v2/delete", data={"csrf": csrf, "confirm": "v2"}, follow_redirects=False
        )
        if may:
            assert r.status_code == 303, p.label
            assert pushed.put_manifest(REPO, "v2", pushed.image(REPO, [b"again"])).status_code == 201
        else:
            assert r.status_code == 403, p.label
            assert pushed.services.manifests.get(REPO, "v2")


def test_deleting_a_tag_needs_its_name_typed(pushed: Registry, principals: list[Principal]) -> None:
    admin = next(p for p in principals if p.sysadmin)
    ui = browser(pushed.http, admin)
    csrf = _token(ui)
    r = ui.post(f"/repositories/{REPO}/tags/v1/delete", data={"csrf": csrf, "confirm": "v2"})
    assert r.status_code == 400
    assert pushed.services.manifests.get(REPO, "v1")


def test_members_page_robot_forms_follow_the_matrix(pushed: Registry, principals: list[Principal]) -> None:
    for p in humans(principals):
        ui = browser(pushed.http, p)
        page = ui.get(f"/projects/{PROJECT}/members")
        if not p.holds(Permission.MEMBER_READ):
            assert page.status_code == 404, p.label
            continue
        assert page.status_code == 200, p.label
        assert ("Robot accounts" in page.text) is p.holds(Permission.ROBOT_READ), p.label
        assert ('id="create-robot"' in page.text) is p.holds(Permission.ROBOT_MANAGE), p.label
        csrf = _token(ui)
        name = "made-by-" + p.label.replace("$", "-")
        r = ui.post(f"/projects/{PROJECT}/robots", data={"csrf": csrf, "name": name, "action_pull": "on"})
        created = [r_.name for r_ in pushed.services.robots.list_robots(PROJECT) if r_.name.endswith(name)]
        if p.holds(Permission.ROBOT_MANAGE):
            assert r.status_code == 201 and "shown this once" in r.text, p.label
            assert created == [f"robot${name}"]
        else:
            assert r.status_code == 403, p.label
            assert created == []


def test_project_creation_only_where_allowed(pushed: Registry, principals: list[Principal]) -> None:
    for p in humans(principals):
        ui = browser(pushed.http, p)
        page = ui.get("/projects")
        assert page.status_code == 200
        assert ('id="create-project"' in page.text) is p.sysadmin, p.label  # users_can_create_projects is off
        assert (f'href="/projects/{PROJECT}"' in page.text) is p.sees_project(), p.label
        name = "new-" + p.label
        r = ui.post("/projects", data={"csrf": csrf_of(page.text), "name": name}, follow_redirects=False)
        assert r.status_code == (303 if p.sysadmin else 403), p.label
        with pushed.services.db.read() as conn:
            assert (pushed.services.projects.find(conn, name) is not None) is p.sysadmin
        if p.sysadmin:  # the change is audited under the signed-in user, as through the API
            pushed.services.audit.flush()
            events, _ = pushed.services.audit.query(AuditFilter(project=name), 10, None)
            assert [(e["actor"], e["source_ip"]) for e in events] == [("admin", "testclient")]


def test_administration_is_for_system_administrators(pushed: Registry, principals: list[Principal]) -> None:
    for p in humans(principals):
        ui = browser(pushed.http, p)
        home = ui.get("/projects").text
        assert ('href="/admin"' in home) is p.sysadmin, p.label
        assert ui.get("/admin").status_code == (200 if p.sysadmin else 403), p.label
        csrf = csrf_of(home)
        name = "u-" + p.label
        r = ui.post("/admin/users", data={"csrf": csrf, "username": name, "password": "long-password-1"})
        assert (r.status_code in (200, 303)) is p.sysadmin, p.label
        r = ui.post("/admin/users/outsider/disable", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == (303 if p.sysadmin else 403), p.label
        if p.sysadmin:
            assert pushed.services.users.get("outsider").disabled
            assert ui.post("/admin/users/outsider/enable", data={"csrf": csrf}).status_code == 200
        else:
            assert not pushed.services.users.get("outsider").disabled


def test_audit_log_scope_follows_the_matrix(pushed: Registry, principals: list[Principal]) -> None:
    for p in humans(principals):
        ui = browser(pushed.http, p)
        # The whole log's link is for those who may read it; a project's, in the project's tabs.
        home = ui.get("/projects").text
        assert ('href="/audit"' in home) is p.sysadmin, p.label
        tabs = ui.get(f"/projects/{PROJECT}").text if p.sees_project() else ""
        assert ('href="/audit?project=' in tabs) is p.holds(Permission.AUDIT_READ), p.label
        everything = ui.get("/audit")
        assert everything.status_code == (200 if p.sysadmin else 400), p.label
        mine = ui.get("/audit", params={"project": PROJECT})
        may = p.holds(Permission.AUDIT_READ)
        expected = 200 if may else (403 if p.sees_project() else 404)
        assert mine.status_code == expected, p.label
        export = ui.get("/audit/export", params={"project": PROJECT, "format": "csv"})
        assert export.status_code == expected, p.label
        if may:
            assert export.text.startswith("id,ts,actor") and ",push,proj,proj/app,v1," in export.text


def test_a_form_without_its_csrf_token_is_refused(pushed: Registry, principals: list[Principal]) -> None:
    admin = next(p for p in principals if p.sysadmin)
    ui = browser(pushed.http, admin)
    for url, data in (
        ("/projects", {"name": "nocsrf"}),
        (f"/repositories/{REPO}/tags/v1/delete", {"confirm": "v1"}),
        ("/account/tokens", {"name": "t"}),
        ("/admin/users/outsider/disable", {}),
    ):
        assert ui.post(url, data=data).status_code == 403, url
        assert ui.post(url, data={**data, "csrf": "forged"}).status_code == 403, url
    assert pushed.services.manifests.get(REPO, "v1")
    assert not pushed.services.users.get("outsider").disabled
    with pushed.services.db.read() as conn:
        assert pushed.services.projects.find(conn, "nocsrf") is None


def test_settings_forms_follow_the_matrix(pushed: Registry, principals: list[Principal]) -> None:
    svc = pushed.services
    base = f"/projects/{PROJECT}/settings"
    for p in humans(principals):
        ui = browser(pushed.http, p)
        page = ui.get(base)
        if not p.sees_project():
            assert page.status_code == 404, p.label
            continue
        assert page.status_code == 200, p.label
        update, rules = p.holds(Permission.PROJECT_UPDATE), p.holds(Permission.TAG_POLICY_MANAGE)
        assert ("Save visibility" in page.text) is update, p.label
        assert ("Save policy" in page.text) is update, p.label
        assert ("Add rule" in page.text) is rules, p.label
        assert ("Save retention" in page.text) is rules, p.label
        assert ("Save quota" in page.text) is p.sysadmin, p.label
        csrf = csrf_of(page.text)

        def post(path: str, ui: TestClient = ui, csrf: str = csrf, **data: str) -> int:
            return ui.post(base + path, data={"csrf": csrf, **data}, follow_redirects=False).status_code

        assert post("/visibility", public="on") == (303 if update else 403), p.label
        assert svc.projects.get(PROJECT).public is update
        svc.projects.update(PROJECT, public=False)
        assert post("/scan-policy", block_severity="high", scan_on_push="on") == (303 if update else 403), p.label
        assert (svc.projects.scan_policy(PROJECT)["block_severity"] or "").lower() == ("high" if update else "")
        svc.projects.set_scan_policy(PROJECT, block_severity=None)
        pattern = "rel-" + p.label
        assert post("/immutable", pattern=pattern) == (303 if rules else 403), p.label
        assert any(r.pattern == pattern for r in svc.tag_rules.list_rules(PROJECT)) is rules
        assert post("/immutable/remove", pattern=pattern) == (303 if p.sysadmin else 403), p.label
        assert post("/retention", keep_last="1", enabled="on") == (303 if rules else 403), p.label
        preview = ui.post(base + "/retention/preview", data={"csrf": csrf})
        assert preview.status_code == (200 if rules else 403), p.label
        if rules:
            assert "Dry run: 1 removal" in preview.text  # v1 would go (keep last 1), nothing changed
            assert svc.manifests.get(REPO, "v1")
        assert post("/quota", quota_mib="5") == (303 if p.sysadmin else 403), p.label
        assert (svc.projects.get(PROJECT).quota_bytes == 5 * 1024 * 1024) is p.sysadmin
        svc.projects.set_quota(PROJECT, None)
        for r in svc.tag_rules.list_rules(PROJECT):
            svc.tag_rules.remove(PROJECT, r.pattern)


def test_member_forms_follow_the_matrix(pushed: Registry, principals: list[Principal]) -> None:
    svc = pushed.services
    for p in humans(principals):
        ui = browser(pushed.http, p)
        page = ui.get(f"/projects/{PROJECT}/members")
        if page.status_code == 404:
            assert not p.holds(Permission.MEMBER_READ)
            continue
        may = p.holds(Permission.MEMBER_MANAGE)
        assert ('id="add-member"' in page.text) is may, p.label
        csrf = csrf_of(page.text)
        r = ui.post(
            f"/projects/{PROJECT}/members",
            data={"csrf": csrf, "kind": "group", "principal": "qa", "role": "guest"},
            follow_redirects=False,
        )
        assert r.status_code == (303 if may else 403), p.label
        assert any(m.principal == "qa" for m in svc.projects.members(PROJECT)) is may
        r = ui.post(f"/projects/{PROJECT}/members/group/qa/remove", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == (303 if may else 403), p.label  # the page showed: member:read is held
        assert not any(m.principal == "qa" for m in svc.projects.members(PROJECT))


def test_security_page_and_its_admin_actions(pushed: Registry, principals: list[Principal]) -> None:
    for p in humans(principals):
        ui = browser(pushed.http, p)
        page = ui.get("/security", params={"package": "openssl"})
        assert page.status_code == 200, p.label
        assert "0 images containing openssl" in page.text
        assert ui.get("/security", params={"advisory": "CVE-2024-0001"}).status_code == 200
        assert ("Update the database now" in page.text) is p.sysadmin, p.label
        csrf = csrf_of(page.text)
        r = ui.post("/security/vulndb/update", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == (303 if p.sysadmin else 403), p.label
        r = ui.post("/admin/gc", data={"csrf": csrf})
        assert r.status_code == (200 if p.sysadmin else 403), p.label
        if p.sysadmin:
            assert "Dry run, nothing removed" in r.text
    assert pushed.services.manifests.get(REPO, "v1")


def test_sbom_download_needs_pull(pushed: Registry, principals: list[Principal]) -> None:
    digest = pushed.services.manifests.get(REPO, "v1").digest
    for p in humans(principals):
        ui = browser(pushed.http, p)
        r = ui.get(f"/repositories/{REPO}/images/{digest}/sbom", params={"format": "spdx"})
        # Not scanned here (scanning is off in these tests): a reader is told so; others learn nothing.
        assert r.status_code == 404, p.label
        assert ("has not been scanned" in r.text) is p.holds(Permission.PULL), p.label
        assert ui.get(f"/repositories/{REPO}/images/{digest}/sbom", params={"format": "x"}).status_code == 400


def test_administration_shows_storage_and_settings_without_secrets(
    pushed: Registry, principals: list[Principal]
) -> None:
    admin = next(p for p in principals if p.sysadmin)
    page = browser(pushed.http, admin).get("/admin")
    assert page.status_code == 200
    usage = pushed.services.blobs.usage()
    assert "<h2>Storage</h2>" in page.text and f"{usage['blobs']:,} blobs" in page.text
    title = page.text.index("</title>")
    assert page.text.index('<details class="panel" id="settings">') > title
    assert page.text.index("<code>admin_password</code></td><td>set</td>") > title
    password = pushed.services.settings.admin_password
    assert password is not None and password.get_secret_value() not in page.text
