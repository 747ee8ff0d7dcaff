"""podman push and pull (vfs storage driver, rootful, no daemon)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, require_tool, run
from tests.e2e.layouts import build_image

pytestmark = pytest.mark.e2e


@pytest.fixture
def stores() -> Iterator[list[Path]]:
    # podman refuses a runroot longer than 50 characters, so these live directly under /tmp.
    made = [Path(tempfile.mkdtemp(prefix="dy-pm-", dir="/tmp")) for _ in range(3)]
    yield made
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def podman(store: Path, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return run(
        require_tool("podman"),
        "--storage-driver",
        "vfs",
        "--root",
        str(store / "root"),
        "--runroot",
        str(store / "run"),
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
        *args,
        check=check,
    )


def test_podman_push_and_pull(server: Server, tmp_path: Path, stores: list[Path]) -> None:
    a, b, c = stores
    layout = tmp_path / "layout"
    build_image(layout, "v1", [{"srv/index.html": b"<h1>podman</h1>\n"}])
    podman(a, "pull", f"oci:{layout}:v1")
    image_id = podman(a, "images", "--format", "{{.ID}}", "--no-trunc").stdout.split()[0]
    ref = f"{server.host}/team/podman:v1"
    podman(a, "push", "--tls-verify=false", "--creds", server.creds, image_id, ref)
    podman(b, "pull", "--tls-verify=false", "--creds", server.creds, ref)
    pulled = json.loads(podman(b, "image", "inspect", ref).stdout)[0]
    # The image ID is the digest of the config: the same image came back.
    assert pulled["Id"].removeprefix("sha256:") == image_id.removeprefix("sha256:")
    assert pulled["Architecture"] == "amd64"
    refused = podman(c, "pull", "--tls-verify=false", ref, check=False)
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.lower() or "authentication required" in refused.stderr.lower()
