"""Pushing images and signatures (built by tests/support/signatures.py) into an in-process registry."""

from __future__ import annotations

import json
from typing import Any

from dockyard.oci import mediatypes as mt
from tests.api.conftest import Registry, sha256
from tests.support.signatures import SignedManifest, new_key, public_pem

PROJECT = "team"
REPO = f"{PROJECT}/app"


def push_image(reg: Registry, tag: str | None = None, seed: str = "x", repo: str = REPO) -> str:
    body = reg.image(repo, [f"layer {seed}".encode()], config=json.dumps({"os": "linux", "seed": seed}).encode())
    digest = sha256(body)
    r = reg.put_manifest(repo, tag or digest, body)
    assert r.status_code == 201, r.text
    return digest


def push_index(reg: Registry, children: list[str], tag: str | None = None, repo: str = REPO) -> str:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": d,
                    "size": len(reg.services.manifests.get(repo, d).content),
                    "platform": {"os": "linux", "architecture": f"arch{i}"},
                }
                for i, d in enumerate(children)
            ],
        }
    ).encode()
    digest = sha256(body)
    r = reg.put_manifest(repo, tag or digest, body, mt.OCI_INDEX)
    assert r.status_code == 201, r.text
    return digest


def push_signature(reg: Registry, signed: SignedManifest, repo: str = REPO) -> str:
    """The signature's blobs, then its manifest: by its cosign tag, or by digest for a referrer."""
    for data in signed.blobs.values():
        reg.push_blob(repo, data)
    r = reg.put_manifest(repo, signed.tag or signed.digest, signed.manifest, signed.media_type)
    assert r.status_code == 201, r.text
    return signed.digest


def signatures(reg: Registry, reference: str, repo: str = REPO) -> list[dict[str, object]]:
    r = reg.request("GET", f"/api/v1/repositories/{repo}/manifests/{reference}/signatures")
    assert r.status_code == 200, r.text
    out: list[dict[str, object]] = r.json()
    return out


def trust_key(reg: Registry, name: str = "ci", kind: str = "ecdsa-p256", project: str | None = PROJECT) -> Any:
    """A new key of `kind`, trusted in `project` (None: system-wide) through the API; returns it."""
    key = new_key(kind)
    url = "/api/v1/system/trust/keys" if project is None else f"/api/v1/projects/{project}/trust/keys"
    r = reg.request("POST", url, json={"name": name, "public_key": public_pem(key)})
    assert r.status_code == 201, r.text
    return key
