"""Bad input gets a clear 4xx, never a 500, and changes nothing: numbers beyond any bound, JSON
that is huge or deep, descriptors that lie about sizes, manifests of the wrong Content-Type, null in
a NOT NULL field, NUL characters, and the management API's errors in problem+json."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.api.distribution.common import MAX_PAGE
from dockyard.db import schema as s
from dockyard.oci import mediatypes as mt
from dockyard.oci.manifest import MAX_JSON_DEPTH
from tests.api.conftest import ADMIN, Registry, sha256
from tests.api.test_blobs_uploads import assert_error

HUGE = "9" * 5000  # int() of this raises ValueError (Python caps int parsing at 4300 digits)
PROBLEM = "application/problem+json"


def snapshot(registry: Registry) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the audit log (a refusal may be audited) and the maintenance loop's
    own bookkeeping (its leases and runs: the app's background duties write them at any moment, the
    vulnerability database update at start): for "changed nothing"."""
    out = {}
    with registry.services.db.read() as conn:
        for table in s.metadata.sorted_tables:
            if table.name not in ("audit_events", "leases", "duty_runs"):
                out[table.name] = sorted(map(tuple, conn.execute(sa.select(table))), key=repr)
    return out


# --- numbers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/v2/p/a/tags/list", "/v2/_catalog"])
def test_a_page_size_beyond_any_bound_is_clamped(registry: Registry, url: str) -> None:
    registry.put_manifest("p/a", "v1", registry.image("p/a", [b"l"]))
    for n in ("99999999999999999999999", HUGE, "0" * 5000 + "7"):
        r = registry.request("GET", url, params={"n": n})
        assert r.status_code == 200, r.text
        assert len(next(iter(v for v in r.json().values() if isinstance(v, list)))) <= MAX_PAGE
    for bad in ("-1", "1e3", " 5", "5_0", "٣"):  # int() would take the last three
        assert_error(registry.request("GET", url, params={"n": bad}), 400, "PAGINATION_NUMBER_INVALID")


@pytest.mark.parametrize(("url", "last"), [("/v2/p/a/tags/list", "v1\x00"), ("/v2/_catalog", "p/a\n")])
def test_last_must_be_an_item_of_the_list(registry: Registry, url: str, last: str) -> None:
    registry.put_manifest("p/a", "v1", registry.image("p/a", [b"l"]))
    assert_error(registry.request("GET", url, params={"last": last}), 400, "PAGINATION_NUMBER_INVALID")


def test_range_positions_of_thousands_of_digits(registry: Registry) -> None:
    d = registry.push_blob("p/a", b"0123456789")
    url = f"/v2/p/a/blobs/{d}"
    r = registry.request("GET", url, headers={"Range": f"bytes=-{HUGE}"})  # a suffix longer than the blob
    assert r.status_code == 206 and r.content == b"0123456789"
    r = registry.request("GET", url, headers={"Range": f"bytes=2-{HUGE}"})
    assert r.status_code == 206 and r.content == b"23456789"
    r = registry.request("GET", url, headers={"Range": f"bytes={HUGE}-"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */10"


def test_content_range_of_thousands_of_digits(registry: Registry) -> None:
    r = registry.request("POST", "/v2/p/a/blobs/uploads/")
    location = r.headers["location"]
    before = snapshot(registry)
    r = registry.request("PATCH", location, content=b"x", headers={"Content-Range": f"{HUGE}-{HUGE}"})
    assert r.status_code == 416, r.text
    assert snapshot(registry) == before
    assert registry.request("GET", location).headers["range"] == "0-0"  # still empty


# --- manifests ----------------------------------------------------------------------------------
def _refused(registry: Registry, body: bytes, code: str = "MANIFEST_INVALID", **headers: str) -> None:
    before = snapshot(registry)
    r = registry.request(
        "PUT", "/v2/p/a/manifests/bad", content=body, headers={"Content-Type": mt.OCI_MANIFEST, **headers}
    )
    assert_error(r, 400, code)
    assert snapshot(registry) == before


def test_huge_integers_and_deep_nesting_in_a_manifest(registry: Registry) -> None:
    good = registry.image("p/a", [b"l"])
    registry.put_manifest("p/a", "v1", good)
    _refused(registry, good[:-1] + f', "x": {HUGE}}}'.encode())
    _refused(registry, good[:-1] + b', "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    _refused(registry, good[:-1] + b', "x": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}")
    _refused(registry, good[:-1] + b', "x": NaN}')  # not JSON, though Python's json module takes it
    _refused(registry, good[:-1] + b', "artifactType": "\\ud800"}')  # a lone surrogate
    # A document as deep as the limit allows is fine (the manifest itself is level 1).
    deep = good[:-1] + b', "x": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"
    assert registry.put_manifest("p/a", "deep", deep).status_code == 201


@pytest.mark.parametrize("size", [999, 10**30, 2**63, 0])
def test_descriptor_sizes_must_match_the_stored_blob(registry: Registry, size: int) -> None:
    doc = json.loads(registry.image("p/a", [b"layer"]))
    doc["layers"][0]["size"] = size
    _refused(registry, json.dumps(doc).encode())
    doc = json.loads(registry.image("p/a", [b"layer"]))
    doc["config"]["size"] += 1
    _refused(registry, json.dumps(doc).encode())


def test_index_child_sizes_must_match_the_stored_manifest(registry: Registry) -> None:
    child = registry.image("p/a", [b"c"])
    assert registry.put_manifest("p/a", sha256(child), child).status_code == 201
    entry = {"mediaType": mt.OCI_MANIFEST, "digest": sha256(child), "size": len(child) + 1}
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}).encode()
    _refused(registry, index, **{"Content-Type": mt.OCI_INDEX})
    entry["size"] = len(child)
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}).encode()
    assert registry.put_manifest("p/a", "idx", index, mt.OCI_INDEX).status_code == 201


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "", mt.DOCKER_MANIFEST])
def test_the_content_type_must_be_the_manifests_media_type(registry: Registry, content_type: str) -> None:
    body = registry.image("p/a", [b"l"])  # declares mediaType OCI_MANIFEST
    before = snapshot(registry)
    headers = {"Content-Type": content_type} if content_type else {}
    r = registry.request("PUT", "/v2/p/a/manifests/v1", content=body, headers=headers)
    assert_error(r, 400, "MANIFEST_INVALID")
    assert snapshot(registry) == before
    # With the type spelled as media types may be (case, parameters), it is accepted.
    r = registry.put_manifest("p/a", "v1", body, mt.OCI_MANIFEST.upper() + "; charset=utf-8")
    assert r.status_code == 201


# --- management API -----------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["block_unscanned", "block_denied_licences", "licence_denylist"])
def test_null_in_a_not_null_policy_field_is_422(registry: Registry, field: str) -> None:
    assert registry.request("POST", "/api/v1/projects", json={"name": "q"}).status_code == 201
    before = snapshot(registry)
    r = registry.request("PATCH", "/api/v1/projects/q/scan-policy", json={field: None})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    assert field in r.json()["detail"]
    assert snapshot(registry) == before
    # null keeps its documented meaning where there is one; omitted fields keep their value
    r = registry.request("PATCH", "/api/v1/projects/q/scan-policy", json={"scan_on_push": None})
    assert r.status_code == 200 and r.json()["block_unscanned"] is False


def test_the_service_refuses_null_too(registry: Registry) -> None:
    from dockyard.services.errors import InvalidInput

    registry.request("POST", "/api/v1/projects", json={"name": "q"})
    with pytest.raises(InvalidInput, match="cannot be null"):
        registry.services.projects.set_scan_policy("q", block_unscanned=None)


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("PUT", "/api/v1/projects/q/quota", b'{"quota_bytes": 1000000000000000000000000000000}'),
        ("PUT", "/api/v1/projects/q/retention", b'{"keep_last": 99999999999999999999}'),
        ("PUT", "/api/v1/projects/q/retention", b'{"keep_days": NaN}'),
        ("POST", "/api/v1/me/tokens", b'{"name": "t", "expires_at": 1e999}'),
        ("POST", "/api/v1/me/tokens", b'{"name": "t", "expires_at": Infinity}'),
        ("POST", "/api/v1/projects", b'{"name": "x", "typo": true}'),
        ("POST", "/api/v1/projects", b'{"name": "a\\u0000b"}'),
        ("POST", "/api/v1/projects", b'{"name": ' + HUGE.encode() + b"}"),
        ("POST", "/api/v1/projects", b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("POST", "/api/v1/projects", b"{not json"),
    ],
)
def test_unstorable_numbers_and_bodies_are_4xx_problems(registry: Registry, method: str, url: str, body: bytes) -> None:
    assert registry.request("POST", "/api/v1/projects", json={"name": "q"}).status_code == 201
    before = snapshot(registry)
    r = registry.request(method, url, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"] == PROBLEM
    assert snapshot(registry) == before


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/projects/a%00b",
        "/api/v1/users/a%00b",
        "/api/v1/robots/a%00b",
        "/api/v1/audit?actor=a%00b",
        "/api/v1/audit?before=1_" + "9" * 30,
        "/api/v1/packages/images?name=a%00b",
        "/v2/_catalog?last=a%00b",
    ],
)
def test_nul_and_unbounded_values_never_reach_the_database_as_errors(registry: Registry, url: str) -> None:
    # PostgreSQL refuses NUL in text and SQLite integers beyond 64 bits: both were 500s.
    r = registry.request("GET", url)
    assert 400 <= r.status_code < 500, r.text


def test_management_errors_are_problems(registry: Registry) -> None:
    r = registry.request("GET", "/api/v1/no/such/route")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert r.json()["status"] == 404
    r = registry.request("GET", "/api/v1/projects/a%0Ab")  # a newline in the path still reaches the API
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = registry.request("PUT", "/api/v1/projects/q")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM
    assert r.headers["allow"] == "DELETE, GET, PATCH"  # every route at the path, not only the first
    r = registry.request("POST", "/api/v1/projects", json={})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM


def test_an_internal_error_is_a_problem_too(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(registry.services.policy, "visible_projects", broken)
    with TestClient(create_app(registry.services), raise_server_exceptions=False) as client:
        r = client.get("/api/v1/projects", headers=ADMIN)
    assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "UNKNOWN" and "a bug" not in r.text


def test_registry_405_names_every_method_of_the_path(registry: Registry) -> None:
    r = registry.request("POST", "/v2/p/a/manifests/v1")
    assert r.status_code == 405
    assert r.headers["allow"] == "DELETE, GET, HEAD, PUT"
