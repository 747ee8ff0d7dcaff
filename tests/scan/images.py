"""Build real OCI image layouts in tests: layers as tar streams (plain, gzip or zstd) from files and
directories on disk, with whiteouts where asked."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import zstandard

Entry = bytes | Path | None  # file content, a file or directory on disk to copy, or None for a whiteout


def layer_tar(files: dict[str, Entry], compression: str = "gzip") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, entry in files.items():
            if entry is None:  # whiteout: `.wh.<name>` next to what it hides (or the opaque marker itself)
                directory, _, base = name.rpartition("/")
                marker = base if base == ".wh..wh..opq" else f".wh.{base}"
                info = tarfile.TarInfo(f"{directory}/{marker}" if directory else marker)
                tar.addfile(info, io.BytesIO(b""))
            elif isinstance(entry, Path):
                tar.add(entry, arcname=name)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(entry)
                info.mode = 0o755 if name.startswith(("usr/local/bin/", "bin/")) else 0o644
                tar.addfile(info, io.BytesIO(entry))
    raw = buf.getvalue()
    if compression == "gzip":
        return gzip.compress(raw)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def _put(root: Path, data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = root / "blobs" / "sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": digest, "size": len(data)}


PYTHON_SITE = "usr/local/lib/python3.11/site-packages"
NODE_APP = "srv/app/node_modules"


def app_layers(site_packages: Path, node_modules: Path) -> list[bytes]:
    """A Python and an npm layer: the packages where an application image keeps them."""
    return [layer_tar({PYTHON_SITE: site_packages}), layer_tar({NODE_APP: node_modules})]


def write_layout(root: Path, layers: list[bytes], ref: str = "latest", arch: str = "amd64") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_put(root, config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_put(root, x)} for x in layers],
    }
    index_path = root / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **_put(root, json.dumps(manifest).encode()),
            "annotations": {"org.opencontainers.image.ref.name": ref},
        }
    )
    index_path.write_text(json.dumps(index))
    return root


def debian_app_layout(root: Path, site_packages: Path, node_modules: Path) -> Path:
    """A Debian 11 image (OpenSSL 1.1 in its dpkg status) with Python dist-packages and an npm app: the
    image the scan tests of the CLI, the server and the scanner adapter all look at."""
    from tests.scan.test_inventory import DEBIAN_11
    from tests.scan.test_matching import BULLSEYE_STATUS

    return write_layout(
        root,
        [
            layer_tar({"etc/os-release": DEBIAN_11, "var/lib/dpkg/status": BULLSEYE_STATUS}),
            layer_tar({"usr/lib/python3/dist-packages": site_packages}),
            layer_tar({NODE_APP: node_modules}),
        ],
    )
