"""Quarantine against the real server with a real client: skopeo's pull is refused with DENIED naming
the reason, for a developer, until a maintainer releases the image; administrators still pull it."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.e2e.layouts import build_image, descriptor
from tests.e2e.test_skopeo import push, skopeo

# Each worker remembers a project's quarantines for account_check_seconds (1 s, docs/quarantine.md):
# past that, every worker answers from the database.
QUARANTINE_TTL = 1.2

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def quarantine_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quarantine") / "images"
    build_image(path, "app", [{"etc/app.conf": b"quarantine=1\n"}])
    return path


def _user(server: Server, project: str, name: str, role: str) -> str:
    password = secrets.token_urlsafe(12)
    admin = (server.username, server.password)
    r = httpx.post(f"{server.url}/api/v1/users", json={"username": name, "password": password}, auth=admin, timeout=60)
    assert r.status_code == 201, r.text
    r = httpx.put(
        f"{server.url}/api/v1/projects/{project}/members/user/{name}", json={"role": role}, auth=admin, timeout=60
    )
    assert r.status_code == 200, r.text
    return password


def _pull(server: Server, creds: str, ref: str, out: Path):  # type: ignore[no-untyped-def]
    return skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", creds, f"docker://{server.host}/{ref}", f"oci:{out}:x",
        check=False,
    )  # fmt: skip


def test_skopeo_pull_refused_while_quarantined(server: Server, quarantine_layout: Path, tmp_path: Path) -> None:
    project = f"quar{secrets.token_hex(3)}"
    push(server, quarantine_layout, "app", f"{project}/app:v1")
    digest = descriptor(quarantine_layout, "app")["digest"]
    dev = f"dev{secrets.token_hex(3)}"
    maint = f"maint{secrets.token_hex(3)}"
    dev_creds = f"{dev}:{_user(server, project, dev, 'developer')}"
    maint_auth = (maint, _user(server, project, maint, "maintainer"))
    assert _pull(server, dev_creds, f"{project}/app:v1", tmp_path / "a").returncode == 0

    url = f"{server.url}/api/v1/repositories/{project}/app/manifests/{digest}/quarantine"
    reason = "CVE-2024-3094: liblzma backdoor"
    r = httpx.post(url, json={"reason": reason}, auth=maint_auth, timeout=60)
    assert r.status_code == 201, r.text
    time.sleep(QUARANTINE_TTL)  # the other worker's view of the project's quarantines is that old at most

    refused = _pull(server, dev_creds, f"{project}/app:v1", tmp_path / "b")
    assert refused.returncode != 0
    assert "denied" in refused.stderr.lower() and reason in refused.stderr, refused.stderr
    assert "quarantined" in refused.stderr
    by_digest = _pull(server, dev_creds, f"{project}/app@{digest}", tmp_path / "c")
    assert by_digest.returncode != 0 and reason in by_digest.stderr
    # A system administrator still pulls it (to judge it).
    assert _pull(server, server.creds, f"{project}/app:v1", tmp_path / "d").returncode == 0

    assert httpx.delete(url, auth=maint_auth, timeout=60).status_code == 204
    time.sleep(QUARANTINE_TTL)
    again = _pull(server, dev_creds, f"{project}/app:v1", tmp_path / "e")
    assert again.returncode == 0, again.stderr
    assert descriptor(tmp_path / "e", "x")["digest"] == digest
