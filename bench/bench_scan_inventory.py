#!/usr/bin/env python3
"""The scanner's inventory of a large image, against the speed of just reading its layers.

1. Build an OCI image layout from real files of this machine, one gzip layer per source: the OS
   release and dpkg database, npm's node_modules, Java jars, Go binaries (CNI plugins), Python
   dist-packages, this virtualenv's site-packages (as usr/local/lib/python3.X/site-packages), then
   GCC's and the shared libraries' folders, adding whole sources until the uncompressed layer data
   reaches --size-mb (500 MB, --quick 100 MB). Sockets, FIFOs, devices and unreadable files are
   skipped. With --work-dir the layout is kept there and reused by later runs with the same settings.
2. Baselines, each the best of N passes over all layers (N=3, --quick N=1) after one warm-up read, so
   the page cache is warm for all: (a) raw read of the blobs; (b) gzip decompression only, read to the
   end ("disk speed" for a compressed layer; (b2) is the same through zlib directly, 256 KiB of input
   per call, the floor with this zlib); (c) tar member iteration only (tarfile 'r|' over the
   gzip stream, no member data read); and, to tell the walk from the detectors, (d) Dockyard's own
   layer walk (`layer_stream` + `inventory_layer`) with no detectors.
3. Dockyard: `inventory_image(image)` (no cache), timed the same way; packages found by ecosystem.
4. A table of seconds, MB/s of uncompressed layer data, and the inventory time as a multiple of (b)
   and (c); a per-layer table; --profile adds one inventory under cProfile (top 15 functions).

The aim, "inventory streams at disk speed", means the ratio to (b) is close to 1: the inventory has
to decompress every byte, so it cannot be faster than decompression ((b), or (b2) at best). Usage:

    .venv/bin/python bench/bench_scan_inventory.py                          # >= 500 MB of layer data
    .venv/bin/python bench/bench_scan_inventory.py --quick                  # >= 100 MB
    .venv/bin/python bench/bench_scan_inventory.py --work-dir /tmp/inv --profile
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import hashlib
import io
import json
import os
import pstats
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.scan.detectors import all_detectors
from dockyard.scan.inventory import inventory_image, inventory_layer
from dockyard.scan.layers import Image, layer_stream, open_source

MB = 1_000_000
CHUNK = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYOUT_VERSION = 1  # bump when the way layers are built changes, to invalidate cached layouts


@dataclass
class Source:
    """One layer's content: (path on this machine, path in the image) pairs."""

    name: str
    entries: list[tuple[Path, str]]


@dataclass
class BuiltLayer:
    name: str
    digest: str
    size: int  # compressed blob
    uncompressed: int  # tar stream
    diff_id: str
    files: int
    skipped: int

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class Layout:
    path: Path
    layers: list[BuiltLayer]
    gzip_level: int
    build_seconds: float | None = None  # None: reused from the cache

    @property
    def compressed(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def uncompressed(self) -> int:
        return sum(layer.uncompressed for layer in self.layers)

    def blob(self, layer: BuiltLayer) -> Path:
        return self.path / "blobs" / "sha256" / layer.digest.removeprefix("sha256:")


def default_sources() -> list[Source]:
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = Path(sys.prefix) / "lib" / py / "site-packages"
    candidates = [
        Source(
            "os release + dpkg status",
            [
                (Path("/etc/os-release"), "etc/os-release"),
                (Path("/usr/lib/os-release"), "usr/lib/os-release"),
                (Path("/var/lib/dpkg/status"), "var/lib/dpkg/status"),
            ],
        ),
        Source("node_modules (npm)", [(Path("/usr/lib/node_modules"), "usr/lib/node_modules")]),
        Source("java jars", [(Path("/usr/share/java"), "usr/share/java")]),
        Source("go binaries (cni)", [(Path("/usr/lib/cni"), "usr/lib/cni")]),
        Source("python dist-packages", [(Path("/usr/lib/python3/dist-packages"), "usr/lib/python3/dist-packages")]),
        Source("venv site-packages", [(site, f"usr/local/lib/{py}/site-packages")]),
        Source("usr/lib/gcc", [(Path("/usr/lib/gcc"), "usr/lib/gcc")]),
        Source("usr/lib/x86_64-linux-gnu", [(Path("/usr/lib/x86_64-linux-gnu"), "usr/lib/x86_64-linux-gnu")]),
        Source("usr/share", [(Path("/usr/share"), "usr/share")]),
        Source("usr/lib/llvm-14", [(Path("/usr/lib/llvm-14"), "usr/lib/llvm-14")]),
    ]
    out = []
    for src in candidates:
        entries = [(p, a) for p, a in src.entries if p.exists()]
        if entries:
            out.append(Source(src.name, entries))
    return out


# --- building the layout ----------------------------------------------------------------------------


class _Counting:
    """A write-only stream that hashes and counts what passes through to another stream."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        pass


@dataclass
class _Stats:
    files: int = 0
    skipped: int = 0
    seen: set[tuple[int, int]] = field(default_factory=set)


def _add(tar: tarfile.TarFile, path: Path, arcname: str, stats: _Stats) -> None:
    """One filesystem entry as a root-owned tar member; skips what a layer would not hold or we cannot read."""
    try:
        st = os.lstat(path)
    except OSError:
        stats.skipped += 1
        return
    info = tarfile.TarInfo(arcname)
    info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if stat.S_ISREG(st.st_mode):
        try:
            with open(path, "rb") as f:
                data = f.read()  # whole file: the header's size then matches the data even if the file changes
        except OSError:
            stats.skipped += 1
            return
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        stats.files += 1
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        tar.addfile(info)
    else:  # sockets, FIFOs, devices
        stats.skipped += 1


def _add_tree(tar: tarfile.TarFile, root: Path, arcname: str, stats: _Stats) -> None:
    if not root.is_dir() or root.is_symlink():
        _add(tar, root, arcname, stats)
        return
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda _e: None):
        dirnames.sort()
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        base = arcname if rel == "." else f"{arcname}/{rel}"
        _add(tar, here, base, stats)
        for name in sorted(filenames):
            _add(tar, here / name, f"{base}/{name}", stats)
        # Symbolic links to directories are listed in dirnames but not walked (followlinks=False).
        for name in [d for d in dirnames if (here / d).is_symlink()]:
            _add(tar, here / name, f"{base}/{name}", stats)


def build_layer(blobs: Path, src: Source, level: int) -> BuiltLayer:
    tmp = blobs / f".building-{os.getpid()}"
    stats = _Stats()
    with open(tmp, "wb") as f:
        compressed = _Counting(f)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=level, mtime=0) as gz:
            plain = _Counting(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for path, arcname in src.entries:
                    _add_tree(tar, path, arcname, stats)
    digest = "sha256:" + compressed.sha.hexdigest()
    tmp.rename(blobs / digest.removeprefix("sha256:"))
    return BuiltLayer(
        src.name, digest, compressed.size, plain.size, "sha256:" + plain.sha.hexdigest(), stats.files, stats.skipped
    )


def _put(blobs: Path, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest.removeprefix("sha256:")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def build_layout(root: Path, sources: list[Source], target: int, level: int) -> Layout:
    t0 = time.monotonic()
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layers: list[BuiltLayer] = []
    for src in sources:
        if sum(x.uncompressed for x in layers) >= target:
            break
        t = time.monotonic()
        layer = build_layer(blobs, src, level)
        layers.append(layer)
        print(
            f"  layer {len(layers)}: {layer.name:<26} {layer.files:>7,} files {layer.uncompressed / MB:>8.1f} MB "
            f"-> {layer.size / MB:>7.1f} MB gzip in {time.monotonic() - t:5.1f} s"
            + (f" ({layer.skipped} skipped)" if layer.skipped else ""),
            flush=True,
        )
    total = sum(x.uncompressed for x in layers)
    if total < target:
        print(f"warning: only {total / MB:.0f} MB of layer data found on this machine (aim {target / MB:.0f} MB)")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **_put(blobs, json.dumps(config).encode())},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": x.digest, "size": x.size} for x in layers],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                **_put(blobs, json.dumps(manifest).encode()),
                "annotations": {"org.opencontainers.image.ref.name": "bench"},
            }
        ],
    }
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps(index))
    return Layout(root, layers, level, time.monotonic() - t0)


def _meta_key(sources: list[Source], target: int, level: int) -> dict[str, Any]:
    return {
        "version": LAYOUT_VERSION,
        "target": target,
        "gzip_level": level,
        "sources": [[s.name, [[str(p), a] for p, a in s.entries]] for s in sources],
    }


def get_layout(root: Path, sources: list[Source], target: int, level: int) -> Layout:
    """The cached layout under root if it was built with the same settings, else a fresh one."""
    meta_path = root / "bench-layout.json"
    key = _meta_key(sources, target, level)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            layout = Layout(root, [BuiltLayer(**x) for x in meta["layers"]], level)
            if all(layout.blob(x).exists() for x in layout.layers) and (root / "index.json").exists():
                return layout
        print(f"the layout cached in {root} was built with other settings: rebuilding it")
    for name in ("blobs", "index.json", "oci-layout", "bench-layout.json"):
        target_path = root / name
        if target_path.is_dir():
            shutil.rmtree(target_path)
        elif target_path.exists():
            target_path.unlink()
    root.mkdir(parents=True, exist_ok=True)
    layout = build_layout(root, sources, target, level)
    meta_path.write_text(json.dumps({"key": key, "layers": [x.to_json() for x in layout.layers]}))  # last: complete
    return layout


# --- measurements -----------------------------------------------------------------------------------


def raw_read(path: Path) -> None:
    buf = bytearray(CHUNK)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def decompress(path: Path) -> None:
    with open(path, "rb") as f, gzip.GzipFile(fileobj=f, mode="rb") as gz:
        while gz.read(CHUNK):
            pass


def decompress_zlib(path: Path) -> None:
    """The same decompression straight through zlib, 256 KiB of input per call: the floor with this zlib."""
    with open(path, "rb") as f:
        d = zlib.decompressobj(wbits=31)
        while chunk := f.read(256 * 1024):
            while chunk:
                d.decompress(chunk)
                chunk = d.unused_data if d.eof else b""
                if chunk:  # a further gzip member
                    d = zlib.decompressobj(wbits=31)


def tar_iterate(path: Path) -> None:
    with open(path, "rb") as f, gzip.GzipFile(fileobj=f, mode="rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
        for _member in tar:
            pass


def walk_no_detectors(path: Path) -> None:
    with open(path, "rb") as f:
        inventory_layer(layer_stream(f), [])


def inventory_one_layer(path: Path) -> None:
    with open(path, "rb") as f:
        inventory_layer(layer_stream(f))


def best_per_layer(layout: Layout, fn: Callable[[Path], None], runs: int) -> tuple[float, list[float]]:
    """Best whole pass over all layers (seconds) and that pass's per-layer times."""
    best: tuple[float, list[float]] | None = None
    for _ in range(runs):
        times = []
        for layer in layout.layers:
            t = time.perf_counter()
            fn(layout.blob(layer))
            times.append(time.perf_counter() - t)
        if best is None or sum(times) < best[0]:
            best = (sum(times), times)
    assert best is not None
    return best


def best_inventory(image: Image, runs: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        result = inventory_image(image)
        best = min(best, time.perf_counter() - t)
    return best, result


def profile_inventory(image: Image) -> None:
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    inventory_image(image)
    prof.disable()
    print(f"\ninventory_image under cProfile: {time.perf_counter() - t:.2f} s (profiling slows Python code down)")
    for order in ("cumulative", "tottime"):
        print(f"\ntop 15 by {order} time:")
        out = io.StringIO()
        pstats.Stats(prof, stream=out).strip_dirs().sort_stats(order).print_stats(15)
        text = out.getvalue()
        print(text[text.find("   ncalls") :].rstrip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="at least 100 MB of layer data, one run per measurement")
    ap.add_argument("--size-mb", type=int, default=0, help="uncompressed layer data to reach (default 500, quick 100)")
    ap.add_argument("--runs", type=int, default=0, help="best of N runs (default 3, quick 1)")
    ap.add_argument("--gzip-level", type=int, default=6, help="gzip level of the layers (default 6, as docker/gzip)")
    ap.add_argument("--work-dir", type=Path, help="build (or reuse) the layout here and keep it")
    ap.add_argument("--profile", action="store_true", help="also run the inventory once under cProfile")
    args = ap.parse_args()
    started = time.monotonic()
    target = (args.size_mb or (100 if args.quick else 500)) * MB
    runs = args.runs or (1 if args.quick else 3)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-scan-inventory-"))
    try:
        sources = default_sources()
        print(
            f"OCI layout in {work} (aim: >= {target / MB:.0f} MB of uncompressed layer data, gzip -{args.gzip_level})"
        )
        layout = get_layout(work, sources, target, args.gzip_level)
        if layout.build_seconds is None:
            print("  reused the layout built earlier in this folder:")
            for i, x in enumerate(layout.layers, 1):
                print(f"  layer {i}: {x.name:<26} {x.files:>7,} files {x.uncompressed / MB:>8.1f} MB", end="")
                print(f" -> {x.size / MB:>7.1f} MB gzip")
        else:
            print(f"  built in {layout.build_seconds:.1f} s")
        unc, comp = layout.uncompressed, layout.compressed
        print(
            f"image: {len(layout.layers)} layers, {unc / MB:,.1f} MB uncompressed (tar), "
            f"{comp / MB:,.1f} MB compressed (gzip level {layout.gzip_level}, ratio {unc / comp:.2f})"
        )

        image = open_source(layout.path).images()[0]
        all_detectors()  # import the detector modules before timing anything
        for layer in layout.layers:  # warm-up: the page cache holds every blob for every measurement
            raw_read(layout.blob(layer))
        print(f"timing: best of {runs} run(s) each, page cache warm", flush=True)

        rows: list[tuple[str, float, list[float] | None]] = []
        for label, fn in (
            ("(a) raw read of the blobs", raw_read),
            ("(b) gzip decompress only", decompress),
            ("(b2) zlib decompress only, 256 KiB reads", decompress_zlib),
            ("(c) tar member iteration (r|, no data)", tar_iterate),
            ("(d) Dockyard layer walk, no detectors", walk_no_detectors),
        ):
            seconds, per_layer = best_per_layer(layout, fn, runs)
            rows.append((label, seconds, per_layer))
            print(f"  {label}: {seconds:.2f} s", flush=True)
        inv_seconds, (packages, distro) = best_inventory(image, runs)
        rows.append(("Dockyard inventory_image (no cache)", inv_seconds, None))
        print(f"  Dockyard inventory_image: {inv_seconds:.2f} s", flush=True)
        inv_layers = best_per_layer(layout, inventory_one_layer, 1)[1]

        by_eco = Counter(p.ecosystem for p in packages)
        found = ", ".join(f"{eco} {n:,}" for eco, n in by_eco.most_common())
        print(f"\npackages found: {len(packages):,} ({found}); distro: {distro.id if distro else None}")
        if distro:
            print(f"  distro version: {distro.version_id}")

        decompress_s, tar_s = rows[1][1], rows[3][1]
        print(
            f"\n{unc / MB:,.1f} MB uncompressed / {comp / MB:,.1f} MB gzip -{layout.gzip_level}, "
            f"{len(layout.layers)} layers, best of {runs}:\n"
        )
        print("| measurement | seconds | MB/s uncompressed | MB/s compressed | inventory ÷ this |")
        print("|---|---:|---:|---:|---:|")
        for label, seconds, _ in rows:
            ratio = f"{inv_seconds / seconds:.2f}" if label.startswith(("(b", "(c)", "(d)")) else ""
            print(f"| {label} | {seconds:.2f} | {unc / MB / seconds:,.0f} | {comp / MB / seconds:,.0f} | {ratio} |")
        print(
            f"\ninventory / decompress-only (b) = {inv_seconds / decompress_s:.2f}; "
            f"inventory / tar iteration (c) = {inv_seconds / tar_s:.2f}"
        )
        print(
            'aim: "inventory streams at disk speed" = the ratio to (b) close to 1 '
            "(every byte has to be decompressed: the inventory cannot beat (b2), zlib alone)."
        )

        print("\nper layer (decompress and walk: the best pass above; inventory: one pass of inventory_layer):\n")
        print("| layer | files | MB uncompressed | (b) s | (d) s | inventory s | inventory ÷ (b) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for i, layer in enumerate(layout.layers):
            b, d, inv = rows[1][2][i], rows[4][2][i], inv_layers[i]  # type: ignore[index]
            print(
                f"| {layer.name} | {layer.files:,} | {layer.uncompressed / MB:,.1f} | {b:.2f} | {d:.2f} | {inv:.2f} "
                f"| {inv / b:.2f} |"
            )

        if args.profile:
            profile_inventory(image)
        print(f"\nwhole run: {time.monotonic() - started:.0f} s")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
