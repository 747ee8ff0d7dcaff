"""An unexpected error is answered 500 in the API's error shape and logged once, as one event."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from tests.api.conftest import ADMIN, Registry


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("storage unavailable")


def test_v2_internal_error_is_one_event_and_a_spec_shaped_500(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry.services.uploads, "start", _boom)
    with capture_logs() as events:
        r = registry.http.post("/v2/team/app/blobs/uploads/", headers=ADMIN)  # the app does not re-raise
    assert r.status_code == 500
    assert r.json() == {"errors": [{"code": "UNKNOWN", "message": "internal server error", "detail": {}}]}
    errors = [e for e in events if e["log_level"] in ("error", "critical")]
    assert len(errors) == 1
    [event] = errors
    assert event["event"] == "unhandled error" and event["path"] == "/v2/team/app/blobs/uploads/"
    assert isinstance(event["exc_info"], RuntimeError)
    assert "authorization" not in str(event).lower()


def test_management_internal_error_is_one_event_and_problem_json(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry.services.policy, "visible_projects", _boom)
    with capture_logs() as events:
        r = registry.http.get("/api/v1/projects", headers=ADMIN)
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 500 and "storage unavailable" not in r.text
    assert [e["event"] for e in events if e["log_level"] == "error"] == ["unhandled error"]
