"""The web UI in a real browser (Playwright driving Debian's chromium) against the real `dockyard
serve`: each role signs in and walks the pages; a project, a robot and a token are made, a tag is
deleted, the audit log exported; images whose labels and annotations carry script payloads run
nothing; axe-core finds no serious or critical violation on any page. The main pages' screenshots
(docs/screenshots/, shown in the README) come from here."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import missing
from tests.e2e.conftest import Server, running_server

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "browser-pass-123"
ROLES = ("guest", "developer", "maintainer", "admin")
PAYLOAD = '"><script>window.__xss=1</script><img src=x onerror="window.__xss=2"><svg onload="window.__xss=3">'


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(name: str) -> bytes:
    """A real (gzip'd tar) layer: a Debian os-release and one file, so the scanner has something to read."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path, text in (("etc/os-release", 'ID=debian\nVERSION_ID="12"\n'), ("app/NAME", name)):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def push_image(
    srv: Server, repo: str, tag: str, config: dict[str, Any], annotations: dict[str, str] | None = None
) -> str:
    """An image pushed through /v2 (monolithic blob uploads, then the manifest), as the admin."""
    auth = (srv.username, srv.password)
    descriptors = []
    for data in (json.dumps(config).encode(), _layer(f"{repo}:{tag}")):
        d = _digest(data)
        r = httpx.post(f"{srv.url}/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data, auth=auth)
        assert r.status_code == 201, r.text
        descriptors.append({"digest": d, "size": len(data)})
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **descriptors[0]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **descriptors[1]}],
    }
    if annotations:
        manifest["annotations"] = annotations
    body = json.dumps(manifest).encode()
    r = httpx.put(
        f"{srv.url}/v2/{repo}/manifests/{tag}",
        content=body,
        headers={"Content-Type": manifest["mediaType"]},
        auth=auth,
    )
    assert r.status_code == 201, r.text
    return _digest(body)


def _api(srv: Server, method: str, path: str, **kw: Any) -> httpx.Response:
    r = httpx.request(method, f"{srv.url}/api/v1{path}", auth=(srv.username, srv.password), **kw)
    assert r.status_code < 300, r.text
    return r


def _scanned(srv: Server, repo: str, tag: str) -> None:
    """Wait for scan on push to finish with the image (the image page shows its result)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        report = _api(srv, "GET", f"/repositories/{repo}/manifests/{tag}/scan").json()
        if all(image["status"] in ("done", "failed") for image in report["images"]):
            assert [image["status"] for image in report["images"]] == ["done"], report
            return
        time.sleep(0.5)
    pytest.fail(f"{repo}:{tag} was not scanned in time")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("ui-server"), "sqlite") as srv:
        _api(srv, "POST", "/projects", json={"name": "shop", "public": False})
        for role in ROLES:
            _api(srv, "POST", "/users", json={"username": f"{role}-user", "password": PASSWORD})
            _api(srv, "PUT", f"/projects/shop/members/user/{role}-user", json={"role": role})
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/bin", "MODE=production"],
                "Entrypoint": ["/app"],
                "Cmd": ["serve", "--port=80"],
                "Labels": {"team": "web"},
            },
            "history": [{"created_by": "COPY app /app"}],
        }
        for tag in ("1.0", "1.1", "2.0", "latest"):
            push_image(srv, "shop/web", tag, config, {"org.opencontainers.image.source": "https://example.org/web"})
        push_image(srv, "shop/api", "1.0", config)
        _scanned(srv, "shop/web", "latest")
        yield srv


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        missing("chromium is not installed (scripts/system-deps.sh installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e .[dev])")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Session:
    """One browser context signed in as one user, checking every page it opens."""

    def __init__(self, browser: Any, srv: Server) -> None:
        self.srv = srv
        self.context = browser.new_context(base_url=srv.url, viewport={"width": 1280, "height": 860})
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def sign_in(self, username: str, password: str) -> None:
        self.page.goto("/login")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/projects")

    def visit(self, path: str, screenshot: str | None = None) -> Any:
        response = self.page.goto(path)
        assert response is not None and response.status == 200, f"{path}: {response and response.status}"
        self.check_accessibility(path)
        if screenshot:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(SCREENSHOTS / f"{screenshot}.png"), full_page=True)
        return response

    def check_accessibility(self, path: str) -> None:
        from axe_playwright_python.sync_playwright import Axe

        result = Axe().run(self.page)
        bad = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in result.response["violations"]
            if v.get("impact") in ("serious", "critical")
        ]
        assert bad == [], f"axe on {path}: {bad}"

    def close(self) -> None:
        assert self.dialogs == [], self.dialogs
        self.context.close()


def test_the_administrator_walks_every_page_and_acts(server: Server, chromium: Any, tmp_path: Path) -> None:
    s = Session(chromium, server)
    s.visit("/login", "sign-in")
    s.sign_in(server.username, server.password)
    s.visit("/projects", "projects")
    assert s.page.get_by_role("link", name="Administration").is_visible()

    # Create a project through the form.
    s.page.get_by_text("New project").click()
    s.page.get_by_label("Name").fill("made-in-browser")
    s.page.get_by_role("button", name="Create project").click()
    s.page.wait_for_url("**/projects/made-in-browser")

    s.visit("/projects/shop", "repositories")
    assert s.page.get_by_role("link", name="shop/web").is_visible()
    s.visit("/repositories/shop/web/tags", "tags")
    assert s.page.get_by_role("link", name="latest", exact=True).is_visible()
    assert s.page.locator("input.copy-text").first.input_value().startswith(f"podman pull {server.host}/shop/web:")
    s.page.get_by_role("link", name="latest", exact=True).click()
    s.page.wait_for_url("**/images/sha256:*")
    s.check_accessibility("image")
    assert s.page.get_by_text("MODE=production").is_visible()
    assert s.page.get_by_text("COPY app /app").is_visible()
    assert s.page.get_by_text("serve --port=80").is_visible()
    assert s.page.get_by_text("debian-12").is_visible()  # the scanner read the layer
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    s.page.screenshot(path=str(SCREENSHOTS / "image.png"), full_page=True)
    for link, check in (("CycloneDX", "bomFormat"), ("SPDX", "spdxVersion")):
        with s.page.expect_download() as sbom:
            s.page.get_by_role("link", name=link, exact=True).click()
        saved_sbom = tmp_path / f"sbom-{link}.json"
        sbom.value.save_as(saved_sbom)
        assert check in json.loads(saved_sbom.read_text()), link

    # Delete a tag, confirming with its name.
    s.visit("/repositories/shop/web/tags")
    s.page.get_by_role("link", name="Delete tag 1.0").click()
    s.check_accessibility("delete tag")
    s.page.get_by_label("Type the tag's name to confirm").fill("1.0")
    s.page.get_by_role("button", name="Delete tag").click()
    s.page.wait_for_url("**/repositories/shop/web/tags")
    assert s.page.get_by_role("link", name="1.0", exact=True).count() == 0
    assert (
        httpx.get(f"{server.url}/v2/shop/web/manifests/1.0", auth=(server.username, server.password)).status_code == 404
    )

    # Quarantine an image from its page: a developer's pull is refused until it is released.
    def developer_pull() -> httpx.Response:
        return httpx.get(
            f"{server.url}/v2/shop/web/manifests/1.1",
            auth=("developer-user", PASSWORD),
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )

    assert developer_pull().status_code == 200
    s.visit("/repositories/shop/web/tags")
    s.page.get_by_role("link", name="1.1", exact=True).click()
    s.page.wait_for_url("**/images/sha256:*")
    s.page.get_by_label("Reason").fill("under review: <script>alert(1)</script>")
    s.page.get_by_role("button", name="Quarantine this image").click()
    s.page.wait_for_url("**/images/sha256:*")
    assert s.page.get_by_text("under review: <script>alert(1)</script>").is_visible()
    s.check_accessibility("quarantined image")
    refused = developer_pull()
    assert refused.status_code == 403 and refused.json()["errors"][0]["code"] == "DENIED"
    assert "under review" in refused.text
    s.visit("/security#quarantined")
    assert s.page.get_by_role("cell", name="under review: <script>alert(1)</script>").is_visible()
    s.page.get_by_role("button", name=re.compile("^Release")).click()
    s.page.wait_for_url("**/security#quarantined")
    assert s.page.get_by_text("Nothing is quarantined.").is_visible()
    assert developer_pull().status_code == 200

    # Move a tag, then revert it from its history.
    before = httpx.head(
        f"{server.url}/v2/shop/web/manifests/latest",
        auth=(server.username, server.password),
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    ).headers["Docker-Content-Digest"]
    moved = push_image(server, "shop/web", "latest", {"architecture": "arm64", "os": "linux"})
    s.visit("/repositories/shop/web/tags/latest/history", "history")
    s.page.get_by_role("button", name=f"Revert to {before[:19]}").click()
    s.page.wait_for_url("**/tags/latest/history")
    assert s.page.get_by_role("button", name=f"Revert to {moved[:19]}").is_visible()  # the move is history now
    now = _api(server, "GET", "/repositories/shop/web/tags/latest/history").json()["entries"][0]
    assert now["digest"] == before and now["actor"] == server.username

    # Trust a cosign key through the project's trust page.
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    s.visit("/projects/shop/trust")
    s.page.get_by_label("Key name").fill("release")
    s.page.get_by_label("Public key (PEM)").fill(pem)
    s.page.get_by_role("button", name="Trust this key").click()
    s.page.wait_for_url("**/projects/shop/trust")
    s.visit("/projects/shop/trust", "trust")
    assert s.page.get_by_role("cell", name="release", exact=True).is_visible()
    assert [k["name"] for k in _api(server, "GET", "/projects/shop/trust/keys").json()] == ["release"]

    # A robot account: its secret is shown once.
    s.visit("/projects/shop/members", "members")
    s.page.get_by_text("New robot account").click()
    s.page.get_by_label("Name", exact=True).fill("ci")
    s.page.get_by_label("push").check()
    s.page.get_by_role("button", name="Create robot").click()
    secret = s.page.get_by_label("Robot secret").input_value()
    s.check_accessibility("robot created")
    r = httpx.get(f"{server.url}/v2/shop/web/tags/list", auth=("robot$ci", secret))
    assert r.status_code == 200 and "latest" in r.json()["tags"]

    # The audit log, filtered and exported.
    s.visit("/audit", "audit")
    s.page.get_by_label("Action").fill("delete")
    s.page.get_by_role("button", name="Filter").click()
    s.check_accessibility("audit filtered")
    with s.page.expect_download() as download:
        s.page.get_by_role("link", name="CSV").click()
    saved = tmp_path / "audit.csv"
    download.value.save_as(saved)
    text = saved.read_text()
    assert text.startswith("id,ts,actor") and "shop/web" in text

    s.visit("/security?advisory=CVE-2024-0001", "security")
    assert s.page.get_by_role("heading", name=re.compile("^Who pulled them")).is_visible()
    with s.page.expect_download() as exposure:
        s.page.get_by_role("link", name="CSV").click()
    saved = tmp_path / "exposure.csv"
    exposure.value.save_as(saved)
    assert saved.read_text().startswith("id,ts,")
    s.page.get_by_label("Package", exact=True).fill("base-files")
    s.page.get_by_role("button", name="Find images with it").click()
    s.check_accessibility("package search")
    s.visit("/admin")
    s.page.get_by_role("button", name="Dry run: what would be collected now").click()
    assert s.page.get_by_text("Dry run, nothing removed").is_visible()
    s.check_accessibility("gc dry run")
    # The settings in force: listed, secrets only "set", the administrator's password nowhere.
    s.page.get_by_text("Settings in force").click()
    row = s.page.get_by_role("row", name=re.compile("^admin_password"))
    assert row.get_by_role("cell").nth(1).inner_text() == "set"
    assert server.password not in s.page.content()
    s.check_accessibility("settings in force")

    # A policy: refuse pulls with high findings; an immutability rule.
    s.visit("/projects/shop/settings")
    s.page.get_by_label("Refuse pulls with findings at or above").select_option("high")
    s.page.get_by_role("button", name="Save policy").click()
    s.page.wait_for_url("**/projects/shop/settings")
    assert s.page.get_by_label("Refuse pulls with findings at or above").input_value() == "high"
    s.page.get_by_label("Pattern (e.g. v*)").fill("2.*")
    s.page.get_by_role("button", name="Add rule").click()
    s.page.wait_for_url("**/projects/shop/settings")
    s.visit("/projects/shop/settings", "settings")
    policy = _api(server, "GET", "/projects/shop/scan-policy").json()
    assert policy["block_severity"] == "high"
    assert _api(server, "GET", "/projects/shop/immutable-tags").json()[0]["pattern"] == "2.*"

    s.visit("/admin", "administration")
    s.visit("/account", "account")
    s.page.get_by_label("Token name").fill("laptop")
    s.page.get_by_role("button", name="Create token").click()
    token = s.page.get_by_label("New access token").input_value()
    assert httpx.get(f"{server.url}/api/v1/me", auth=(server.username, token)).status_code == 200
    s.check_accessibility("token created")

    # Sign out: the pages send to the sign-in form again.
    s.page.get_by_role("button", name="Sign out").click()
    s.page.wait_for_url("**/login")
    s.page.goto("/projects")
    assert "/login" in s.page.url
    assert s.errors == []
    s.close()


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_what_it_may_use(server: Server, chromium: Any, role: str) -> None:
    s = Session(chromium, server)
    s.sign_in(f"{role}-user", PASSWORD)
    s.visit("/projects")
    assert s.page.get_by_role("link", name="Administration").count() == 0
    assert s.page.get_by_text("New project").count() == 0
    s.visit("/projects/shop")
    s.visit("/repositories/shop/web/tags")
    may_delete = role in ("maintainer", "admin")
    assert (s.page.get_by_role("link", name="Delete tag latest").count() == 1) is may_delete
    s.visit("/projects/shop/members")
    assert (s.page.get_by_text("New robot account").count() == 1) is (role == "admin")
    s.visit("/repositories/shop/web/tags/latest/history")
    assert (s.page.get_by_role("button", name=re.compile("^Revert to")).count() > 0) is (role != "guest")
    s.page.get_by_role("link", name="shop/web").click()
    s.page.get_by_role("link", name="latest", exact=True).click()
    s.page.wait_for_url("**/images/sha256:*")
    may_quarantine = role in ("maintainer", "admin")
    assert (s.page.get_by_role("button", name="Quarantine this image").count() == 1) is may_quarantine
    s.visit("/projects/shop/trust")
    assert (s.page.get_by_role("button", name="Trust this key").count() == 1) is may_quarantine  # maintainers
    response = s.page.goto("/admin")
    assert response is not None and response.status == 403
    s.visit("/account")
    s.close()


def test_image_values_with_script_payloads_execute_nothing(server: Server, chromium: Any) -> None:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {PAYLOAD: PAYLOAD}, "Env": [f"X={PAYLOAD}"], "Entrypoint": [PAYLOAD]},
        "history": [{"created_by": PAYLOAD}],
    }
    # A tag cannot carry markup (the reference grammar); the nearest legal one is tested too.
    digest = push_image(server, "shop/xss", "onerror-x", config, {PAYLOAD: PAYLOAD, "title": PAYLOAD})
    s = Session(chromium, server)
    s.sign_in(server.username, server.password)
    for path in ("/repositories/shop/xss/tags", f"/repositories/shop/xss/images/{digest}", "/audit", "/projects/shop"):
        s.visit(path)
        assert s.page.evaluate("typeof window.__xss") == "undefined", path
        assert s.page.locator("script:not([src])").count() == 0, path
    # The payload is shown as text.
    s.page.goto(f"/repositories/shop/xss/images/{digest}")
    assert s.page.get_by_text("<script>window.__xss=1</script>", exact=False).count() > 0
    assert s.errors == []
    s.close()


def test_pages_fit_a_phone(server: Server, chromium: Any) -> None:
    s = Session(chromium, server)
    s.page.set_viewport_size({"width": 390, "height": 844})
    s.sign_in(server.username, server.password)
    digest = _api(server, "GET", "/repositories/shop/web/manifests/latest/scan").json()["digest"]
    pages = [
        ("/projects", None),
        ("/projects/shop", None),
        ("/repositories/shop/web/tags", "tags-phone"),
        (f"/repositories/shop/web/images/{digest}", None),
        ("/projects/shop/members", None),
        ("/projects/shop/settings", None),
        ("/projects/shop/trust", None),
        ("/repositories/shop/web/tags/latest/history", None),
        ("/security", None),
        ("/audit", None),
        ("/admin", None),
        ("/account", None),
    ]
    for path, shot in pages:
        s.visit(path, shot)
        # Wide tables scroll inside their own box; the page itself never scrolls sideways.
        assert s.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
    s.close()
