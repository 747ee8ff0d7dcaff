"""Names are what they seem: every validated name refuses a trailing newline (Python's `$` matches
before one, so `re.match("^…$")` let `latest\\n` through), through the API and in the service;
one manifest size limit; reads of an impossible tag are MANIFEST_UNKNOWN."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import dockyard
from dockyard.api.app import create_app
from dockyard.db.engine import Database
from dockyard.oci import mediatypes as mt
from dockyard.oci.errors import InvalidDigest, InvalidName, InvalidTag
from dockyard.oci.names import validate_name, validate_tag
from dockyard.services.errors import InvalidInput, NameInvalid
from dockyard.wiring import build_services, prepare
from tests.api.conftest import Registry, make_settings, sha256
from tests.api.test_bad_input import snapshot
from tests.api.test_blobs_uploads import assert_error

SRC = Path(dockyard.__file__).parent


def test_no_pattern_in_the_code_is_anchored_with_a_dollar() -> None:
    # Anchoring is fullmatch's job: a compiled "^...$" is one `.match(` away from accepting "x\n".
    sources = {path: path.read_text() for path in SRC.rglob("*.py")}
    offenders = [
        f"{path.relative_to(SRC)}: {m.group(0)}"
        for path, text in sources.items()
        for m in re.finditer(r"re\.compile\(\s*r?f?[\"'][^\"']*\$[\"']", text)
    ]
    assert offenders == []
    assert sum("re.compile(" in text for text in sources.values()) > 10  # the scan saw the code


def test_the_oci_grammar_refuses_a_trailing_newline() -> None:
    from dockyard.oci.digest import Digest

    with pytest.raises(InvalidName):
        validate_name("p/a\n")
    with pytest.raises(InvalidTag):
        validate_tag("latest\n")
    with pytest.raises(InvalidDigest):
        Digest.parse(sha256(b"x") + "\n")


def test_a_tag_with_a_trailing_newline_is_not_stored(registry: Registry) -> None:
    body = registry.image("p/a", [b"l"])
    before = snapshot(registry)
    r = registry.request("PUT", "/v2/p/a/manifests/latest%0A", content=body, headers={"Content-Type": mt.OCI_MANIFEST})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    assert snapshot(registry) == before
    assert_error(registry.request("GET", "/v2/p/a/manifests/latest%0A"), 404, "MANIFEST_UNKNOWN")


def test_a_repository_name_with_a_trailing_newline_is_refused(registry: Registry) -> None:
    with pytest.raises(NameInvalid):
        registry.services.manifests.put("p/a\n", "v1", registry.image("p/a", [b"l"]), mt.OCI_MANIFEST)
    before = snapshot(registry)
    for url in ("/v2/p/a%0A/tags/list", "/v2/p/a%0A/manifests/v1", "/v2/p/a%0A/blobs/uploads/"):
        assert 400 <= registry.request("POST" if "uploads" in url else "GET", url).status_code < 500
    assert snapshot(registry) == before


def test_a_digest_with_a_trailing_newline_is_refused(registry: Registry) -> None:
    d = registry.push_blob("p/a", b"x")
    assert_error(registry.request("GET", f"/v2/p/a/blobs/{d}%0A"), 400, "DIGEST_INVALID")
    assert_error(registry.request("GET", f"/v2/p/a/manifests/{d}%0A"), 400, "DIGEST_INVALID")
    r = registry.request("POST", "/v2/p/a/blobs/uploads/", params={"digest": d + "\n"}, content=b"x")
    assert_error(r, 400, "DIGEST_INVALID")


def test_an_upload_id_with_a_trailing_newline_is_unknown(registry: Registry) -> None:
    location = registry.request("POST", "/v2/p/a/blobs/uploads/").headers["location"]
    assert registry.request("GET", location).status_code == 204
    assert_error(registry.request("GET", location + "%0A"), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/users", {"username": "bob\n", "password": "long-enough"}),
        ("/api/v1/projects", {"name": "team\n"}),
        ("/api/v1/robots", {"name": "ci\n", "permissions": {"team": ["pull"]}}),
        ("/api/v1/robots", {"name": "ci", "permissions": {"team\n": ["pull"]}}),
        ("/api/v1/me/tokens", {"name": "laptop\n"}),
        ("/api/v1/projects/team/immutable-tags", {"pattern": "v*\n"}),
    ],
)
def test_management_names_with_a_trailing_newline_are_refused(registry: Registry, url: str, body: dict) -> None:
    assert registry.request("POST", "/api/v1/projects", json={"name": "team"}).status_code == 201
    before = snapshot(registry)
    r = registry.request("POST", url, json=body)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert snapshot(registry) == before


def test_a_group_member_with_a_trailing_newline_is_refused(registry: Registry) -> None:
    registry.request("POST", "/api/v1/projects", json={"name": "team"})
    before = snapshot(registry)
    r = registry.request("PUT", "/api/v1/projects/team/members/group/devs%0A", json={"role": "guest"})
    assert r.status_code == 400, r.text
    assert snapshot(registry) == before


def test_the_services_refuse_a_trailing_newline_too(registry: Registry) -> None:
    svc = registry.services
    svc.projects.create("team", False, creator="admin")
    calls = [
        lambda: svc.users.create("bob\n", "long-enough", False, None, False),
        lambda: svc.projects.create("team2\n", False, creator="admin"),
        lambda: svc.robots.create("ci\n", {"team": ["pull"]}),
        lambda: svc.access_tokens.create("admin", "laptop\n"),
    ]
    for call in calls:
        with pytest.raises(InvalidInput):
            call()


# --- reads of what cannot exist --------------------------------------------------------------------
def test_reading_or_deleting_an_invalid_tag_is_manifest_unknown(registry: Registry) -> None:
    registry.put_manifest("p/a", "v1", registry.image("p/a", [b"l"]))
    for method in ("GET", "HEAD", "DELETE"):
        assert_error(registry.request(method, "/v2/p/a/manifests/.INVALID_NAME"), 404, "MANIFEST_UNKNOWN")
    # A push to such a tag is still told why.
    r = registry.put_manifest("p/a", ".INVALID_NAME", registry.image("p/a", [b"l"]))
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID"


# --- one manifest size limit -------------------------------------------------------------------------
def test_a_raised_manifest_limit_admits_a_manifest_above_4_mib(tmp_path: Path, database: Database) -> None:
    settings = make_settings(tmp_path, database).model_copy(update={"max_manifest_bytes": 8 * 1024 * 1024})
    svc = build_services(settings, db=database)
    prepare(svc)
    with TestClient(create_app(svc), base_url="http://registry.test") as client:
        registry = Registry(client, svc)
        body = registry.image("p/a", [b"l"], annotations={"pad": "x" * (5 * 1024 * 1024)})
        r = registry.put_manifest("p/a", "big", body)
        assert r.status_code == 201, r.text
        assert registry.request("GET", "/v2/p/a/manifests/big").content == body
        too_big = registry.image("p/a", [b"l"], annotations={"pad": "x" * (9 * 1024 * 1024)})
        r = registry.put_manifest("p/a", "bigger", too_big)
        assert r.status_code == 413 and r.json()["errors"][0]["code"] == "SIZE_INVALID"
        # The pull gate and the scanner read the stored manifest back without a limit of their own.
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
             "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": sha256(body), "size": len(body)}]}
        ).encode()  # fmt: skip
        assert registry.put_manifest("p/a", "idx", index, mt.OCI_INDEX).status_code == 201
