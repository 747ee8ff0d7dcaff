"""Manifest push/pull/delete, content types, reference checks, size limit, referrers."""

from __future__ import annotations

import json

import pytest

from dockyard.oci import mediatypes as mt
from tests.api.conftest import Registry, sha256
from tests.api.test_blobs_uploads import assert_error


def test_push_and_pull_by_tag_and_digest(registry: Registry) -> None:
    body = registry.image("proj/app", [b"layer-1", b"layer-2"])
    r = registry.put_manifest("proj/app", "v1", body)
    assert r.status_code == 201
    d = sha256(body)
    assert r.headers["docker-content-digest"] == d
    assert r.headers["location"] == f"/v2/proj/app/manifests/{d}"
    for ref in ("v1", d):
        r = registry.request("GET", f"/v2/proj/app/manifests/{ref}", headers={"Accept": mt.OCI_MANIFEST})
        assert r.status_code == 200
        assert r.content == body  # byte-for-byte what was pushed
        assert r.headers["content-type"] == mt.OCI_MANIFEST
        assert r.headers["docker-content-digest"] == d
        h = registry.request("HEAD", f"/v2/proj/app/manifests/{ref}")
        assert h.status_code == 200 and h.headers["content-length"] == str(len(body))
        assert h.headers["docker-content-digest"] == d and h.content == b""


def test_docker_schema2_and_manifest_list(registry: Registry) -> None:
    amd = registry.image("lib/x", [b"amd"], media_type=mt.DOCKER_MANIFEST)
    arm = registry.image("lib/x", [b"arm"], config=b'{"architecture":"arm64"}', media_type=mt.DOCKER_MANIFEST)
    for body in (amd, arm):
        assert registry.put_manifest("lib/x", sha256(body), body, mt.DOCKER_MANIFEST).status_code == 201
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST_LIST,
            "manifests": [
                {
                    "mediaType": mt.DOCKER_MANIFEST,
                    "digest": sha256(b),
                    "size": len(b),
                    "platform": {"architecture": a, "os": "linux"},
                }
                for b, a in ((amd, "amd64"), (arm, "arm64"))
            ],
        }
    ).encode()
    assert registry.put_manifest("lib/x", "latest", index, mt.DOCKER_MANIFEST_LIST).status_code == 201
    r = registry.request("GET", "/v2/lib/x/manifests/latest")
    assert r.headers["content-type"] == mt.DOCKER_MANIFEST_LIST and r.content == index


def test_manifest_naming_unknown_blob_is_refused(registry: Registry) -> None:
    body = registry.image("p/a", [b"l1"])
    doc = json.loads(body)
    doc["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(b"never"), "size": 5})
    r = registry.put_manifest("p/a", "v1", json.dumps(doc).encode())
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert r.json()["errors"][0]["detail"]["digest"] == sha256(b"never")
    assert_error(registry.request("GET", "/v2/p/a/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    # A blob in another repository is not visible here either.
    other = registry.image("p/b", [b"only-in-b"])
    assert_error(registry.put_manifest("p/a", "v2", other), 400, "MANIFEST_BLOB_UNKNOWN")


def test_index_naming_unknown_manifest_is_refused(registry: Registry) -> None:
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": sha256(b"nope"), "size": 4}],
        }
    ).encode()
    assert_error(registry.put_manifest("p/a", "idx", index, mt.OCI_INDEX), 400, "MANIFEST_BLOB_UNKNOWN")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", mt.OCI_MANIFEST),
        (b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}', mt.OCI_MANIFEST),
        (b'{"schemaVersion": 1, "name": "x", "fsLayers": []}', mt.DOCKER_SCHEMA1_SIGNED),
    ],
)
def test_invalid_manifests_change_nothing(registry: Registry, body: bytes, content_type: str) -> None:
    good = registry.image("p/a", [b"l"])
    registry.put_manifest("p/a", "v1", good)
    assert_error(registry.put_manifest("p/a", "v1", body, content_type), 400, "MANIFEST_INVALID")
    assert registry.request("GET", "/v2/p/a/manifests/v1").content == good


def test_digest_reference_must_match_content(registry: Registry) -> None:
    body = registry.image("p/a", [b"l"])
    assert_error(registry.put_manifest("p/a", sha256(b"other"), body), 400, "DIGEST_INVALID")
    assert_error(registry.put_manifest("p/a", "sha256:nothex", body), 400, "DIGEST_INVALID")
    assert registry.services.catalog.tags("p/a").items == []


def test_sha512_manifest_reference(registry: Registry) -> None:
    import hashlib

    body = registry.image("p/a", [b"l"])
    d = "sha512:" + hashlib.sha512(body).hexdigest()
    r = registry.put_manifest("p/a", d, body)
    assert r.status_code == 201 and r.headers["docker-content-digest"] == d
    assert registry.request("GET", f"/v2/p/a/manifests/{d}").content == body


def test_manifest_size_limit(registry: Registry) -> None:
    body = registry.image("p/a", [b"l"], annotations={"pad": "x" * (4 * 1024 * 1024)})
    r = registry.put_manifest("p/a", "big", body)
    assert r.status_code == 413
    assert r.json()["errors"][0]["code"] == "SIZE_INVALID"
    assert "limit" in r.json()["errors"][0]["message"]
    assert_error(registry.request("GET", "/v2/p/a/manifests/big"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("tag", [".bad", "a" * 129, "has%20space"])
def test_bad_tags(registry: Registry, tag: str) -> None:
    body = registry.image("p/a", [b"l"])
    r = registry.put_manifest("p/a", tag, body)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] in {"MANIFEST_INVALID", "TAG_INVALID"}


def test_tag_moves_and_deletes(registry: Registry) -> None:
    one, two = registry.image("p/a", [b"1"]), registry.image("p/a", [b"2"])
    registry.put_manifest("p/a", "latest", one)
    registry.put_manifest("p/a", "latest", two)
    assert registry.request("GET", "/v2/p/a/manifests/latest").content == two
    # Delete by tag removes just the tag; the manifest stays reachable by digest.
    assert registry.request("DELETE", "/v2/p/a/manifests/latest").status_code == 202
    assert_error(registry.request("GET", "/v2/p/a/manifests/latest"), 404, "MANIFEST_UNKNOWN")
    assert registry.request("GET", f"/v2/p/a/manifests/{sha256(two)}").status_code == 200
    # Delete by digest removes the manifest and every tag on it.
    registry.put_manifest("p/a", "keep", one)
    registry.put_manifest("p/a", "also", one)
    assert registry.request("DELETE", f"/v2/p/a/manifests/{sha256(one)}").status_code == 202
    for ref in ("keep", "also", sha256(one)):
        assert_error(registry.request("GET", f"/v2/p/a/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
    assert_error(registry.request("DELETE", f"/v2/p/a/manifests/{sha256(one)}"), 404, "MANIFEST_UNKNOWN")
    assert_error(registry.request("GET", "/v2/nope/manifests/latest"), 404, "MANIFEST_UNKNOWN")


def test_artifacts_and_referrers(registry: Registry) -> None:
    subject_body = registry.image("p/a", [b"image"])
    registry.put_manifest("p/a", "v1", subject_body)
    subject = {"mediaType": mt.OCI_MANIFEST, "digest": sha256(subject_body), "size": len(subject_body)}
    empty = registry.push_blob("p/a", b"{}")

    def artifact(kind: str, payload: bytes) -> bytes:
        return json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "artifactType": kind,
                "config": {"mediaType": mt.OCI_EMPTY, "digest": empty, "size": 2},
                "layers": [
                    {
                        "mediaType": "application/octet-stream",
                        "digest": registry.push_blob("p/a", payload),
                        "size": len(payload),
                    }
                ],
                "subject": subject,
                "annotations": {"org.example.kind": kind},
            }
        ).encode()

    sig, sbom = artifact("application/vnd.example.sig", b"sig"), artifact("application/spdx+json", b"sbom")
    for body in (sig, sbom):
        r = registry.put_manifest("p/a", sha256(body), body)
        assert r.status_code == 201
        assert r.headers["oci-subject"] == subject["digest"]
    r = registry.request("GET", f"/v2/p/a/referrers/{subject['digest']}")
    assert r.status_code == 200 and r.headers["content-type"] == mt.OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == mt.OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert set(by_digest) == {sha256(sig), sha256(sbom)}
    assert by_digest[sha256(sig)] == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": sha256(sig),
        "size": len(sig),
        "artifactType": "application/vnd.example.sig",
        "annotations": {"org.example.kind": "application/vnd.example.sig"},
    }
    r = registry.request(
        "GET", f"/v2/p/a/referrers/{subject['digest']}", params={"artifactType": "application/spdx+json"}
    )
    assert r.headers["oci-filters-applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(sbom)]
    # Unknown subject: an empty index, not an error.
    r = registry.request("GET", f"/v2/p/a/referrers/{sha256(b'none')}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    assert_error(registry.request("GET", "/v2/p/a/referrers/bad"), 400, "DIGEST_INVALID")


def test_subject_may_be_pushed_before_its_target(registry: Registry) -> None:
    """OCI v1.1: a manifest whose subject does not exist (yet) is accepted."""
    body = registry.image("p/a", [b"x"], subject={"mediaType": mt.OCI_MANIFEST, "digest": sha256(b"later"), "size": 5})
    r = registry.put_manifest("p/a", sha256(body), body)
    assert r.status_code == 201 and r.headers["oci-subject"] == sha256(b"later")
    assert [
        m["digest"] for m in registry.request("GET", f"/v2/p/a/referrers/{sha256(b'later')}").json()["manifests"]
    ] == [sha256(body)]
