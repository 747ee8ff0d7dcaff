"""The registry's read caches stay correct: a tag moved, a manifest deleted or a blob unlinked through
one replica (or worker process) is seen at once by the replica that made the change, and by another
one as soon as it hears of it (SQLite: a shared change counter; PostgreSQL: LISTEN/NOTIFY). The other
replica is polled with a generous deadline: the bound is a delivery, not a timing this test asserts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.db.changes import NotifyStamp
from dockyard.db.engine import Database
from dockyard.wiring import Services, build_services, prepare
from tests.api.conftest import ADMIN, make_settings, sha256

DEADLINE = 30.0
MEDIA = "application/vnd.oci.image.manifest.v1+json"


def _listening(services: Services) -> None:
    """On PostgreSQL, wait until the replica hears notifications (before it, nothing is cached)."""
    changes = services.db.changes
    if isinstance(changes, NotifyStamp):
        assert changes.wait_listening(DEADLINE), "the change listener did not start"


@pytest.fixture
def replicas(tmp_path: Path, database: Database) -> Iterator[tuple[TestClient, TestClient]]:
    settings = make_settings(tmp_path, database)
    first = build_services(settings, db=database)
    prepare(first)
    second_db = Database(database.url)
    second = build_services(settings, db=second_db)
    _listening(first)
    _listening(second)
    with (
        TestClient(create_app(first), base_url="http://one.test") as a,
        TestClient(create_app(second), base_url="http://two.test") as b,
    ):
        yield a, b
    second_db.dispose()


def _auth(client: TestClient, *scopes: str) -> dict[str, str]:
    token = client.get("/token", params=[("scope", s) for s in scopes], headers=ADMIN).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def _manifest(client: TestClient, auth: dict[str, str], name: str, note: str) -> bytes:
    cfg = b'{"os":"linux"}'
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(cfg)}, content=cfg, headers=auth)
    assert r.status_code == 201, r.text
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(cfg), "size": len(cfg)}
    doc = {"schemaVersion": 2, "mediaType": MEDIA, "config": config, "layers": [], "annotations": {"note": note}}
    return json.dumps(doc).encode()


def _put(client: TestClient, auth: dict[str, str], name: str, ref: str, body: bytes) -> None:
    r = client.put(f"/v2/{name}/manifests/{ref}", content=body, headers={**auth, "Content-Type": MEDIA})
    assert r.status_code == 201, r.text


def _eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, "the other replica never saw the change"
        time.sleep(0.02)


def test_a_moved_tag_is_seen_at_once_here_and_soon_by_the_other_replica(
    replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = replicas
    auth = _auth(a, "repository:p/app:pull,push")
    first, second = _manifest(a, auth, "p/app", "one"), _manifest(a, auth, "p/app", "two")
    _put(a, auth, "p/app", "v1", first)
    for client in (a, b, a, b):  # read twice on each: the second answer is the remembered one
        r = client.get("/v2/p/app/manifests/v1", headers=auth)
        assert r.content == first and r.headers["docker-content-digest"] == sha256(first)
    _put(a, auth, "p/app", "v1", second)
    r = a.get("/v2/p/app/manifests/v1", headers=auth)
    assert r.content == second and r.headers["docker-content-digest"] == sha256(second)
    _eventually(lambda: b.get("/v2/p/app/manifests/v1", headers=auth).content == second)


def test_a_deleted_manifest_is_not_served_from_memory(replicas: tuple[TestClient, TestClient]) -> None:
    a, b = replicas
    auth = _auth(a, "repository:p/app:pull,push,delete", "repository:p/other:pull,push,delete")
    body = _manifest(a, auth, "p/app", "gone")
    _manifest(a, auth, "p/other", "gone")
    digest = sha256(body)
    for name in ("p/app", "p/other"):  # the same content in two repositories: one copy in memory
        _put(a, auth, name, "v1", body)
    for client in (a, b, a, b):
        for name in ("p/app", "p/other"):
            assert client.get(f"/v2/{name}/manifests/{digest}", headers=auth).status_code == 200
            assert client.get(f"/v2/{name}/manifests/v1", headers=auth).status_code == 200
    assert a.delete(f"/v2/p/app/manifests/{digest}", headers=auth).status_code == 202
    for ref in (digest, "v1"):
        assert a.get(f"/v2/p/app/manifests/{ref}", headers=auth).status_code == 404
        _eventually(lambda ref=ref: b.get(f"/v2/p/app/manifests/{ref}", headers=auth).status_code == 404)
    # The other repository still has it: the content stays servable there.
    for client in (a, b):
        assert client.get(f"/v2/p/other/manifests/{digest}", headers=auth).content == body


def test_an_unlinked_blob_is_unknown_at_once_here_and_soon_on_the_other_replica(
    replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = replicas
    auth = _auth(a, "repository:p/app:pull,push,delete")
    data = b"some layer bytes"
    r = a.post("/v2/p/app/blobs/uploads/", params={"digest": sha256(data)}, content=data, headers=auth)
    assert r.status_code == 201
    url = f"/v2/p/app/blobs/{sha256(data)}"
    for client in (a, b, a, b):
        assert client.head(url, headers=auth).status_code == 200
    assert a.delete(url, headers=auth).status_code == 202
    assert a.head(url, headers=auth).status_code == 404
    _eventually(lambda: b.head(url, headers=auth).status_code == 404)


def test_a_new_tag_is_listed_at_once_here_and_soon_on_the_other_replica(
    replicas: tuple[TestClient, TestClient],
) -> None:
    a, b = replicas
    auth = _auth(a, "repository:p/app:pull,push")
    body = _manifest(a, auth, "p/app", "listed")
    _put(a, auth, "p/app", "v1", body)
    for client in (a, b, a, b):
        assert client.get("/v2/p/app/tags/list", headers=auth).json()["tags"] == ["v1"]
    _put(a, auth, "p/app", "v2", body)
    assert a.get("/v2/p/app/tags/list", headers=auth).json()["tags"] == ["v1", "v2"]
    _eventually(lambda: b.get("/v2/p/app/tags/list", headers=auth).json()["tags"] == ["v1", "v2"])
