"""The distribution API on the S3 driver: pushes (monolithic and chunked, the chunks on two
replicas), pulls, ranges, and 307 redirects to presigned URLs that a real HTTP client follows to the
S3 server (moto_server) and gets the right bytes from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.db.engine import Database
from dockyard.storage.s3 import S3BlobStore
from dockyard.wiring import Services, build_services, prepare
from tests.api.conftest import ADMIN, Registry, make_settings, sha256
from tests.support.http import TIMEOUT
from tests.support.s3 import S3Server


def _services(tmp_path: Path, database: Database, s3: S3Server, bucket: str, redirect: bool) -> Services:
    settings = make_settings(tmp_path, database).model_copy(
        update={
            "storage_url": s3.url(bucket, "reg"),
            "s3_endpoint_url": s3.endpoint_url,
            "s3_region": s3.region,
            "storage_redirect": redirect,
            "storage_redirect_expiry_seconds": 300,
        }
    )
    svc = build_services(settings, db=database)
    prepare(svc)
    return svc


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    return s3_server


@pytest.fixture(params=[False, True], ids=["stream", "redirect"])
def replicas(
    request: pytest.FixtureRequest, tmp_path: Path, database: Database, s3_env: S3Server
) -> Iterator[tuple[Registry, Registry]]:
    """Two replicas (two service graphs, two apps) on one database and one bucket."""
    bucket = s3_env.new_bucket()
    a = _services(tmp_path / "a", database, s3_env, bucket, request.param)
    b = _services(tmp_path / "b", database, s3_env, bucket, request.param)
    with (
        TestClient(create_app(a), base_url="http://registry.test") as ca,
        TestClient(create_app(b), base_url="http://registry.test") as cb,
    ):
        yield Registry(ca, a), Registry(cb, b)


def _follow(reg: Registry, url: str, **headers: str) -> httpx.Response:
    """GET through the registry; a 307 is followed by a real client to the S3 server."""
    r = reg.request("GET", url, headers=headers, follow_redirects=False)
    if r.status_code == 307:
        return httpx.get(r.headers["location"], headers=headers, timeout=TIMEOUT)
    return r


def test_chunked_push_across_replicas_then_pull_and_ranges(replicas: tuple[Registry, Registry]) -> None:
    a, b = replicas
    assert isinstance(a.services.store, S3BlobStore)
    layer = os.urandom(19 * 1024 * 1024 + 321)  # several parts and a tail
    r = a.request("POST", "/v2/s3/app/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["location"]
    step = 6 * 1024 * 1024
    for i, start in enumerate(range(0, len(layer), step)):
        chunk = layer[start : start + step]
        reg = (a, b)[i % 2]  # every chunk on the other replica
        r = reg.request(
            "PATCH",
            location,
            content=chunk,
            headers={"Content-Range": f"{start}-{start + len(chunk) - 1}", "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 202, r.text
    r = b.request("PUT", location, params={"digest": sha256(layer)})
    assert r.status_code == 201, r.text
    manifest = a.image("s3/app", [layer])
    assert b.put_manifest("s3/app", "v1", manifest).status_code == 201
    redirecting = a.services.store.redirect_url(sha256(layer)) is not None
    for reg in (a, b):
        r = reg.request("GET", f"/v2/s3/app/blobs/{sha256(layer)}", follow_redirects=False)
        assert r.status_code == (307 if redirecting else 200)
        assert _follow(reg, f"/v2/s3/app/blobs/{sha256(layer)}").content == layer
        ranged = _follow(reg, f"/v2/s3/app/blobs/{sha256(layer)}", Range="bytes=1000-1999")
        assert ranged.status_code == 206 and ranged.content == layer[1000:2000]
        tail = _follow(reg, f"/v2/s3/app/blobs/{sha256(layer)}", Range="bytes=-10")
        assert tail.status_code == 206 and tail.content == layer[-10:]
        assert reg.request("HEAD", f"/v2/s3/app/blobs/{sha256(layer)}").headers["content-length"] == str(len(layer))
    bad = a.request(
        "GET", f"/v2/s3/app/blobs/{sha256(layer)}", headers={"Range": f"bytes={len(layer)}-"}, follow_redirects=False
    )
    assert bad.status_code == 416  # decided by the registry, not left to the bucket


def test_wrong_digest_leaves_nothing_in_the_bucket(replicas: tuple[Registry, Registry]) -> None:
    a, _ = replicas
    store = a.services.store
    assert isinstance(store, S3BlobStore)
    data = os.urandom(9 * 1024 * 1024)
    r = a.request("POST", "/v2/s3/bad/blobs/uploads/", params={"digest": sha256(b"not it")}, content=data)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    r = a.request("POST", "/v2/s3/bad/blobs/uploads/")
    location = r.headers["location"]
    a.request("PATCH", location, content=data[:5_000_000])
    assert a.request("DELETE", location).status_code == 204
    c = store.client
    assert c.list_objects_v2(Bucket=store.bucket).get("Contents", []) == []
    assert c.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_monolithic_push_and_pull_without_credentials_in_the_url(replicas: tuple[Registry, Registry]) -> None:
    a, b = replicas
    data = b"small config blob"
    digest = a.push_blob("s3/mono", data)
    r = b.request("GET", f"/v2/s3/mono/blobs/{digest}", follow_redirects=False)
    if r.status_code == 307:
        assert ADMIN["Authorization"].split()[1] not in r.headers["location"]
        assert "X-Amz-Signature" in r.headers["location"]
    assert _follow(b, f"/v2/s3/mono/blobs/{digest}").content == data
