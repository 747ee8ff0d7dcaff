"""RPM distributions (RHEL, Rocky, Alma, Fedora, CentOS, openSUSE…): the rpm database.

rpm 4.16+ keeps it in SQLite (`rpmdb.sqlite`, table `Packages` of (hnum, blob)); older releases (RHEL 7/8,
CentOS 7) in a Berkeley DB hash file `Packages` whose values are the same blobs. A blob is an rpm header
without its lead magic: big-endian int32 index count and data length, 16-byte index entries
(tag, type, offset, count), then the data store the offsets point into.

openSUSE's `Packages.db` (rpm's own "ndb" format) is not read.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import tempfile
from collections.abc import Iterator

from packageurl import PackageURL

from dockyard.scan.detectors import Detector
from dockyard.scan.model import RPM, Package

DIRS = ("var/lib/rpm/", "usr/lib/sysimage/rpm/")
SQLITE, BDB = "rpmdb.sqlite", "Packages"

# Header tags and types (rpm's header.h / rpmtag.h).
NAME, VERSION, RELEASE, EPOCH, LICENSE, ARCH, SOURCERPM = 1000, 1001, 1002, 1003, 1014, 1022, 1044
INT32, STRING, STRING_ARRAY, I18NSTRING = 4, 6, 8, 9
MAX_INDEX = 0xFFFF  # rpm refuses headers with more index entries than this

# Berkeley DB hash database layout (db_page.h).
BDB_HASH_MAGIC = 0x061561
PAGE_HEADER = 26  # lsn(8) pgno prev next (u32 each) entries hf_offset (u16 each) level type (u8 each)
P_HASH_UNSORTED, P_OVERFLOW, P_HASH = 2, 7, 13
H_KEYDATA, H_OFFPAGE = 1, 3


def _wants(path: str, mode: int, size: int) -> bool:
    directory, _, base = path.rpartition("/")
    return directory + "/" in DIRS and base in (SQLITE, BDB)


# --- header blobs -----------------------------------------------------------------------------------


def parse_header(blob: bytes) -> dict[int, str | int]:
    """The string and int32 tags of a header blob, first value of each; {} if it is not one."""
    if len(blob) < 8:
        return {}
    il, dl = struct.unpack_from(">ii", blob)
    store = 8 + 16 * il
    if not 0 < il <= MAX_INDEX or dl < 0 or store + dl > len(blob):
        return {}
    data = blob[store : store + dl]
    out: dict[int, str | int] = {}
    for i in range(il):
        tag, typ, offset, count = struct.unpack_from(">iiii", blob, 8 + 16 * i)
        if offset < 0 or offset >= dl or count < 1:
            continue
        if typ in (STRING, STRING_ARRAY, I18NSTRING):
            end = data.find(b"\0", offset)
            if end != -1:
                out[tag] = data[offset:end].decode("utf-8", "replace")
        elif typ == INT32 and offset + 4 <= dl:
            out[tag] = struct.unpack_from(">i", data, offset)[0]
    return out


def _source(sourcerpm: str) -> tuple[str, str] | None:
    """("openssl", "3.0.7-24.el9") from "openssl-3.0.7-24.el9.src.rpm"."""
    stem = sourcerpm.removesuffix(".rpm")
    stem, dot, arch = stem.rpartition(".")  # "src" or "nosrc"
    if not dot or arch not in ("src", "nosrc"):
        return None
    name, _, rest = stem.rpartition("-")
    name, _, version = name.rpartition("-")
    if not name or not version or not rest:
        return None
    return name, f"{version}-{rest}"


def package_of(path: str, blob: bytes) -> Package | None:
    tags = parse_header(blob)
    name, version, release = tags.get(NAME), tags.get(VERSION), tags.get(RELEASE)
    if not isinstance(name, str) or not isinstance(version, str) or not isinstance(release, str):
        return None
    if name == "gpg-pubkey":
        return None  # imported signing keys are recorded as pseudo packages
    epoch = tags.get(EPOCH)
    epoch = epoch if isinstance(epoch, int) else None
    prefix = f"{epoch}:" if epoch is not None else ""
    arch, licence, sourcerpm = tags.get(ARCH), tags.get(LICENSE), tags.get(SOURCERPM)
    src = _source(sourcerpm) if isinstance(sourcerpm, str) else None
    qualifiers = {}
    if isinstance(arch, str):
        qualifiers["arch"] = arch
    if epoch is not None:
        qualifiers["epoch"] = str(epoch)
    # No namespace here: the inventory sets it to the distribution's os-release ID.
    purl = PackageURL(RPM, None, name, f"{version}-{release}", qualifiers or None).to_string()
    return Package(
        RPM,
        name,
        f"{prefix}{version}-{release}",
        path,
        purl,
        src[0] if src else None,
        f"{prefix}{src[1]}" if src else None,
        licence if isinstance(licence, str) else None,
    )


# --- SQLite -----------------------------------------------------------------------------------------


def sqlite_blobs(data: bytes) -> list[bytes]:
    with tempfile.TemporaryDirectory(prefix="dockyard-rpmdb-") as tmp:
        db = os.path.join(tmp, SQLITE)
        with open(db, "wb") as f:
            f.write(data)
        # immutable: no locking and no -wal/-shm files (rpm leaves the database in WAL mode).
        uri = f"file:{db}?mode=ro&immutable=1"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
                return [bytes(row[0]) for row in conn.execute("SELECT blob FROM Packages ORDER BY hnum")]
        except sqlite3.Error:
            return []  # not an rpm database, or a corrupt one


# --- Berkeley DB hash -------------------------------------------------------------------------------


def bdb_values(data: bytes) -> Iterator[bytes]:
    """Every value in a Berkeley DB hash file, read page by page (bucket order does not matter here)."""
    if len(data) < 512:
        return
    for order in ("<", ">"):
        if struct.unpack_from(order + "I", data, 12)[0] == BDB_HASH_MAGIC:
            break
    else:
        return
    pagesize = struct.unpack_from(order + "I", data, 20)[0]
    if data[24] or data[26] & 1 or pagesize < 512 or pagesize & (pagesize - 1):
        return  # encrypted or checksummed pages (rpm uses neither), or not a page size Berkeley DB allows
    npages = len(data) // pagesize
    u16, u32 = struct.Struct(order + "H"), struct.Struct(order + "I")
    for pgno in range(1, npages):
        page = data[pgno * pagesize : (pgno + 1) * pagesize]
        if page[25] not in (P_HASH, P_HASH_UNSORTED):
            continue
        entries = u16.unpack_from(page, 20)[0]
        if PAGE_HEADER + 2 * entries > pagesize:
            continue
        offsets = [u16.unpack_from(page, PAGE_HEADER + 2 * i)[0] for i in range(entries)]
        for i in range(1, entries, 2):  # items alternate key, value
            start, end = offsets[i], offsets[i - 1]  # each item ends where the one before it starts
            if not PAGE_HEADER < start < end <= pagesize:
                continue
            if page[start] == H_KEYDATA:
                yield page[start + 1 : end]
            elif page[start] == H_OFFPAGE and end - start >= 12:
                value = _overflow(data, pagesize, npages, u32.unpack_from(page, start + 4)[0], order)
                if value is not None and len(value) == u32.unpack_from(page, start + 8)[0]:
                    yield value


def _overflow(data: bytes, pagesize: int, npages: int, pgno: int, order: str) -> bytes | None:
    """A big value, chained over overflow pages (each holds its share of bytes after the page header)."""
    parts: list[bytes] = []
    seen: set[int] = set()
    while pgno:
        if pgno >= npages or pgno in seen:
            return None
        seen.add(pgno)
        base = pgno * pagesize
        if data[base + 25] != P_OVERFLOW:
            return None
        nxt, _, length = struct.unpack_from(order + "IHH", data, base + 16)
        if PAGE_HEADER + length > pagesize:
            return None
        parts.append(data[base + PAGE_HEADER : base + PAGE_HEADER + length])
        pgno = nxt
    return b"".join(parts)


def detect(path: str, data: bytes) -> list[Package]:
    blobs = sqlite_blobs(data) if path.endswith(SQLITE) else bdb_values(data)
    return [pkg for blob in blobs if (pkg := package_of(path, blob)) is not None]


DETECTOR = Detector("rpm", _wants, detect, max_bytes=512 * 1024 * 1024)
