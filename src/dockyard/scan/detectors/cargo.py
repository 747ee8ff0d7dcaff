"""Rust binaries built with cargo-auditable: the dependency list it embeds in an ELF section `.dep-v0`.

The section holds zlib-compressed JSON: {"packages": [{"name", "version", "source", "kind", "root",
"dependencies"}]}, where "kind" is "build" or "runtime" (absent means runtime). Build-time dependencies
(build scripts, proc-macros) are not in the executable, so they are not reported. PE and Mach-O
binaries carry the same data in their own section tables; only ELF is read here.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from packageurl import PackageURL

from dockyard.scan.detectors import Detector
from dockyard.scan.model import CARGO, Package

SECTION = b".dep-v0"
ELF = b"\x7fELF"
SHT_NOBITS = 8
SHN_XINDEX = 0xFFFF
MAX_JSON = 16 * 1024 * 1024  # decompressed; real lists are a few kB, so this only stops zip bombs


def _wants(path: str, mode: int, size: int) -> bool:
    # The same files the Go detector reads, so each executable is read from the layer once for both.
    return bool(mode & 0o111) and 1024 < size < 512 * 1024 * 1024


def elf_section(data: bytes, wanted: bytes) -> bytes | None:
    """The contents of the named section of an ELF file (32/64-bit, either byte order), or None."""
    if len(data) < 64 or not data.startswith(ELF) or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    order = "<" if data[5] == 1 else ">"
    if data[4] == 2:
        (shoff,) = struct.unpack_from(order + "Q", data, 0x28)
        entsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x3A)
        header = struct.Struct(order + "IIQQQQIIQQ")
    else:
        (shoff,) = struct.unpack_from(order + "I", data, 0x20)
        entsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x2E)
        header = struct.Struct(order + "IIIIIIIIII")
    if not shoff or entsize < header.size or shoff + entsize > len(data):
        return None

    def section(i: int) -> tuple[int, ...]:
        return header.unpack_from(data, shoff + i * entsize)

    first = section(0)
    if shnum == 0:
        shnum = first[5]  # more than 0xff00 sections: the count is in section 0's sh_size
    if shstrndx == SHN_XINDEX:
        shstrndx = first[6]  # ...and the name table's index in its sh_link
    shnum = min(shnum, (len(data) - shoff) // entsize)
    if shstrndx >= shnum:
        return None
    names_at, names_size = section(shstrndx)[4:6]
    names = data[names_at : names_at + names_size]
    for i in range(1, shnum):
        name, typ, _, _, offset, size = section(i)[:6]
        if names[name : name + len(wanted) + 1] == wanted + b"\0":
            if typ == SHT_NOBITS or offset + size > len(data):
                return None
            return data[offset : offset + size]
    return None


def audit_data(data: bytes) -> dict[str, Any] | None:
    raw = elf_section(data, SECTION)
    if raw is None:
        return None
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(raw, MAX_JSON)
        if not inflater.eof:
            return None  # truncated, or larger than any real dependency list
        doc = json.loads(text)
    except (zlib.error, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def detect(path: str, data: bytes) -> list[Package]:
    doc = audit_data(data)
    packages = doc.get("packages") if doc else None
    if not isinstance(packages, list):
        return []
    out: list[Package] = []
    for entry in packages:
        if not isinstance(entry, dict) or entry.get("kind", "runtime") == "build":
            continue
        if entry.get("source") == "local":  # the program's own workspace crates: not crates.io packages
            continue
        name, version = entry.get("name"), entry.get("version")
        if isinstance(name, str) and isinstance(version, str) and name and version:
            out.append(Package(CARGO, name, version, path, PackageURL(CARGO, None, name, version).to_string()))
    return out


DETECTOR = Detector("cargo", _wants, detect, max_bytes=512 * 1024 * 1024)
