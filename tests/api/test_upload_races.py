"""Uploads under attack through the HTTP API: racing PATCHes, staged bytes against the quota, open
sessions per identity, and the scope an upload's status needs."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.db import schema as s
from dockyard.db.engine import Database
from dockyard.services.auth.permissions import Role
from dockyard.storage.base import UploadState
from dockyard.wiring import build_services, prepare
from tests.api.conftest import ADMIN, Registry, basic, make_settings, sha256
from tests.api.test_auth import bearer, token

WAIT = 120  # a safety net against a hang; every wait is for an event, never a delay


def test_racing_patches_never_commit_bytes_under_a_digest_they_do_not_match(registry: Registry) -> None:
    """Regression: two PATCHes without Content-Range both wrote from offset 0 and the hash cache
    kept the last finisher's hash, so `PUT ?digest=` of one body could publish the other's bytes.

    The two bodies are driven into the store's append in the order that poisoned a blob before
    (both past the offset check, A writes, B overwrites and finishes, A finishes): now the second
    request is refused with 416 while the first holds the upload, and whatever is committed
    hashes to its digest."""
    store = registry.services.store
    body_a, body_b = b"A" * (3 << 20), b"B" * (3 << 20)
    a_entered, a_go, a_wrote, a_go_on = (threading.Event() for _ in range(4))
    b_progress, b_go = threading.Event(), threading.Event()
    real_append = store.append_upload

    def held_a(chunks: list[bytes]) -> Iterator[bytes]:
        a_entered.set()
        assert a_go.wait(WAIT)
        yield from chunks
        a_wrote.set()
        assert a_go_on.wait(WAIT)

    def held_b(chunks: list[bytes]) -> Iterator[bytes]:
        b_progress.set()
        assert b_go.wait(WAIT)
        yield from chunks

    def append(upload_id: str, state: UploadState, chunks: Iterable[bytes]) -> UploadState:
        parts = list(chunks)
        held = held_a if parts[0][:1] == b"A" else held_b
        return real_append(upload_id, state, held(parts))

    store.append_upload = append  # type: ignore[method-assign]
    r = registry.request("POST", "/v2/p/app/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    responses: dict[str, httpx.Response] = {}

    def patch(key: str, body: bytes) -> None:
        responses[key] = registry.request("PATCH", location, content=body)
        if key == "b":
            b_progress.set()

    a = threading.Thread(target=patch, args=("a", body_a))
    a.start()
    assert a_entered.wait(WAIT)  # A is inside the store's append, past its offset check
    b = threading.Thread(target=patch, args=("b", body_b))
    b.start()
    assert b_progress.wait(WAIT)  # B either got into the store too (the old code) or was answered
    if "b" not in responses:
        a_go.set()
        assert a_wrote.wait(WAIT)
        b_go.set()
        b.join(WAIT)
    a_go.set()
    a_go_on.set()
    a.join(WAIT)
    b.join(WAIT)
    store.append_upload = real_append  # type: ignore[method-assign]

    assert responses["a"].status_code == 202, responses["a"].text
    status = registry.request("GET", location).headers["Range"]
    for body in (body_a, body_b):
        digest = sha256(body)
        r = registry.request("PUT", location, params={"digest": digest})
        if r.status_code == 201:
            served = registry.request("GET", f"/v2/p/app/blobs/{digest}").content
            assert "sha256:" + hashlib.sha256(served).hexdigest() == digest, "a poisoned blob"
    assert responses["b"].status_code == 416, responses["b"].text
    assert status == f"0-{len(body_a) - 1}"
    assert registry.request("HEAD", f"/v2/p/app/blobs/{sha256(body_a)}").status_code == 200
    assert registry.request("HEAD", f"/v2/p/app/blobs/{sha256(body_b)}").status_code == 404


def test_upload_status_needs_only_pull(registry: Registry) -> None:
    """GET/HEAD of an upload is a read (as in the reference registry): a client retrying after a
    416 with its pull-scoped token must learn the offset."""
    r = registry.request("POST", "/v2/team/app/blobs/uploads/")
    location = r.headers["Location"]
    registry.request("PATCH", location, content=b"12345")
    pull_only = bearer(token(registry, "repository:team/app:pull"))
    for method in ("GET", "HEAD"):
        r = registry.request(method, location, auth=False, headers=pull_only)
        assert r.status_code == 204, r.text
        assert r.headers["Range"] == "0-4"
    # Writing still needs push.
    r = registry.request("PATCH", location, auth=False, headers=pull_only, content=b"6")
    assert r.status_code == 403
    r = registry.request("DELETE", location, auth=False, headers=pull_only)
    assert r.status_code == 403
    assert registry.request("GET", location).headers["Range"] == "0-4"


@pytest.fixture
def limited(tmp_path: Path, database: Database) -> Iterator[Registry]:
    settings = make_settings(tmp_path, database).model_copy(update={"max_upload_sessions_per_identity": 3})
    svc = build_services(settings, db=database)
    prepare(svc)
    svc.projects.create("team", creator="admin")
    svc.projects.set_quota("team", 5000)
    svc.users.create("dev", "dev-password")
    svc.projects.set_member("team", "user", "dev", Role.DEVELOPER)
    with TestClient(create_app(svc), base_url="http://registry.test") as client:
        yield Registry(client, svc)


def sessions(reg: Registry) -> int:
    with reg.services.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(s.upload_sessions)).scalar() or 0)


def test_staged_bytes_count_against_the_quota_as_they_arrive(limited: Registry) -> None:
    """Regression: a project with a 1 MiB quota staged 96 MiB; only the final PUT was refused."""
    first = limited.request("POST", "/v2/team/app/blobs/uploads/").headers["Location"]
    assert limited.request("PATCH", first, content=b"a" * 3000).status_code == 202
    # Another session of the same project: its bytes and the first session's are over 5000 together.
    second = limited.request("POST", "/v2/team/other/blobs/uploads/").headers["Location"]
    assert limited.request("PATCH", second, content=b"b" * 1000).status_code == 202
    r = limited.request("PATCH", second, content=b"b" * 1001)
    # The refusal the final PUT gives: 403 DENIED, quota exceeded; the refused session is gone.
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text
    assert "quota exceeded" in r.text and "5000" in r.text
    assert limited.request("GET", second).status_code == 404
    assert limited.services.uploads.status("team/app", first.rsplit("/", 1)[1]) == 3000
    # Within the quota the first upload goes on and commits.
    assert limited.request("PATCH", first, content=b"a" * 2000).status_code == 202
    assert limited.request("PUT", first, params={"digest": sha256(b"a" * 5000)}).status_code == 201
    assert limited.http.get("/api/v1/projects/team", headers=ADMIN).json()["used_bytes"] == 5000
    # A monolithic upload of a blob the project holds costs nothing, as before.
    r = limited.request("POST", "/v2/team/third/blobs/uploads/", params={"digest": sha256(b"a" * 5000)},
                        content=b"a" * 5000)  # fmt: skip
    assert r.status_code == 201, r.text
    r = limited.request("POST", "/v2/team/third/blobs/uploads/", params={"digest": sha256(b"c")}, content=b"c")
    assert r.status_code == 403 and "quota exceeded" in r.text
    assert sessions(limited) == 0


def test_open_upload_sessions_are_capped_per_identity(limited: Registry) -> None:
    dev = basic("dev", "dev-password")
    opened = []
    for _ in range(3):
        r = limited.request("POST", "/v2/team/app/blobs/uploads/", auth=False, headers=dev)
        assert r.status_code == 202
        opened.append(r.headers["Location"])
    r = limited.request("POST", "/v2/team/app/blobs/uploads/", auth=False, headers=dev)
    assert r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS", r.text
    assert int(r.headers["Retry-After"]) > 0
    assert sessions(limited) == 3
    # Another identity is not affected; a finished or cancelled session frees a place.
    assert limited.request("POST", "/v2/team/app/blobs/uploads/").status_code == 202
    assert limited.request("DELETE", opened[0], auth=False, headers=dev).status_code == 204
    r = limited.request("PUT", opened[1], auth=False, headers=dev, params={"digest": sha256(b"x")}, content=b"x")
    assert r.status_code == 201
    for _ in range(2):
        assert limited.request("POST", "/v2/team/app/blobs/uploads/", auth=False, headers=dev).status_code == 202
    assert limited.request("POST", "/v2/team/app/blobs/uploads/", auth=False, headers=dev).status_code == 429
