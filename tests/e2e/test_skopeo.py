"""skopeo against the real server: copy in and out, multi-arch indexes, inspect, tags, delete, auth."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, require_tool, run
from tests.e2e.layouts import add_index, all_blob_digests, build_image, descriptor, read_blob
from tests.support.http import TIMEOUT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("layouts") / "images"
    build_image(path, "app", [{"etc/app.conf": b"mode=1\n"}, {"usr/bin/tool": b"#!/bin/sh\necho hi\n" * 100}])
    build_image(path, "arm", [{"etc/app.conf": b"mode=arm\n"}, {"opt/data.bin": bytes(range(256)) * 512}], arch="arm64")
    add_index(
        path,
        "multi",
        {"app": {"architecture": "amd64", "os": "linux"}, "arm": {"architecture": "arm64", "os": "linux"}},
    )
    return path


def skopeo(*args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return run(require_tool("skopeo"), "--insecure-policy", *args, check=check)


def push(server: Server, layout: Path, tag: str, repo: str, *extra: str) -> None:
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        server.creds,
        *extra,
        f"oci:{layout}:{tag}",
        f"docker://{server.host}/{repo}",
    )


def pull(server: Server, ref: str, out: Path, tag: str, *extra: str) -> None:
    """Copy `ref` from the server into the OCI layout `out` as `tag`."""
    skopeo(
        "copy",
        *extra,
        "--src-tls-verify=false",
        "--src-creds",
        server.creds,
        f"docker://{server.host}/{ref}",
        f"oci:{out}:{tag}",
    )


def test_copy_in_and_out_preserves_every_digest(server: Server, layout: Path, tmp_path: Path) -> None:
    push(server, layout, "app", "team/app:v1")
    out = tmp_path / "out"
    pull(server, "team/app:v1", out, "v1")
    assert descriptor(out, "v1")["digest"] == descriptor(layout, "app")["digest"]
    digests = all_blob_digests(layout, "app")
    assert digests == all_blob_digests(out, "v1")
    for d in digests:
        assert read_blob(out, d) == read_blob(layout, d)


def test_multi_arch_index_round_trip(server: Server, layout: Path, tmp_path: Path) -> None:
    push(server, layout, "multi", "team/multi:latest", "--all")
    raw = skopeo(
        "inspect", "--raw", "--tls-verify=false", "--creds", server.creds, f"docker://{server.host}/team/multi:latest"
    ).stdout
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}
    out = tmp_path / "out"
    pull(server, "team/multi:latest", out, "multi", "--all")
    assert descriptor(out, "multi")["digest"] == descriptor(layout, "multi")["digest"]
    assert all_blob_digests(out, "multi") == all_blob_digests(layout, "multi")
    # Each platform resolves through the index.
    arm = skopeo(
        "inspect",
        "--tls-verify=false",
        "--creds",
        server.creds,
        "--override-arch",
        "arm64",
        f"docker://{server.host}/team/multi:latest",
    ).stdout
    assert json.loads(arm)["Architecture"] == "arm64"


def test_inspect_list_tags_and_delete(server: Server, layout: Path) -> None:
    for tag in ("1.0", "1.1", "latest"):
        push(server, layout, "app", f"team/tags:{tag}")
    info = json.loads(
        skopeo("inspect", "--tls-verify=false", "--creds", server.creds, f"docker://{server.host}/team/tags:1.0").stdout
    )
    manifest = json.loads(read_blob(layout, descriptor(layout, "app")["digest"]))
    assert info["Digest"] == descriptor(layout, "app")["digest"]
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    tags = json.loads(
        skopeo("list-tags", "--tls-verify=false", "--creds", server.creds, f"docker://{server.host}/team/tags").stdout
    )
    assert sorted(tags["Tags"]) == ["1.0", "1.1", "latest"]
    skopeo("delete", "--tls-verify=false", "--creds", server.creds, f"docker://{server.host}/team/tags:1.1")
    gone = skopeo(
        "inspect", "--tls-verify=false", "--creds", server.creds, f"docker://{server.host}/team/tags:1.1", check=False
    )
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower()
    # skopeo deletes by digest, so every tag on that manifest went with it.
    tags = json.loads(
        skopeo("list-tags", "--tls-verify=false", "--creds", server.creds, f"docker://{server.host}/team/tags").stdout
    )
    assert tags["Tags"] == []


def test_anonymous_and_wrong_credentials_are_refused(server: Server, layout: Path) -> None:
    push(server, layout, "app", "team/private:v1")
    anon = skopeo("inspect", "--tls-verify=false", "--no-creds", f"docker://{server.host}/team/private:v1", check=False)
    assert anon.returncode != 0 and ("unauthorized" in anon.stderr.lower() or "401" in anon.stderr)
    wrong = skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "admin:wrong",
        f"oci:{layout}:app",
        f"docker://{server.host}/team/private:v2",
        check=False,
    )
    assert wrong.returncode != 0 and ("unauthorized" in wrong.stderr.lower() or "401" in wrong.stderr)
    r = httpx.get(f"{server.url}/v2/team/private/tags/list", timeout=TIMEOUT)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer realm=")


def test_parallel_pushes_to_one_tag_stay_consistent(server: Server, layout: Path, tmp_path: Path) -> None:
    sources = ["app", "arm"] * 3
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        list(pool.map(lambda tag: push(server, layout, tag, "team/race:latest"), sources))
    out = tmp_path / "out"
    pull(server, "team/race:latest", out, "got")
    got = descriptor(out, "got")["digest"]
    assert got in {descriptor(layout, "app")["digest"], descriptor(layout, "arm")["digest"]}
    source_tag = "app" if got == descriptor(layout, "app")["digest"] else "arm"
    # The copy verified every blob's digest on the way out; compare the bytes too.
    for d in all_blob_digests(layout, source_tag):
        assert read_blob(out, d) == read_blob(layout, d)
