"""The background collector in the real server (two worker processes on PostgreSQL share it through a
lease): skopeo pushes, a tag is deleted, the bytes go from storage while the server keeps serving,
and the same image can be pushed and pulled again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PATIENCE, Server, require_tool, run, running_server
from tests.e2e.layouts import build_image
from tests.support.http import TIMEOUT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gc_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    data = tmp_path_factory.mktemp(f"gc-{request.param}")
    # A short grace period (a push has 3 s between its layers and its manifest) and a busy collector.
    env = {"DOCKYARD_GC_GRACE_SECONDS": "3", "DOCKYARD_GC_INTERVAL_SECONDS": "1", "DOCKYARD_TAG_HISTORY_KEEP_DAYS": "0"}
    with running_server(data, request.param, env) as srv:
        yield srv, data / "storage"


def skopeo(*args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return run(require_tool("skopeo"), "--insecure-policy", *args, check=check)


def blob_files(storage: Path) -> set[str]:
    return {p.name for p in (storage / "blobs").rglob("*") if p.is_file()}


def test_deleted_image_is_collected_while_serving(gc_server: tuple[Server, Path], tmp_path: Path) -> None:
    server, storage = gc_server
    layout = tmp_path / "layout"
    build_image(layout, "keep", [{"etc/keep": b"kept\n" * 100}])
    build_image(layout, "doomed", [{"etc/doomed": b"doomed\n" * 1000}])
    for tag in ("keep", "doomed"):
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", server.creds, f"oci:{layout}:{tag}",
               f"docker://{server.host}/team/gc:{tag}")  # fmt: skip
    before = blob_files(storage)
    skopeo("delete", "--tls-verify=false", "--creds", server.creds, f"docker://{server.host}/team/gc:doomed")
    deadline = time.monotonic() + PATIENCE
    while len(before - blob_files(storage)) < 2:  # until both are gone, not for a fixed while
        assert time.monotonic() < deadline, f"the background collector removed {before - blob_files(storage)}"
        time.sleep(0.5)
    gone = before - blob_files(storage)
    assert len(gone) == 2  # the doomed image's layer and config; the shared nothing
    inspected = json.loads(
        skopeo("inspect", "--tls-verify=false", "--creds", server.creds, f"docker://{server.host}/team/gc:keep").stdout
    )
    assert inspected["Digest"].startswith("sha256:")
    # Push the collected image again: the registry asks for the bytes again and serves them.
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", server.creds, f"oci:{layout}:doomed",
           f"docker://{server.host}/team/gc:doomed")  # fmt: skip
    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", "--src-creds", server.creds, f"docker://{server.host}/team/gc:doomed",
           f"oci:{out}:doomed")  # fmt: skip
    # The kept image is whole, however far the collector's run had gone when `gone` was counted.
    skopeo("copy", "--src-tls-verify=false", "--src-creds", server.creds, f"docker://{server.host}/team/gc:keep",
           f"oci:{out}:keep")  # fmt: skip
    events = httpx.get(
        f"{server.url}/api/v1/audit",
        params={"actor": "system:gc"},
        auth=(server.username, server.password),
        timeout=TIMEOUT,
    ).json()["events"]
    # skopeo deletes the manifest itself (by digest); the collector removed its blobs.
    assert {e["action"] for e in events} == {"gc.blob"} and len(events) >= 2
