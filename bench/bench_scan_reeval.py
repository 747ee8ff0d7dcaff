#!/usr/bin/env python3
"""Re-evaluation of stored images after a vulnerability database update.

1. Import the real OSV advisories of ../shared/vulndb (PyPI, npm, Go, Debian, Alpine) into a database.
2. Fill a registry (SQLite by default, or --postgres URL) with IMAGES images pushed through the services:
   each has one of 10 Debian base layers (this machine's real dpkg status, ~500 packages, labelled
   bullseye so the Debian advisories apply), one of 20 Python layers (real dist-info folders of this
   virtualenv, ~100 packages each) and a small unique layer; the scanner then inventories each distinct
   layer once and matches every image.
3. Change the npm feed (as an update would) and time `update_vulndb`: the import, then the
   re-evaluation of every stored image from stored inventories (no layer is read: the blobs are
   deleted from storage first to prove it). Reports images/s and findings.

Usage:
    .venv/bin/python bench/bench_scan_reeval.py                 # 1,000 images
    .venv/bin/python bench/bench_scan_reeval.py --quick         # 200 images
    .venv/bin/python bench/bench_scan_reeval.py --postgres postgresql+psycopg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
BULLSEYE = b'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_ID="11"\n'


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), 1)


def python_layers(count: int) -> list[bytes]:
    """Real dist-info METADATA files of this virtualenv, a different slice per layer."""
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    metas = sorted(site.glob("*.dist-info/METADATA"))
    out = []
    for i in range(count):
        chosen = metas[i % 7 :: 1 + i % 3][:120]
        out.append(layer({f"usr/lib/python3/dist-packages/{m.parent.name}/METADATA": m.read_bytes() for m in chosen}))
    return out


def base_layers(count: int) -> list[bytes]:
    status = Path("/var/lib/dpkg/status").read_bytes()
    return [layer({"etc/os-release": BULLSEYE + f"BUILD_ID={i}\n".encode(), "var/lib/dpkg/status": status})
            for i in range(count)]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--images", type=int, default=0)
    ap.add_argument("--postgres", help="database URL (an empty database: its tables are created)")
    args = ap.parse_args()
    images = args.images or (200 if args.quick else 1000)

    from dockyard.config import Settings
    from dockyard.scan.vulndb import VulnDB, sources_in
    from dockyard.wiring import build_services, prepare

    shared = ROOT.parent / "shared" / "vulndb"
    work = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    try:
        t = time.perf_counter()
        db = VulnDB(work / "vulndb")
        for r in db.update(sources_in(shared)):
            assert not isinstance(r, Exception), r
        import_s = time.perf_counter() - t
        advisories = db.count()
        db.close()
        settings = Settings(
            data_dir=work, database_url=args.postgres, fsync=False, vulndb_sources=[], admin_password="bench-pass"
        )
        svc = build_services(settings)
        prepare(svc)
        bases, pythons = base_layers(10), python_layers(20)
        t = time.perf_counter()
        for i in range(images):
            layers = [bases[i % 10], pythons[i % 20], layer({"app/build": f"{i}".encode()})]
            config = json.dumps({"architecture": "amd64", "os": "linux", "n": i}).encode()
            repo = f"p{i % 10}/app{i % 100}"
            for blob in [config, *layers]:
                svc.uploads.monolithic(repo, sha(blob), [blob])
            doc = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(x), "size": len(x)}
                    for x in layers
                ],
            }
            svc.manifests.put(repo, f"v{i}", json.dumps(doc).encode(), OCI_MANIFEST)
        push_s = time.perf_counter() - t
        t = time.perf_counter()
        scanned = layers_read = 0
        while True:
            run = svc.scans.run(limit=500)
            scanned += run.scanned
            layers_read += run.layers_read
            if run.scanned + run.failed + run.skipped + run.unsupported + run.indexes == 0:
                break
        scan_s = time.perf_counter() - t

        for digest in list(svc.store.list_digests()):  # re-evaluation must not need a single layer
            svc.store.delete(digest)
        npm = str((shared / "npm" / "all.zip").resolve())
        changed = work / "npm-changed.zip"
        with zipfile.ZipFile(npm) as zin, zipfile.ZipFile(changed, "w") as zout:
            for info in zin.infolist():
                raw = zin.read(info)
                if info.filename == "GHSA-jf85-cpcp-j695.json":
                    doc = json.loads(raw)
                    doc["modified"] = "2026-11-22T00:00:00Z"
                    raw = json.dumps(doc).encode()
                zout.writestr(info, raw)
            # And one new advisory (made up for the bench, clearly named) for a package most images hold,
            # so the update changes findings and the images that gained one are recorded.
            zout.writestr(
                "DOCKYARD-BENCH-1.json",
                json.dumps(
                    {
                        "id": "DOCKYARD-BENCH-1",
                        "modified": "2026-11-22T00:00:00Z",
                        "summary": "benchmark advisory",
                        "affected": [
                            {
                                "package": {"ecosystem": "PyPI", "name": "idna"},
                                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
                            }
                        ],
                    }
                ),
            )
        t = time.perf_counter()
        result = svc.scans.update_vulndb([str(changed)])
        update_s = time.perf_counter() - t
        assert result is not None and result.images == scanned, result
        t = time.perf_counter()
        again = svc.scans.reevaluate()
        warm_s = time.perf_counter() - t
        with svc.db.engine.connect() as conn:
            findings = conn.exec_driver_sql("SELECT count(*) FROM image_findings").scalar()
            packages = conn.exec_driver_sql("SELECT count(*) FROM image_packages").scalar()
        engine = "PostgreSQL" if args.postgres else "SQLite"
        print(f"\nScan re-evaluation, {engine}, {images} images ({packages:,} package rows, {findings:,} findings)")
        print(f"  import of the shared OSV feeds ({advisories:,} advisories): {import_s:8.2f} s")
        print(f"  push of {images} images through the services:            {push_s:8.2f} s")
        print(f"  first scan: {scanned} images, {layers_read} distinct layers read: {scan_s:8.2f} s")
        print(
            f"  database update + re-evaluation of {result.images} images:  {update_s:8.2f} s "
            f"({result.images / update_s:,.0f} images/s; re-evaluation alone {result.seconds:.2f} s, "
            f"{result.changed} changed, {len(result.gained)} gained a finding)"
        )
        print(f"  re-evaluation again (warm match cache, nothing changed): {warm_s:8.2f} s ({again.images} images)")
        print("  aim: 1,000 images re-evaluated in seconds, without reading layer bytes")
        svc.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
