"""Bad input on the UI's pages is a clear 4xx page, never a 5xx; the UI claims only its own paths."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import ADMIN_PASSWORD, Registry
from tests.ui.conftest import sign_in

REPO = "p/app"
values = st.one_of(
    st.text(max_size=30), st.sampled_from(["-1", "0", "1e309", "nan", "inf", "nan_x", "1_", "\x00", "a\n", "9" * 30])
)


@pytest.fixture
def signed_in(registry: Registry) -> Registry:
    assert registry.put_manifest(REPO, "v1", registry.image(REPO, [b"layer"])).status_code == 201
    assert sign_in(registry.http, "admin", ADMIN_PASSWORD).status_code == 303
    return registry


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_random_query_values_never_5xx(signed_in: Registry, value: str) -> None:
    http = signed_in.http
    for url, key in (
        ("/projects", "page"),
        ("/projects/p", "page"),
        ("/projects/p", "q"),
        (f"/repositories/{REPO}/tags", "after"),
        (f"/repositories/{REPO}/tags", "q"),
        ("/audit", "since"),
        ("/audit", "before"),
        ("/audit", "actor"),
        ("/admin", "page"),
        ("/security", "advisory"),
        ("/audit/export", "format"),
    ):
        r = http.get(url, params={key: value})
        assert r.status_code < 500, (url, key, value, r.status_code, r.text[:300])


def test_the_ui_answers_only_its_own_paths(signed_in: Registry) -> None:
    http = signed_in.http
    missing = http.get("/projects/p/no/such/page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "content-security-policy" in missing.headers
    other = http.get("/no-such-thing")
    assert other.status_code == 404 and other.headers["content-type"] == "application/json"
    assert http.get("/v2/p/app/nope").headers["content-type"] == "application/json"
    # The registry's 405 keeps its Allow header (the UI's catch-all does not take /v2 paths).
    r = http.request("PATCH", "/v2/p/app/manifests/v1")
    assert r.status_code == 405 and "GET" in r.headers["allow"]
    assert http.get("/static/dockyard.css").status_code == 200
    assert http.get("/static/../app.py").status_code == 404
