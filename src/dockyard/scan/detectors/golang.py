"""Go binaries: the module build information the linker embeds (Go 1.18+ inline format).

The data starts at the 16-byte-aligned magic `\\xff Go buildinf:`; with flag bit 2 set, the Go version
and the module information follow the 32-byte header as varint-length-prefixed strings. Binaries from
before Go 1.18 store pointers instead, which would need the ELF segments resolved: not read here.
"""

from __future__ import annotations

from packageurl import PackageURL

from dockyard.scan.detectors import Detector
from dockyard.scan.model import GOLANG, Package

MAGIC = b"\xff Go buildinf:"
ELF = b"\x7fELF"


def _wants(path: str, mode: int, size: int) -> bool:
    return bool(mode & 0o111) and 1024 < size < 512 * 1024 * 1024


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated varint")


def build_info(data: bytes) -> tuple[str, str] | None:
    """(Go version, module info text) from a Go 1.18+ binary, or None."""
    if not data.startswith(ELF):
        return None
    pos = data.find(MAGIC)
    while pos != -1 and pos % 16:
        pos = data.find(MAGIC, pos + 1)
    if pos == -1 or len(data) < pos + 32:
        return None
    flags = data[pos + 15]
    if not flags & 2:
        return None  # pre-1.18 pointer format
    try:
        n, at = _varint(data, pos + 32)
        version = data[at : at + n].decode("utf-8", "replace")
        n, at = _varint(data, at + n)
        modinfo = data[at : at + n]
    except ValueError:
        return None
    if len(modinfo) >= 33 and modinfo[-17] == ord("\n"):
        modinfo = modinfo[16:-16]  # sentinel framing
    return version, modinfo.decode("utf-8", "replace")


def detect(path: str, data: bytes) -> list[Package]:
    info = build_info(data)
    if info is None:
        return []
    go_version, modinfo = info
    out: list[Package] = []
    if go_version.startswith("go"):
        std = go_version[2:].split()[0].split("-")[0]
        out.append(Package(GOLANG, "stdlib", std, path, PackageURL("golang", None, "stdlib", std).to_string()))
    return out + modules(modinfo, path)


def modules(modinfo: str, path: str) -> list[Package]:
    """The `mod`/`dep` lines of Go's build info (as `go version -m` prints them), replacements applied."""
    out: list[Package] = []
    last_was_module = False  # a replace line ("=>") belongs to the module line just before it
    for line in modinfo.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0] in ("mod", "dep"):
            last_was_module = parts[2] != "(devel)"
            if last_was_module:
                module, version = parts[1], parts[2]
                namespace, _, name = module.rpartition("/")
                purl = PackageURL("golang", namespace or None, name, version).to_string()
                out.append(Package(GOLANG, module, version, path, purl))
        elif parts[0] == "=>" and last_was_module:
            # A replace directive: the code actually built is the replacement's. A replacement by a
            # local directory has no version and names no module: the dependency is dropped.
            out.pop()
            last_was_module = False
            if len(parts) >= 3 and parts[2] and not parts[1].startswith((".", "/")):
                namespace, _, name = parts[1].rpartition("/")
                purl = PackageURL("golang", namespace or None, name, parts[2]).to_string()
                out.append(Package(GOLANG, parts[1], parts[2], path, purl))
        else:
            last_was_module = False
    return out


DETECTOR = Detector("golang", _wants, detect, max_bytes=512 * 1024 * 1024)
