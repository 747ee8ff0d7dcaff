"""oras (the OCI artifact client, Python SDK): artifacts with custom types, and referrers."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import missing
from tests.e2e.conftest import Server
from tests.support.http import TIMEOUT

pytestmark = pytest.mark.e2e


def _oras_module(name: str) -> Any:
    """An oras SDK module; a missing SDK fails under DOCKYARD_REQUIRE_ALL=1 instead of skipping."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing("the oras Python SDK is not installed (the dev extra installs it)")


@pytest.fixture
def oras(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # keep logins out of ~/.docker
    client = _oras_module("oras.client").OrasClient(hostname=server.host, insecure=True)
    client.login(
        username=server.username,
        password=server.password,
        hostname=server.host,
        config_path=str(tmp_path / "docker-config" / "config.json"),
    )
    return client


def manifest_digest(server: Server, repo: str, ref: str) -> tuple[str, dict, int]:  # type: ignore[type-arg]
    token = server.token(f"repository:{repo}:pull")
    r = httpx.get(
        f"{server.url}/v2/{repo}/manifests/{ref}",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=TIMEOUT,
    )
    r.raise_for_status()
    return r.headers["docker-content-digest"], r.json(), len(r.content)


def test_push_pull_artifact_and_attach_referrer(
    server: Server,
    oras,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload = tmp_path / "policy.json"
    payload.write_bytes(json.dumps({"allow": ["team/*"]}).encode() * 50)
    config = tmp_path / "config.json"
    config.write_text("{}")
    monkeypatch.chdir(tmp_path)
    target = f"{server.host}/artifacts/policy:v1"
    r = oras.push(
        target=target,
        files=["policy.json:application/vnd.example.policy.v1+json"],
        manifest_config="config.json:application/vnd.example.config.v1+json",
        quiet=True,
    )
    assert r.status_code == 201
    digest, manifest, size = manifest_digest(server, "artifacts/policy", "v1")
    assert manifest["config"]["mediaType"] == "application/vnd.example.config.v1+json"
    assert manifest["layers"][0]["mediaType"] == "application/vnd.example.policy.v1+json"

    out = tmp_path / "pulled"
    files = oras.pull(target=target, outdir=str(out))
    assert [Path(f).read_bytes() for f in files] == [payload.read_bytes()]

    # A signature-like referrer attached to the artifact.
    sig = tmp_path / "sig.txt"
    sig.write_text("signed-by: ci")
    r = oras.push(
        target=f"{server.host}/artifacts/policy:sig",
        files=["sig.txt:application/vnd.example.sig"],
        subject=_oras_module("oras.oci").Subject(manifest["mediaType"], digest, size),
        quiet=True,
    )
    assert r.status_code == 201
    assert r.headers.get("OCI-Subject") == digest
    sig_digest, sig_manifest, _ = manifest_digest(server, "artifacts/policy", "sig")
    assert sig_manifest["subject"]["digest"] == digest

    token = server.token("repository:artifacts/policy:pull")
    auth = {"Authorization": f"Bearer {token}"}
    index = httpx.get(f"{server.url}/v2/artifacts/policy/referrers/{digest}", headers=auth, timeout=TIMEOUT).json()
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    entries = {m["digest"]: m for m in index["manifests"]}
    assert sig_digest in entries
    artifact_type = sig_manifest.get("artifactType") or sig_manifest["config"]["mediaType"]
    assert entries[sig_digest]["artifactType"] == artifact_type
    filtered = httpx.get(
        f"{server.url}/v2/artifacts/policy/referrers/{digest}",
        params={"artifactType": artifact_type},
        headers=auth,
        timeout=TIMEOUT,
    )
    assert [m["digest"] for m in filtered.json()["manifests"]] == [sig_digest]
    assert filtered.headers["oci-filters-applied"] == "artifactType"
    none = httpx.get(
        f"{server.url}/v2/artifacts/policy/referrers/{digest}",
        params={"artifactType": "application/x-none"},
        headers=auth,
        timeout=TIMEOUT,
    )
    assert none.json()["manifests"] == []
