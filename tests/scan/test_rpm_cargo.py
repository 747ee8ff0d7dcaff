"""RPM databases and cargo-auditable Rust binaries, made here with the real tools (rpmbuild and rpm, perl's
Berkeley DB binding, rustc and objcopy), then found in OCI image layouts by the inventory."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import zlib
from contextlib import closing
from pathlib import Path

import pytest

from dockyard.scan.detectors import cargo, rpm
from dockyard.scan.inventory import inventory_image
from dockyard.scan.layers import open_source
from dockyard.scan.model import CARGO, RPM, Distro, Package
from tests.conftest import missing
from tests.scan.images import layer_tar, write_layout

ROCKY_9 = b'NAME="Rocky Linux"\nID="rocky"\nVERSION_ID="9.3"\n'
CENTOS_7 = b'NAME="CentOS Linux"\nID="centos"\nVERSION_ID="7"\n'

# One source package with an Epoch building two binaries (so the source name differs from one of them),
# and one without an Epoch whose header is far larger than a 4 KiB Berkeley DB page.
TINYSSL_SPEC = """Name: tinyssl
Version: 3.0.7
Release: 24.el9
Epoch: 1
Summary: test package
License: Apache-2.0
BuildArch: noarch
%description
test
%package -n libtinyssl
Summary: test library
License: Apache-2.0 AND MIT
%description -n libtinyssl
test
%files
%files -n libtinyssl
"""
BIGDOC_SPEC = (
    """Name: bigdoc
Version: 2.5
Release: 3.fc39
Summary: test package with a long description
License: MIT AND BSD-3-Clause
BuildArch: noarch
%description
"""
    + " ".join(f"word{i}" for i in range(3000))
    + "\n%files\n"
)

# A throwaway ed25519 public key (no secret kept anywhere): `rpm --import` records it as a gpg-pubkey
# pseudo package, as on every real RPM system.
TEST_KEY = """-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawM3xhYJKwYBBAHaRw8BAQdA5xStPB21jZd37albRViFCgBw2JqyzPo8nRB7
ePHh7Q20KURvY2t5YXJkIHRlc3Qga2V5IDx0ZXN0QGRvY2t5YXJkLmludmFsaWQ+
iJAEExYIADgWIQTrEsSnbftsmaTTqoaYkSNxs/qPbQUCawM3xgIbAwULCQgHAgYV
CgkICwIEFgIDAQIeAQIXgAAKCRCYkSNxs/qPbUaEAQCGWNUsWaMslgo4wbkHcvVy
z7ZuCCIWg1C0AtvHbDrH+gD/Yl2QiUW+ue7wbrAvxIcMxsHbDYkZ/OmcX1bOBwHw
rAU=
=7b9B
-----END PGP PUBLIC KEY BLOCK-----
"""

# Writes an rpm `Packages` Berkeley DB hash file with libdb (through perl's DB_File): keys are the
# header numbers in the file's byte order, as rpm wrote them, plus rpm's key 0 (the next number).
BDB_WRITER = r"""
use strict; use warnings; use DB_File; use Fcntl;
my ($out, $lorder, $bsize, @files) = @ARGV;
my $info = DB_File::HASHINFO->new; $info->{bsize} = $bsize; $info->{lorder} = $lorder;
my %db; tie(%db, 'DB_File', $out, O_RDWR|O_CREAT, 0644, $info) or die "tie $out: $!";
my $fmt = $lorder == 1234 ? 'V' : 'N'; my $max = 0;
for my $f (@files) {
    my ($n) = $f =~ /(\d+)$/; open(my $fh, '<:raw', $f) or die "$f: $!"; local $/; $db{pack($fmt, $n)} = <$fh>;
    $max = $n if $n > $max;
}
$db{pack($fmt, 0)} = pack($fmt, $max + 1);
untie %db or die "untie: $!";
"""

QUERY_FORMAT = "%{NAME}|%{EPOCH}|%{VERSION}|%{RELEASE}|%{ARCH}|%{SOURCERPM}|%{LICENSE}\\n"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{args[0]} failed: {proc.stderr[-2000:]}"
    return proc


def rpm_query(dbpath: Path, backend: str) -> set[tuple[str, ...]]:
    """What rpm itself reads from a database: (name, epoch, version, release, arch, source rpm, licence)."""
    out = _run("rpm", "--dbpath", str(dbpath), "--define", f"_db_backend {backend}", "-qa", "--qf", QUERY_FORMAT)
    return {tuple(line.split("|")) for line in out.stdout.splitlines()}


def as_rpm_sees_it(pkg: Package) -> tuple[str, ...]:
    """A detected package in rpm's query format, to compare with `rpm_query`."""
    epoch, _, evr = pkg.version.rpartition(":")
    version, _, release = evr.rpartition("-")
    arch = dict(q.split("=") for q in pkg.purl.partition("?")[2].split("&"))["arch"]
    srpm = f"{pkg.source_name}-{pkg.source_version.rpartition(':')[2]}.src.rpm" if pkg.source_version else ""
    return (pkg.name, epoch or "(none)", version, release, arch, srpm, pkg.licence or "")


@pytest.fixture(scope="module")
def rpmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a real rpm database (SQLite, rpm's default): three packages and a signing key."""
    if shutil.which("rpm") is None or shutil.which("rpmbuild") is None:
        missing("rpm and rpmbuild are not installed (Debian package rpm)")
    root = tmp_path_factory.mktemp("rpm")
    for name, spec in (("tinyssl", TINYSSL_SPEC), ("bigdoc", BIGDOC_SPEC)):
        (root / f"{name}.spec").write_text(spec)
        _run("rpmbuild", "--quiet", "--define", f"_topdir {root / 'build'}", "-bb", str(root / f"{name}.spec"))
    rpms = sorted(str(p) for p in (root / "build" / "RPMS").rglob("*.rpm"))
    assert len(rpms) == 3
    db = root / "db"
    db.mkdir()
    _run("rpm", "--dbpath", str(db), "--define", "_db_backend sqlite", "--initdb")
    _run("rpm", "--dbpath", str(db), "--define", "_db_backend sqlite", "-i", "--justdb", "--nodeps", "--noscripts",
         "--ignorearch", "--ignoreos", *rpms)  # fmt: skip
    (root / "key.asc").write_text(TEST_KEY)
    _run("rpm", "--dbpath", str(db), "--define", "_db_backend sqlite", "--import", str(root / "key.asc"))
    return db


def bdb_packages(rpmdb: Path, dest: Path, lorder: int, page_size: int) -> Path:
    """The same headers in a Berkeley DB `Packages` file, as rpm before 4.16 kept them."""
    if shutil.which("perl") is None:
        missing("perl is not installed")
    blobs = dest / "blobs"
    blobs.mkdir(parents=True)
    with closing(sqlite3.connect(f"file:{rpmdb / 'rpmdb.sqlite'}?mode=ro&immutable=1", uri=True)) as conn:
        for hnum, blob in conn.execute("SELECT hnum, blob FROM Packages"):
            (blobs / str(hnum)).write_bytes(blob)
    out = dest / "db" / "Packages"
    out.parent.mkdir()
    proc = subprocess.run(
        ["perl", "-e", BDB_WRITER, str(out), str(lorder), str(page_size), *map(str, sorted(blobs.iterdir()))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if proc.returncode != 0 and "DB_File" in proc.stderr:
        missing(f"perl's DB_File (Berkeley DB) is not available: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr
    return out


def packages_of(layout: Path) -> tuple[list[Package], Distro | None]:
    return inventory_image(open_source(layout).images()[0])


def check_the_three_packages(pkgs: list[Package], path: str, distro: str) -> None:
    by_name = {p.name: p for p in pkgs}
    assert sorted(by_name) == ["bigdoc", "libtinyssl", "tinyssl"] and len(pkgs) == 3  # no gpg-pubkey
    assert all(p.ecosystem == RPM and p.path == path for p in pkgs)
    tinyssl, lib, big = by_name["tinyssl"], by_name["libtinyssl"], by_name["bigdoc"]
    assert (tinyssl.version, tinyssl.source_name, tinyssl.source_version, tinyssl.licence) == (
        "1:3.0.7-24.el9",
        "tinyssl",
        "1:3.0.7-24.el9",
        "Apache-2.0",
    )
    assert (lib.version, lib.source_name, lib.source_version, lib.licence) == (
        "1:3.0.7-24.el9",
        "tinyssl",
        "1:3.0.7-24.el9",
        "Apache-2.0 AND MIT",
    )
    assert (big.version, big.source_name, big.source_version, big.licence) == (
        "2.5-3.fc39",
        "bigdoc",
        "2.5-3.fc39",
        "MIT AND BSD-3-Clause",
    )
    distro_id, _, version_id = distro.partition("-")
    assert lib.purl == f"pkg:rpm/{distro_id}/libtinyssl@3.0.7-24.el9?arch=noarch&distro={distro}&epoch=1"
    assert big.purl == f"pkg:rpm/{distro_id}/bigdoc@2.5-3.fc39?arch=noarch&distro={distro}"
    assert all(p.distro == Distro(distro_id, version_id) for p in pkgs)


@pytest.mark.parametrize("directory", ["var/lib/rpm", "usr/lib/sysimage/rpm"])
def test_rpm_sqlite_database_in_an_image(tmp_path: Path, rpmdb: Path, directory: str) -> None:
    seen_by_rpm = rpm_query(rpmdb, "sqlite")
    assert any(row[0] == "gpg-pubkey" for row in seen_by_rpm)  # the key is there, to be skipped
    # rpm leaves the database in WAL mode with -shm/-wal files beside it: ship them too, as images do.
    files: dict[str, bytes | Path | None] = {"etc/os-release": ROCKY_9}
    for f in sorted(rpmdb.glob("rpmdb.sqlite*")):
        files[f"{directory}/{f.name}"] = f.read_bytes()
    assert f"{directory}/rpmdb.sqlite-shm" in files
    pkgs, distro = packages_of(write_layout(tmp_path / "img", [layer_tar(files)]))
    assert distro == Distro("rocky", "9.3")
    check_the_three_packages(pkgs, f"{directory}/rpmdb.sqlite", "rocky-9.3")
    assert {as_rpm_sees_it(p) for p in pkgs} == {row for row in seen_by_rpm if row[0] != "gpg-pubkey"}


@pytest.mark.parametrize(
    ("lorder", "page_size"),
    [(1234, 4096), (4321, 65536)],  # every header on overflow pages; small ones inline in the hash pages
    ids=["little-endian-4k", "big-endian-64k"],
)
def test_rpm_berkeley_db_in_an_image(tmp_path: Path, rpmdb: Path, lorder: int, page_size: int) -> None:
    packages = bdb_packages(rpmdb, tmp_path / "bdb", lorder, page_size)
    # rpm's own read-only Berkeley DB backend reads the same four headers from it.
    seen_by_rpm = rpm_query(packages.parent, "bdb_ro")
    assert seen_by_rpm == rpm_query(rpmdb, "sqlite") and len(seen_by_rpm) == 4
    layout = write_layout(
        tmp_path / "img",
        [layer_tar({"etc/os-release": CENTOS_7, "var/lib/rpm/Packages": packages.read_bytes()})],
    )
    pkgs, _ = packages_of(layout)
    check_the_three_packages(pkgs, "var/lib/rpm/Packages", "centos-7")
    assert {as_rpm_sees_it(p) for p in pkgs} == {row for row in seen_by_rpm if row[0] != "gpg-pubkey"}


def test_rpm_database_replaced_in_a_later_layer(tmp_path: Path, rpmdb: Path) -> None:
    db = (rpmdb / "rpmdb.sqlite").read_bytes()
    layout = write_layout(
        tmp_path / "img",
        [
            layer_tar({"etc/os-release": ROCKY_9, "var/lib/rpm/rpmdb.sqlite": db}),
            layer_tar({"var/lib/rpm/.wh..wh..opq": None}),  # rm -rf /var/lib/rpm/* (as slim images do)
        ],
    )
    assert packages_of(layout)[0] == []


def test_corrupt_rpm_databases_yield_nothing(rpmdb: Path) -> None:
    db = (rpmdb / "rpmdb.sqlite").read_bytes()
    assert len(rpm.detect("var/lib/rpm/rpmdb.sqlite", db)) == 3
    for data in (b"", b"\0" * 8192, db[:1024], b"SQLite format 3\0" + b"\xff" * 4096):
        assert rpm.detect("var/lib/rpm/rpmdb.sqlite", data) == []
        assert rpm.detect("var/lib/rpm/Packages", data) == []
    assert rpm.package_of("x", b"\x00\x00\x10\x00\xff\xff\xff\xff") is None  # counts beyond the blob
    assert rpm.package_of("x", b"\x00\x00\x00\x01\x00\x00\x00\x00" + b"\x00" * 16) is None  # no name


def test_rpm_detector_wants_only_the_databases() -> None:
    wanted = [
        "var/lib/rpm/rpmdb.sqlite",
        "var/lib/rpm/Packages",
        "usr/lib/sysimage/rpm/rpmdb.sqlite",
        "usr/lib/sysimage/rpm/Packages",
    ]
    ignored = ["var/lib/rpm/rpmdb.sqlite-wal", "var/lib/rpm/rpmdb.sqlite-shm", "var/lib/rpm/Name", "opt/rpmdb.sqlite"]
    assert all(rpm.DETECTOR.wants(p, 0o644, 4096) for p in wanted)
    assert not any(rpm.DETECTOR.wants(p, 0o644, 4096) for p in ignored)


# --- cargo-auditable ------------------------------------------------------------------------------------

AUDIT = {
    "packages": [
        {"name": "hello", "version": "0.1.0", "source": "local", "dependencies": [1, 2, 3], "root": True},
        {"name": "smallvec", "version": "1.6.0", "source": "crates.io"},
        {"name": "time", "version": "0.1.43", "source": "crates.io", "kind": "runtime", "dependencies": [4]},
        {"name": "cc", "version": "1.0.83", "source": "crates.io", "kind": "build"},
        {"name": "libc", "version": "0.2.150", "source": "crates.io"},
    ]
}
# "hello" is the program itself (source "local"): not a crates.io package, so not reported.
EXPECTED_CRATES = [("smallvec", "1.6.0"), ("time", "0.1.43"), ("libc", "0.2.150")]


@pytest.fixture(scope="module")
def rust_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with `plain` (a real Rust executable) and `audited` (the same with a `.dep-v0` section)."""
    if shutil.which("rustc") is None or shutil.which("objcopy") is None:
        missing("rustc and objcopy (binutils) are needed to build a Rust binary")
    root = tmp_path_factory.mktemp("rust")
    (root / "hello.rs").write_text('fn main() { println!("hello"); }\n')
    _run("rustc", "-C", "strip=symbols", "-o", str(root / "plain"), str(root / "hello.rs"))
    add_section(root / "plain", root / "audited", zlib.compress(json.dumps(AUDIT).encode()))
    return root


def add_section(binary: Path, out: Path, content: bytes) -> Path:
    section = out.with_suffix(".dep-v0")
    section.write_bytes(content)
    _run("objcopy", "--add-section", f".dep-v0={section}", "--set-section-flags", ".dep-v0=noload,readonly",
         str(binary), str(out))  # fmt: skip
    return out


def test_cargo_auditable_binary_in_an_image(tmp_path: Path, rust_bin: Path) -> None:
    assert _run(str(rust_bin / "audited")).stdout == "hello\n"  # still a working executable
    layout = write_layout(
        tmp_path / "img",
        [
            layer_tar({"etc/os-release": ROCKY_9}),
            layer_tar(
                {
                    "usr/local/bin/hello": (rust_bin / "audited").read_bytes(),
                    "usr/local/bin/plain": (rust_bin / "plain").read_bytes(),
                }
            ),
        ],
    )
    pkgs, _ = packages_of(layout)
    assert [(p.ecosystem, p.name, p.version, p.path) for p in pkgs] == [
        (CARGO, name, version, "usr/local/bin/hello") for name, version in EXPECTED_CRATES
    ]  # nothing from the plain binary, nor the build-only `cc`
    assert {p.purl for p in pkgs} >= {"pkg:cargo/smallvec@1.6.0", "pkg:cargo/time@0.1.43"}
    assert all(p.distro is None for p in pkgs)


def test_cargo_section_in_32_bit_and_big_endian_elf_files(tmp_path: Path, rust_bin: Path) -> None:
    """The same section read from ELF32 (objcopy's conversion of the binary) and from big-endian ELF64/32."""
    section = tmp_path / "dep.z"
    section.write_bytes(zlib.compress(json.dumps(AUDIT).encode()))
    files = {"elf32-i386": tmp_path / "elf32"}
    _run("objcopy", "-O", "elf32-i386", str(rust_bin / "audited"), str(files["elf32-i386"]))
    for fmt in ("elf64-big", "elf32-big"):
        files[fmt] = tmp_path / fmt
        _run("objcopy", "-I", "binary", "-O", fmt, "--rename-section", ".data=.dep-v0", str(section), str(files[fmt]))
    for fmt, path in files.items():
        data = path.read_bytes()
        assert data[4] == (1 if "32" in fmt else 2) and data[5] == (2 if "big" in fmt else 1), fmt
        assert [(p.name, p.version) for p in cargo.detect(path.name, data)] == EXPECTED_CRATES, fmt


@pytest.mark.parametrize(
    "content",
    [
        b"not zlib at all",
        zlib.compress(b"{not json"),
        zlib.compress(json.dumps(AUDIT).encode())[:-10],  # truncated stream
        zlib.compress(b'["a list"]'),
        zlib.compress(b'{"packages": [{"name": 1}, "x", {"version": "1.0"}]}'),
    ],
    ids=["not-zlib", "not-json", "truncated", "not-an-object", "bad-entries"],
)
def test_corrupt_cargo_section_yields_nothing(tmp_path: Path, rust_bin: Path, content: bytes) -> None:
    binary = add_section(rust_bin / "plain", tmp_path / "corrupt", content)
    assert cargo.elf_section(binary.read_bytes(), b".dep-v0") == content  # the section is there...
    assert cargo.detect("usr/local/bin/corrupt", binary.read_bytes()) == []  # ...and ignored, without raising


def test_cargo_ignores_non_elf_and_truncated_files(rust_bin: Path) -> None:
    audited = (rust_bin / "audited").read_bytes()
    assert cargo.detect("x", b"#!/bin/sh\necho hi\n" * 100) == []
    assert cargo.detect("x", audited[:2048]) == []  # section headers (at the end) cut off
    assert cargo.detect("x", (rust_bin / "plain").read_bytes()) == []
