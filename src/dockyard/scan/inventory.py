"""Inventory: the packages in an image's final filesystem.

Each layer is read once, as a stream, into a `LayerInventory` (packages found, paths its whiteouts
delete, directories it makes opaque, the files it holds that detectors read). That result depends only
on the layer's bytes, so it is stored by layer digest and shared by every image with the layer;
`combine` then applies the layers in order — later files replace earlier ones, whiteouts and opaque
directories hide what is below — to get the image's packages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any, Protocol

from packageurl import PackageURL

from dockyard.scan.detectors import Detector, all_detectors
from dockyard.scan.layers import Image, layer_stream
from dockyard.scan.model import APK, DEB, RPM, Distro, Package
from dockyard.scan.tarstream import TarStream

OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass
class LayerInventory:
    packages: list[Package] = field(default_factory=list)
    read_paths: list[str] = field(default_factory=list)  # files here that detectors read (they replace lower ones)
    whiteouts: list[str] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)
    os_release: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> fields

    def to_json(self) -> dict[str, Any]:
        return {
            "packages": [{**asdict(p), "distro": None} for p in self.packages],
            "read_paths": self.read_paths,
            "whiteouts": self.whiteouts,
            "opaque": self.opaque,
            "os_release": self.os_release,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LayerInventory:
        return cls(
            [Package(**{**p, "distro": None}) for p in doc["packages"]],
            list(doc["read_paths"]),
            list(doc["whiteouts"]),
            list(doc["opaque"]),
            dict(doc["os_release"]),
        )


def _clean(name: str) -> str:
    while name.startswith(("./", "/")):
        name = name[2:] if name.startswith("./") else name[1:]
    return name.rstrip("/")


def parse_os_release(data: bytes) -> dict[str, str]:
    fields = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            fields[key] = value.strip().strip("\"'")
    return fields


def inventory_layer(tar: TarStream, detectors: Iterable[Detector] | None = None) -> LayerInventory:
    """Read one layer's members in stream order; only files a detector wants are read, one at a time."""
    dets = list(detectors if detectors is not None else all_detectors())
    inv = LayerInventory()
    for member in tar:
        path = _clean(member.name)
        directory, _, base = path.rpartition("/")
        if base.startswith(WHITEOUT):
            if base == OPAQUE:
                inv.opaque.append(directory)
            else:
                inv.whiteouts.append(f"{directory}/{base[len(WHITEOUT) :]}" if directory else base[len(WHITEOUT) :])
            continue
        if not member.isfile():
            continue
        wanted = [d for d in dets if member.size <= d.max_bytes and d.wants(path, member.mode, member.size)]
        is_os_release = path in OS_RELEASE and member.size < 64 * 1024
        if not wanted and not is_os_release:
            continue
        data = tar.read(member)
        if is_os_release:
            inv.os_release[path] = parse_os_release(data)
        if wanted:
            inv.read_paths.append(path)
            for det in wanted:
                try:
                    inv.packages.extend(det.detect(path, data))
                except Exception:
                    continue
    return inv


def _hidden(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def distro_of(os_release: dict[str, str] | None) -> Distro | None:
    if not os_release or "ID" not in os_release:
        return None
    return Distro(os_release["ID"].lower(), os_release.get("VERSION_ID", ""))


def combine(layers: Iterable[LayerInventory]) -> tuple[list[Package], Distro | None]:
    """The packages of the final filesystem, bottom layer first."""
    by_file: dict[str, list[Package]] = {}
    releases: dict[str, dict[str, str]] = {}
    for layer in layers:
        for gone in [*layer.opaque, *layer.whiteouts]:
            for store in (by_file, releases):
                for key in [k for k in store if _hidden(k, gone)]:
                    del store[key]
        for path in layer.read_paths:
            by_file[path] = []  # this layer's copy of the file replaces any lower one
        for pkg in layer.packages:
            by_file.setdefault(pkg.path.split("!/", 1)[0], []).append(pkg)
        releases.update(layer.os_release)
    distro = distro_of(releases.get("etc/os-release") or releases.get("usr/lib/os-release"))
    packages = [pkg for path in sorted(by_file) for pkg in by_file[path]]
    if distro is not None:
        packages = [_with_distro(p, distro) if p.ecosystem in (DEB, APK, RPM) else p for p in packages]
    return packages, distro


def _with_distro(pkg: Package, distro: Distro) -> Package:
    return replace(pkg, distro=distro, purl=_purl_with_distro(pkg.purl, pkg.ecosystem, distro))


@lru_cache(maxsize=1 << 16)
def _purl_with_distro(purl_text: str, ecosystem: str, distro: Distro) -> str:
    # Cached: images share their base layers, and parsing and printing a purl costs ~0.2 ms
    # (it was half of the time of a scan, bench_scan_reeval's first scan).
    purl = PackageURL.from_string(purl_text)
    namespace = distro.id if ecosystem != DEB or distro.id in ("debian", "ubuntu") else purl.namespace
    qualifiers = dict(purl.qualifiers or {})
    qualifiers["distro"] = f"{distro.id}-{distro.version_id}" if distro.version_id else distro.id
    return str(PackageURL(purl.type, namespace, purl.name, purl.version, qualifiers).to_string())


class InventoryCache(Protocol):
    """Layer inventories by digest: a dict, or a bounded cache (the scanner adapter's)."""

    def get(self, digest: str, /) -> LayerInventory | None: ...

    def __setitem__(self, digest: str, inventory: LayerInventory, /) -> None: ...


def inventory_image(
    image: Image,
    cache: InventoryCache | None = None,
    detectors: Iterable[Detector] | None = None,
) -> tuple[list[Package], Distro | None]:
    """Inventory every layer not already in `cache` (by digest), then combine."""
    dets = list(detectors if detectors is not None else all_detectors())
    layers = []
    for ref in image.layers:
        inv = cache.get(ref.digest) if cache is not None else None
        if inv is None:
            with image.source.open_layer(ref) as raw:
                inv = inventory_layer(layer_stream(raw), dets)
            if cache is not None:
                cache[ref.digest] = inv
        layers.append(inv)
    return combine(layers)
