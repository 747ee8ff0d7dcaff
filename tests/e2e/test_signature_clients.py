"""Signature policies with real clients against the real server (SQLite, and PostgreSQL with two
workers): skopeo and oras-py pulls refused with DENIED while an image has no verified signature, and
allowed once a signature (built from the cosign spec in tests/support/signatures.py and pushed with
skopeo) has been verified by the server's background duty; and signed tags: push by digest, sign,
then tag."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.conftest import missing
from tests.e2e.conftest import DOCKYARD, Server, require_tool, run
from tests.e2e.layouts import build_image, descriptor
from tests.support.signatures import SignedManifest, make_cosign_signature, new_key, public_pem

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sig-layouts") / "images"
    build_image(path, "app", [{"etc/app.conf": b"signed=1\n"}])
    build_image(path, "other", [{"etc/app.conf": b"signed=2\n"}])
    return path


def skopeo(*args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return run(require_tool("skopeo"), "--insecure-policy", *args, check=check)


def api(server: Server, method: str, path: str, **kw: Any) -> httpx.Response:
    # A generous timeout: each Basic login is a full-cost argon2 verification in the server process.
    return httpx.request(
        method, f"{server.url}/api/v1{path}", auth=(server.username, server.password), timeout=60, **kw
    )


def project_with_key(server: Server) -> tuple[str, Any]:
    project = f"signed{uuid.uuid4().hex[:8]}"
    assert api(server, "POST", "/projects", json={"name": project}).status_code == 201
    key = new_key()
    r = api(server, "POST", f"/projects/{project}/trust/keys", json={"name": "ci", "public_key": public_pem(key)})
    assert r.status_code == 201, r.text
    return project, key


def push(server: Server, layout: Path, tag: str, dest: str, check: bool = True):  # type: ignore[no-untyped-def]
    return skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        server.creds,
        f"oci:{layout}:{tag}",
        f"docker://{server.host}/{dest}",
        check=check,
    )


def pull(server: Server, ref: str, out: Path, check: bool = True):  # type: ignore[no-untyped-def]
    return skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        server.creds,
        f"docker://{server.host}/{ref}",
        f"oci:{out}:x",
        check=check,
    )


def set_policy(server: Server, project: str, **policy: object) -> None:
    r = api(server, "PATCH", f"/projects/{project}/trust-policy", json=policy)
    assert r.status_code == 200, r.text
    # Each server process remembers a project's policy for `account_check_seconds` (1 s): the other
    # worker may answer from what it read before the change until then.
    time.sleep(1.5)


def signature_layout(path: Path, signed: SignedManifest) -> Path:
    """The signature as an OCI layout, for skopeo to push byte for byte."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for digest, data in {**signed.blobs, signed.digest: signed.manifest}.items():
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": signed.media_type,
                "digest": signed.digest,
                "size": len(signed.manifest),
                "annotations": {"org.opencontainers.image.ref.name": "sig"},
            }
        ],
    }
    (path / "index.json").write_text(json.dumps(index))
    return path


def sign(server: Server, repo: str, digest: str, key: Any, tmp: Path) -> str:
    """Push a cosign signature of `digest` with skopeo, then wait for the server to verify it."""
    signed = make_cosign_signature(digest, key, docker_reference=f"{server.host}/{repo}")
    assert signed.tag is not None
    sig_layout = signature_layout(tmp / f"sig-{uuid.uuid4().hex[:6]}", signed)
    skopeo(
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        server.creds,
        f"oci:{sig_layout}:sig",
        f"docker://{server.host}/{repo}:{signed.tag}",
    )
    wait_verified(server, repo, digest)
    return signed.digest


def wait_verified(server: Server, repo: str, digest: str) -> None:
    """Until the server's `signatures` duty has verified the image's one signature."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = api(server, "GET", f"/repositories/{repo}/manifests/{digest}/signatures")
        assert r.status_code == 200, r.text
        states = [e["state"] for e in r.json()]
        if states and states[0] != "pending":
            assert states == ["verified"], r.json()
            return
        time.sleep(0.5)
    raise AssertionError("the signature was not verified within 60 s")


def test_skopeo_pull_refused_until_signed(server: Server, layout: Path, tmp_path: Path) -> None:
    project, key = project_with_key(server)
    repo = f"{project}/app"
    push(server, layout, "app", f"{repo}:v1")
    set_policy(server, project, require_signature=True)
    refused = pull(server, f"{repo}:v1", tmp_path / "out1", check=False)
    assert refused.returncode != 0
    assert "denied" in refused.stderr.lower() and "signature" in refused.stderr, refused.stderr
    digest = descriptor(layout, "app")["digest"]
    sign(server, repo, digest, key, tmp_path)
    pull(server, f"{repo}:v1", tmp_path / "out2")
    assert json.loads((tmp_path / "out2" / "index.json").read_text())["manifests"][0]["digest"] == digest
    # The signature itself is pullable under the policy (clients read it to verify).
    pull(server, f"{repo}:{digest.replace(':', '-')}.sig", tmp_path / "out3")


def _oras(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    try:
        client_module = importlib.import_module("oras.client")
    except ImportError:
        missing("the oras Python SDK is not installed (the dev extra installs it)")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    client = client_module.OrasClient(hostname=server.host, insecure=True)
    client.login(
        username=server.username,
        password=server.password,
        hostname=server.host,
        config_path=str(tmp_path / "docker-config" / "config.json"),
    )
    return client


def test_oras_pull_refused_until_signed(
    server: Server, layout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, key = project_with_key(server)
    repo = f"{project}/artifact"
    oras = _oras(server, tmp_path, monkeypatch)
    (tmp_path / "data.txt").write_text("payload")
    monkeypatch.chdir(tmp_path)
    r = oras.push(target=f"{server.host}/{repo}:v1", files=["data.txt:text/plain"], quiet=True)
    assert r.status_code == 201
    digest = r.headers["Docker-Content-Digest"]
    set_policy(server, project, require_signature=True)
    # oras-py takes every 403 for a request to authenticate, tries again, and then gives up with
    # "Cannot respond to request for authentication": refused, though it does not show the reason.
    # Its retry decorator sleeps 2 + 3**n seconds between its five attempts (131 s in all): the
    # attempts still run, without the waits.
    with monkeypatch.context() as m:
        m.setattr("oras.decorator.time", SimpleNamespace(sleep=lambda seconds: None))
        with pytest.raises(ValueError, match="authentication"):
            oras.pull(target=f"{server.host}/{repo}:v1", outdir=str(tmp_path / "o1"))
    # What the server answered it: DENIED, naming the gate.
    token = server.token(f"repository:{repo}:pull")
    r = httpx.get(
        f"{server.url}/v2/{repo}/manifests/v1",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text
    assert r.json()["errors"][0]["detail"]["gate"] == "signature"
    sign(server, repo, digest, key, tmp_path)
    files = oras.pull(target=f"{server.host}/{repo}:v1", outdir=str(tmp_path / "o2"))
    assert [Path(f).read_text() for f in files] == ["payload"]


def test_signed_tags_with_skopeo_push_by_digest_sign_then_tag(server: Server, layout: Path, tmp_path: Path) -> None:
    project, _ = project_with_key(server)
    repo = f"{project}/app"
    set_policy(server, project, signed_tags=["v*", "release-*"])
    refused = push(server, layout, "other", f"{repo}:v1", check=False)
    assert refused.returncode != 0 and "denied" in refused.stderr.lower() and "then tag" in refused.stderr
    digest = descriptor(layout, "other")["digest"]
    push(server, layout, "other", f"{repo}@{digest}")  # by digest: no tag, no gate
    # Signed with `dockyard sign` (the cosign tag scheme) with a key pair from `dockyard keys generate`,
    # as docs/trust.md shows it; the project trusts its public half.
    env = {**os.environ, "COSIGN_PASSWORD": "e2e-password"}
    prefix = tmp_path / "cosign"
    subprocess.run(
        [str(DOCKYARD), "keys", "generate", "--output-key-prefix", str(prefix)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    r = api(
        server,
        "POST",
        f"/projects/{project}/trust/keys",
        json={"name": "release", "public_key": (tmp_path / "cosign.pub").read_text()},
    )
    assert r.status_code == 201, r.text
    signing = subprocess.run(
        [
            str(DOCKYARD),
            "sign",
            f"{server.host}/{repo}@{digest}",
            "--key",
            f"{prefix}.key",
            "--plain-http",
            "--username",
            server.username,
            "--password",
            server.password,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert signing.returncode == 0, signing.stderr
    wait_verified(server, repo, digest)
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        server.creds,
        "--dest-creds",
        server.creds,
        f"docker://{server.host}/{repo}@{digest}",
        f"docker://{server.host}/{repo}:v1",
    )
    tags = skopeo("list-tags", "--tls-verify=false", "--creds", server.creds, f"docker://{server.host}/{repo}")
    assert "v1" in json.loads(tags.stdout)["Tags"]
