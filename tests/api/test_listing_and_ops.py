"""Tag lists and catalog pagination, health, readiness and metrics."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import ADMIN, Registry, basic
from tests.api.test_blobs_uploads import assert_error


def tag_many(registry: Registry, name: str, tags: list[str]) -> None:
    body = registry.image(name, [b"l"])
    for t in tags:
        assert registry.put_manifest(name, t, body).status_code == 201


def test_tags_list_in_lexical_order_with_pagination(registry: Registry) -> None:
    tags = ["v10", "v2", "V1", "a", "latest", "_x", "b-1", "b.1", "b_1"]
    tag_many(registry, "p/a", tags)
    r = registry.request("GET", "/v2/p/a/tags/list")
    assert r.status_code == 200 and "link" not in r.headers
    assert r.json() == {"name": "p/a", "tags": sorted(tags)}  # byte order on every engine
    collected: list[str] = []
    url = "/v2/p/a/tags/list?n=4"
    pages = 0
    while url:
        r = registry.request("GET", url)
        page = r.json()["tags"]
        assert len(page) <= 4
        collected += page
        link = r.headers.get("link")
        url = link[1 : link.index(">")] if link else ""
        if link:
            assert link.endswith('rel="next"')
        pages += 1
    assert collected == sorted(tags) and pages == 3
    assert registry.request("GET", "/v2/p/a/tags/list", params={"n": 2, "last": "b.1"}).json()["tags"] == [
        "b_1",
        "latest",
    ]
    assert registry.request("GET", "/v2/p/a/tags/list", params={"n": 0}).json()["tags"] == []


@pytest.mark.parametrize("n", ["-1", "abc"])
def test_bad_page_size(registry: Registry, n: str) -> None:
    tag_many(registry, "p/a", ["x"])
    assert_error(registry.request("GET", "/v2/p/a/tags/list", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")


def test_tags_of_unknown_repository(registry: Registry) -> None:
    assert_error(registry.request("GET", "/v2/nope/tags/list"), 404, "NAME_UNKNOWN")


def test_catalog_pagination(registry: Registry) -> None:
    names = [f"team-{i % 3}/app-{i}" for i in range(7)]
    for name in names:
        registry.push_blob(name, b"x")
    assert registry.request("GET", "/v2/_catalog").json() == {"repositories": sorted(names)}
    assert "link" not in registry.request("GET", "/v2/_catalog").headers
    r = registry.request("GET", "/v2/_catalog", params={"n": 5})
    assert r.json()["repositories"] == sorted(names)[:5]
    last = sorted(names)[4]
    assert r.headers["link"] == f'</v2/_catalog?n=5&last={last.replace("/", "%2F")}>; rel="next"'
    r2 = registry.request("GET", "/v2/_catalog", params={"n": 5, "last": last})
    assert r2.json()["repositories"] == sorted(names)[5:] and "link" not in r2.headers


def test_health_ready_metrics(registry: Registry) -> None:
    assert registry.http.get("/healthz").json() == {"status": "ok"}
    r = registry.http.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"database": "ok", "storage": "ok"}
    registry.push_blob("p/a", b"y" * 1000)
    registry.request("GET", "/v2/p/a/manifests/missing")
    text = registry.http.get("/metrics", headers=ADMIN).text
    assert (
        'dockyard_http_requests_total{method="GET",route="/v2/{name:path}/manifests/{reference}",status="404"}' in text
    )
    assert "dockyard_http_request_duration_seconds_bucket" in text
    line = next(
        x
        for x in text.splitlines()
        if x.startswith('dockyard_http_request_bytes_total{route="/v2/{name:path}/blobs/uploads/"}')
    )
    assert float(line.split()[-1]) >= 1000


def test_readyz_reports_a_broken_database(registry: Registry) -> None:
    registry.services.db.engine.dispose()
    original = registry.services.db.url
    import sqlalchemy as sa

    registry.services.db.engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        r = registry.http.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["database"].startswith("error")
    finally:
        registry.services.db.engine.dispose()
        registry.services.db.engine = sa.create_engine(original)


def test_error_bodies_are_spec_shaped(registry: Registry) -> None:
    r = registry.request("GET", "/v2/p/a/manifests/v1")
    body = r.json()
    assert set(body) == {"errors"}
    assert set(body["errors"][0]) == {"code", "message", "detail"}
    json.dumps(body)


def test_catalog_default_page_size(registry: Registry) -> None:
    from dockyard.api.distribution.listing import CATALOG_DEFAULT_PAGE

    names = [f"r{i:04d}" for i in range(CATALOG_DEFAULT_PAGE + 5)]
    for name in names:
        registry.push_blob(name, b"x")
    r = registry.request("GET", "/v2/_catalog")
    assert r.json()["repositories"] == names[:CATALOG_DEFAULT_PAGE]
    assert r.headers["link"].startswith(
        f"</v2/_catalog?n={CATALOG_DEFAULT_PAGE}&last={names[CATALOG_DEFAULT_PAGE - 1]}>"
    )


def test_metrics_are_for_administrators_and_named_scrapers(registry: Registry) -> None:
    """The series name projects, private ones included: no data without the right credentials."""
    svc = registry.services
    svc.projects.create("hidden-team", creator="admin")  # private by default
    svc.users.create("dev", "dev-password-1")
    svc.users.create("prom", "prom-password-1")
    anonymous = registry.http.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    assert "hidden-team" not in anonymous.text and "dockyard_" not in anonymous.text
    wrong = registry.http.get("/metrics", headers=basic("admin", "wrong-password"))
    assert wrong.status_code == 401 and "hidden-team" not in wrong.text
    member = registry.http.get("/metrics", headers=basic("dev", "dev-password-1"))
    assert member.status_code == 403 and "hidden-team" not in member.text
    admin = registry.http.get("/metrics", headers=ADMIN)
    assert admin.status_code == 200 and 'dockyard_project_used_bytes{project="hidden-team"}' in admin.text

    svc.settings = svc.settings.model_copy(update={"metrics_users": ["prom"]})
    scraper = registry.http.get("/metrics", headers=basic("prom", "prom-password-1"))
    assert scraper.status_code == 200 and 'project="hidden-team"' in scraper.text
    assert registry.http.get("/metrics", headers=basic("dev", "dev-password-1")).status_code == 403
