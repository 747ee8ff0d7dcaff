"""Stateless replicas (DESIGN.md decision 5): two application instances over one database and one
storage folder, each with its own engine, store object and caches, serve one client interchangeably."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.db.engine import Database
from dockyard.wiring import build_services, prepare
from tests.api.conftest import ADMIN, make_settings, sha256


@pytest.fixture
def replicas(tmp_path: Path, database: Database) -> Iterator[tuple[TestClient, TestClient]]:
    settings = make_settings(tmp_path, database)
    first = build_services(settings, db=database)
    prepare(first)
    second = build_services(settings, db=Database(database.url))
    with (
        TestClient(create_app(first), base_url="http://one.test") as a,
        TestClient(create_app(second), base_url="http://two.test") as b,
    ):
        yield a, b


def test_upload_continues_on_another_replica(replicas: tuple[TestClient, TestClient]) -> None:
    a, b = replicas
    data = bytes(range(256)) * 4096  # 1 MiB
    token = a.get("/token", params={"scope": "repository:p/app:pull,push"}, headers=ADMIN).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    location = a.post("/v2/p/app/blobs/uploads/", headers=auth).headers["location"]
    r = b.patch(location, content=data[:400_000], headers={**auth, "Content-Range": "0-399999"})
    assert r.status_code == 202
    r = a.patch(location, content=data[400_000:900_000], headers={**auth, "Content-Range": "400000-899999"})
    assert r.status_code == 202
    assert b.get(location, headers=auth).headers["range"] == "0-899999"
    r = b.put(location, params={"digest": sha256(data)}, content=data[900_000:], headers=auth)
    assert r.status_code == 201
    assert a.get(f"/v2/p/app/blobs/{sha256(data)}", headers=auth).content == data
    # A wrong digest is caught whichever replica holds (or lacks) the running hash.
    location = b.post("/v2/p/app/blobs/uploads/", headers=auth).headers["location"]
    a.patch(location, content=b"abc", headers=auth)
    r = b.put(location, params={"digest": sha256(b"abd")}, headers=auth)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_tokens_and_tags_are_shared(replicas: tuple[TestClient, TestClient]) -> None:
    a, b = replicas
    token = b.get("/token", params={"scope": "repository:p/app:pull,push"}, headers=ADMIN).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert a.get("/v2/", headers=auth).status_code == 200
    cfg = b'{"os":"linux"}'
    a.post("/v2/p/app/blobs/uploads/", params={"digest": sha256(cfg)}, content=cfg, headers=auth)
    manifest = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":'
        b'{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
        + sha256(cfg).encode()
        + b'","size":'
        + str(len(cfg)).encode()
        + b'},"layers":[]}'
    )
    r = b.put(
        "/v2/p/app/manifests/v1",
        content=manifest,
        headers={**auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 201
    assert a.get("/v2/p/app/manifests/v1", headers=auth).content == manifest
    assert b.get("/v2/p/app/tags/list", headers=auth).json()["tags"] == ["v1"]
