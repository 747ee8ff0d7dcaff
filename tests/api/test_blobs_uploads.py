"""Blob reads with ranges, and every upload flow of the distribution spec."""

from __future__ import annotations

import hashlib

import pytest

from tests.api.conftest import Registry, sha256

DATA = bytes(range(256)) * 64  # 16 KiB


def assert_error(r, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    if r.request.method != "HEAD":  # HEAD responses carry no body
        assert r.json()["errors"][0]["code"] == code


def test_monolithic_post_then_get_and_head(registry: Registry) -> None:
    d = sha256(DATA)
    r = registry.request("POST", "/v2/a/b/blobs/uploads/", params={"digest": d}, content=DATA)
    assert r.status_code == 201
    assert r.headers["location"] == f"/v2/a/b/blobs/{d}"
    assert r.headers["docker-content-digest"] == d
    r = registry.request("GET", f"/v2/a/b/blobs/{d}")
    assert r.status_code == 200 and r.content == DATA
    assert r.headers["docker-content-digest"] == d
    r = registry.request("HEAD", f"/v2/a/b/blobs/{d}")
    assert r.status_code == 200 and r.headers["content-length"] == str(len(DATA)) and r.content == b""


def test_wrong_digest_stores_nothing(registry: Registry) -> None:
    wrong = sha256(b"something else")
    r = registry.request("POST", "/v2/a/blobs/uploads/", params={"digest": wrong}, content=DATA)
    assert_error(r, 400, "DIGEST_INVALID")
    for d in (wrong, sha256(DATA)):
        assert_error(registry.request("HEAD", f"/v2/a/blobs/{d}"), 404, "BLOB_UNKNOWN")
        assert registry.services.store.stat(d) is None


@pytest.mark.parametrize("digest", ["sha256:xyz", "md5:d41d8cd98f00b204e9800998ecf8427e", "sha256:" + "A" * 64])
def test_malformed_digests(registry: Registry, digest: str) -> None:
    r = registry.request("POST", "/v2/a/blobs/uploads/", params={"digest": digest}, content=DATA)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(registry.request("GET", f"/v2/a/blobs/{digest}"), 400, "DIGEST_INVALID")


def test_sha512_blob(registry: Registry) -> None:
    d = "sha512:" + hashlib.sha512(DATA).hexdigest()
    assert registry.request("POST", "/v2/a/blobs/uploads/", params={"digest": d}, content=DATA).status_code == 201
    assert registry.request("GET", f"/v2/a/blobs/{d}").content == DATA


def test_post_then_put_with_body(registry: Registry) -> None:
    r = registry.request("POST", "/v2/a/blobs/uploads/")
    assert r.status_code == 202
    location, uuid = r.headers["location"], r.headers["docker-upload-uuid"]
    assert location.endswith(uuid) and r.headers["range"] == "0-0"
    r = registry.request("PUT", location, params={"digest": sha256(DATA)}, content=DATA)
    assert r.status_code == 201 and r.headers["docker-content-digest"] == sha256(DATA)
    assert registry.request("GET", f"/v2/a/blobs/{sha256(DATA)}").content == DATA
    # The session is gone once completed.
    assert_error(registry.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_chunked_upload_with_content_range(registry: Registry) -> None:
    location = registry.request("POST", "/v2/a/blobs/uploads/").headers["location"]
    chunks = [DATA[:5000], DATA[5000:12000], DATA[12000:]]
    offset = 0
    for chunk in chunks[:2]:
        r = registry.request(
            "PATCH",
            location,
            content=chunk,
            headers={
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert r.headers["range"] == f"0-{offset - 1}"
        location = r.headers["location"]
    r = registry.request("GET", location)
    assert r.status_code == 204 and r.headers["range"] == f"0-{offset - 1}"
    r = registry.request(
        "PUT",
        location,
        params={"digest": sha256(DATA)},
        content=chunks[2],
        headers={"Content-Range": f"{offset}-{len(DATA) - 1}"},
    )
    assert r.status_code == 201
    assert registry.request("GET", f"/v2/a/blobs/{sha256(DATA)}").content == DATA


def test_out_of_order_chunk_is_416_and_loses_nothing(registry: Registry) -> None:
    location = registry.request("POST", "/v2/a/blobs/uploads/").headers["location"]
    registry.request("PATCH", location, content=DATA[:100], headers={"Content-Range": "0-99"})
    r = registry.request("PATCH", location, content=DATA[200:300], headers={"Content-Range": "200-299"})
    assert r.status_code == 416
    assert r.headers["range"] == "0-99"
    assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    # Content-Range that disagrees with the body length.
    r = registry.request("PATCH", location, content=DATA[100:150], headers={"Content-Range": "100-199"})
    assert r.status_code == 416
    r = registry.request("PATCH", location, content=DATA[100:], headers={"Content-Range": f"100-{len(DATA) - 1}"})
    assert r.status_code == 202
    r = registry.request("PUT", location, params={"digest": sha256(DATA)})
    assert r.status_code == 201
    assert registry.request("GET", f"/v2/a/blobs/{sha256(DATA)}").content == DATA


def test_streamed_patch_without_content_range(registry: Registry) -> None:
    """Docker's client streams the whole blob in one PATCH with no Content-Range."""
    location = registry.request("POST", "/v2/a/blobs/uploads/").headers["location"]
    r = registry.request("PATCH", location, content=iter([DATA[:7000], DATA[7000:]]))
    assert r.status_code == 202 and r.headers["range"] == f"0-{len(DATA) - 1}"
    assert registry.request("PUT", r.headers["location"], params={"digest": sha256(DATA)}).status_code == 201


def test_finish_without_digest_or_with_wrong_digest(registry: Registry) -> None:
    location = registry.request("POST", "/v2/a/blobs/uploads/").headers["location"]
    registry.request("PATCH", location, content=DATA)
    assert_error(registry.request("PUT", location), 400, "DIGEST_INVALID")
    assert_error(registry.request("PUT", location, params={"digest": sha256(b"x")}), 400, "DIGEST_INVALID")
    assert registry.services.store.stat(sha256(b"x")) is None
    assert registry.services.store.stat(sha256(DATA)) is None


def test_cancel_upload(registry: Registry) -> None:
    location = registry.request("POST", "/v2/a/blobs/uploads/").headers["location"]
    registry.request("PATCH", location, content=DATA[:10])
    assert registry.request("DELETE", location).status_code == 204
    assert_error(registry.request("GET", location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(registry.request("PATCH", location, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(registry.request("DELETE", location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_session_belongs_to_its_repository(registry: Registry) -> None:
    location = registry.request("POST", "/v2/a/blobs/uploads/").headers["location"]
    uuid = location.rsplit("/", 1)[1]
    assert_error(registry.request("GET", f"/v2/other/blobs/uploads/{uuid}"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(registry.request("GET", "/v2/a/blobs/uploads/not-a-uuid"), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize(
    ("header", "status", "expected"),
    [
        ("bytes=0-9", 206, DATA[0:10]),
        ("bytes=100-", 206, DATA[100:]),
        ("bytes=-16", 206, DATA[-16:]),
        ("bytes=16380-99999", 206, DATA[16380:]),
        ("bytes=abc", 200, DATA),  # malformed Range headers are ignored (RFC 9110)
    ],
)
def test_range_reads(registry: Registry, header: str, status: int, expected: bytes) -> None:
    d = registry.push_blob("a", DATA)
    r = registry.request("GET", f"/v2/a/blobs/{d}", headers={"Range": header})
    assert r.status_code == status
    assert r.content == expected
    if status == 206:
        start = len(DATA) - len(expected) if header.startswith("bytes=-") else int(header[6:].split("-")[0])
        assert r.headers["content-range"] == f"bytes {start}-{start + len(expected) - 1}/{len(DATA)}"


@pytest.mark.parametrize("header", ["bytes=99999-", "bytes=20-10", "bytes=-0"])
def test_unsatisfiable_ranges(registry: Registry, header: str) -> None:
    d = registry.push_blob("a", DATA)
    r = registry.request("GET", f"/v2/a/blobs/{d}", headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(DATA)}"


def test_blob_visibility_is_per_repository_and_mount(registry: Registry) -> None:
    d = registry.push_blob("src/repo", DATA)
    assert_error(registry.request("HEAD", f"/v2/dst/repo/blobs/{d}"), 404, "BLOB_UNKNOWN")
    r = registry.request("POST", "/v2/dst/repo/blobs/uploads/", params={"mount": d, "from": "src/repo"})
    assert r.status_code == 201
    assert r.headers["location"] == f"/v2/dst/repo/blobs/{d}" and r.headers["docker-content-digest"] == d
    assert registry.request("GET", f"/v2/dst/repo/blobs/{d}").content == DATA
    # Source without the blob: fall back to a regular upload session.
    r = registry.request("POST", "/v2/dst/two/blobs/uploads/", params={"mount": sha256(b"zz"), "from": "src/repo"})
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["location"]


def test_delete_blob(registry: Registry) -> None:
    d = registry.push_blob("a", DATA)
    assert registry.request("DELETE", f"/v2/a/blobs/{d}").status_code == 202
    assert_error(registry.request("HEAD", f"/v2/a/blobs/{d}"), 404, "BLOB_UNKNOWN")
    assert_error(registry.request("DELETE", f"/v2/a/blobs/{d}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize("name", ["UPPER", "a//b", "-x", "a/" + "b" * 260])
def test_bad_repository_names(registry: Registry, name: str) -> None:
    assert_error(registry.request("POST", f"/v2/{name}/blobs/uploads/"), 400, "NAME_INVALID")
    assert registry.services.catalog.repositories().items == []


def test_unknown_routes_get_json_errors(registry: Registry) -> None:
    r = registry.request("GET", "/v2/a/nothing-here")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NOT_FOUND"
    r = registry.request("POST", "/v2/a/manifests/latest")
    assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_blob_missing_from_storage_is_unknown_and_can_be_pushed_again(registry: Registry) -> None:
    d = registry.push_blob("a", DATA)
    registry.services.store.delete(d)  # e.g. lost by the storage backend
    assert_error(registry.request("HEAD", f"/v2/a/blobs/{d}"), 404, "BLOB_UNKNOWN")
    assert_error(registry.request("GET", f"/v2/a/blobs/{d}"), 404, "BLOB_UNKNOWN")
    registry.push_blob("a", DATA)
    assert registry.request("GET", f"/v2/a/blobs/{d}").content == DATA


def test_mount_from_an_invalid_name_falls_back_to_upload(registry: Registry) -> None:
    r = registry.request("POST", "/v2/dst/blobs/uploads/", params={"mount": sha256(DATA), "from": "Bad//Name"})
    assert r.status_code == 202
