"""OCI image layouts built with umoci (a real, independent OCI implementation) for the client tests."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from tests.e2e.conftest import require_tool, run

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


def build_image(layout: Path, tag: str, layers: list[dict[str, bytes]], arch: str = "amd64") -> None:
    """An image whose layers each add the given files (umoci unpack/repack per layer)."""
    umoci = require_tool("umoci")
    if not (layout / "index.json").exists():
        run(umoci, "init", "--layout", str(layout))
    run(umoci, "new", "--image", f"{layout}:{tag}")
    run(umoci, "config", "--image", f"{layout}:{tag}", "--architecture", arch, "--os", "linux")
    for i, files in enumerate(layers):
        bundle = layout.parent / f".bundle-{tag}-{i}"
        run(umoci, "unpack", "--rootless", "--image", f"{layout}:{tag}", str(bundle))
        for name, data in files.items():
            target = bundle / "rootfs" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        run(umoci, "repack", "--image", f"{layout}:{tag}", str(bundle))
        shutil.rmtree(bundle)
    run(umoci, "gc", "--layout", str(layout))


def index_json(layout: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((layout / "index.json").read_text())


def descriptor(layout: Path, tag: str) -> dict:  # type: ignore[type-arg]
    for d in index_json(layout)["manifests"]:
        if d.get("annotations", {}).get(REF_NAME) == tag:
            return dict(d)
    raise KeyError(tag)


def read_blob(layout: Path, digest: str) -> bytes:
    alg, hexd = digest.split(":", 1)
    return (layout / "blobs" / alg / hexd).read_bytes()


def add_index(layout: Path, tag: str, members: dict[str, dict[str, str]]) -> str:
    """Write a multi-platform image index naming the images tagged in `members` (tag → platform)."""
    manifests = []
    for member, platform in members.items():
        d = descriptor(layout, member)
        manifests.append({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"], "platform": platform})
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(body)
    idx = index_json(layout)
    idx["manifests"].append(
        {"mediaType": OCI_INDEX, "digest": digest, "size": len(body), "annotations": {REF_NAME: tag}}
    )
    (layout / "index.json").write_text(json.dumps(idx))
    return digest


def all_blob_digests(layout: Path, tag: str) -> set[str]:
    """Every digest reachable from a tag: manifests, configs and layers (through indexes)."""
    seen: set[str] = set()
    todo = [descriptor(layout, tag)["digest"]]
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        doc = json.loads(read_blob(layout, d))
        for child in doc.get("manifests", []):
            todo.append(child["digest"])
        if "config" in doc:
            seen.add(doc["config"]["digest"])
        for layer in doc.get("layers", []):
            seen.add(layer["digest"])
    return seen
