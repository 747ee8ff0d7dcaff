"""The Security page's exposure report: the same answer as GET /api/v1/exposure, for what the
signed-in user may read, with its CSV and JSON-lines exports."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

from starlette.testclient import TestClient

from tests.api.conftest import ADMIN_PASSWORD, Registry, registry
from tests.scan.test_exposure import CVE, world
from tests.ui.conftest import sign_in

__all__ = ["registry", "world"]


def _ui(reg: Registry, username: str, password: str) -> TestClient:
    ui = TestClient(reg.http.app, base_url="http://registry.test")
    assert sign_in(ui, username, password).status_code == 303
    return ui


def test_an_administrator_sees_every_pull_and_exports_them(registry: Registry, world: dict[str, Any]) -> None:
    ui = _ui(registry, "admin", ADMIN_PASSWORD)
    page = ui.get("/security", params={"advisory": CVE})
    assert page.status_code == 200, page.text
    assert "Who pulled them: 5 pulls" in page.text
    for agent in ("skopeo/1.14", "containerd/1.7", "docker/25", "crane/0.19"):
        assert agent in page.text
    assert "other/app:1.0" in page.text and "team/app:multi" in page.text  # tags now
    assert "team/app:1.0" in page.text  # pointed at it in the window, moved away since
    r = ui.get("/security/exposure/export", params={"advisory": CVE, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 5 and {row["actor"] for row in rows} == {"admin", "eve"}


def test_a_guest_sees_only_their_projects_pulls(registry: Registry, world: dict[str, Any]) -> None:
    ui = _ui(registry, "eve", "long-enough-pw")
    page = ui.get("/security", params={"advisory": CVE})
    assert "Who pulled them: 4 pulls" in page.text
    assert "crane/0.19" not in page.text and "other/app" not in page.text
    rows = list(csv.DictReader(io.StringIO(ui.get("/security/exposure/export", params={"advisory": CVE}).text)))
    assert len(rows) == 4 and {row["repository"] for row in rows} == {"team/app"}


def test_the_window_is_days_and_bad_dates_are_refused(registry: Registry, world: dict[str, Any]) -> None:
    ui = _ui(registry, "admin", ADMIN_PASSWORD)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert "Who pulled them: 5 pulls" in ui.get("/security", params={"advisory": CVE, "since": today}).text
    past = ui.get("/security", params={"advisory": CVE, "until": "2001-01-01"}).text
    assert "Who pulled them: 0 pulls" in past and "No pulls of these images in the window" in past
    assert ui.get("/security", params={"advisory": CVE, "since": "yesterday"}).status_code == 400
    assert ui.get("/security/exposure/export", params={"advisory": CVE, "format": "xml"}).status_code == 400
    assert ui.get("/security/exposure/export").status_code == 400
    assert ui.get("/security", params={"advisory": CVE, "before": "1_99999999999999999999999"}).status_code == 400
