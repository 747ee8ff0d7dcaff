"""The layer tar reader against archives written by GNU tar (every format it writes) and by Python's
tarfile: same members, types, sizes, modes and contents; malformed archives are image errors."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from dockyard.scan.model import ImageError
from dockyard.scan.tarstream import Member, TarStream, _number

LONG_DIR = "a-directory-name-that-is-rather-long/" * 4  # > 100 characters: GNU L / pax path / ustar prefix


def _stream(data: bytes, step: int = 1000) -> TarStream:
    """Chunks of `step` bytes, so headers and data straddle chunk boundaries."""
    chunks = iter([data[i : i + step] for i in range(0, len(data), step)])
    return TarStream(lambda: next(chunks, b""))


def _ours(data: bytes, step: int = 1000) -> list[tuple[str, str, int, int, str, bytes | None]]:
    tar = _stream(data, step)
    return [(m.name, m.type.decode(), m.size, m.mode, m.linkname, tar.read(m) if m.isfile() else None) for m in tar]


def _reference(data: bytes) -> list[tuple[str, str, int, int, str, bytes | None]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar:
            content = tar.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            out.append((m.name, m.type.decode(), m.size, m.mode, m.linkname, content))
    return out


def _tree(root: Path) -> None:
    (root / LONG_DIR).mkdir(parents=True)
    (root / LONG_DIR / "file-with-a-long-name-too.txt").write_bytes(b"deep\n" * 300)
    (root / "empty").write_bytes(b"")
    (root / "exact-block").write_bytes(b"x" * 512)
    (root / "big.bin").write_bytes(os.urandom(300_000))
    (root / "unicodé-näme").write_text("ü\n")
    (root / "script.sh").write_text("#!/bin/sh\n")
    (root / "script.sh").chmod(0o755)
    os.symlink("big.bin", root / "link-to-big")
    os.symlink(LONG_DIR + "file-with-a-long-name-too.txt", root / "long-symlink-target")
    os.link(root / "empty", root / "hardlink")
    os.mkfifo(root / "fifo")


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar is not installed")
@pytest.mark.parametrize("fmt", ["gnu", "oldgnu", "posix", "ustar", "v7"])
def test_archives_written_by_gnu_tar(tmp_path: Path, fmt: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _tree(root)
    if fmt in ("ustar", "v7"):  # these cannot store a long symlink target (and v7 no long names)
        (root / "long-symlink-target").unlink()
    if fmt == "v7":
        shutil.rmtree(root / LONG_DIR.split("/")[0])
        (root / "fifo").unlink()
    data = subprocess.run(
        ["tar", f"--format={fmt}", "-cf", "-", "-C", str(root), "--sort=name", "."],
        check=True,
        capture_output=True,
    ).stdout
    ours = _ours(data)
    assert ours == _reference(data)
    names = {m[0] for m in ours}
    assert "./big.bin" in names and "./hardlink" in names
    if fmt != "v7":
        assert f"./{LONG_DIR}file-with-a-long-name-too.txt" in names
    assert dict((m[0], m[5]) for m in ours)["./script.sh"] == b"#!/bin/sh\n"


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("step", [1, 511, 4096, 1 << 20])
def test_archives_written_by_python_tarfile(fmt: int, step: int) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for i, size in enumerate([0, 1, 511, 512, 513, 70_000]):
            info = tarfile.TarInfo(f"dir{i}/file-{size}" if fmt == tarfile.USTAR_FORMAT else f"{LONG_DIR}{i}-{size}")
            info.size = size
            info.mode = 0o640
            tar.addfile(info, io.BytesIO(bytes([i + 1]) * size))
        d = tarfile.TarInfo("dir0/")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
    data = buf.getvalue()
    assert _ours(data, step) == _reference(data)


def test_members_can_be_skipped_read_once_and_only_while_current() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in [("a", b"A" * 2000), ("b", b"B" * 10), ("c", b"C" * 5)]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    tar_stream = _stream(buf.getvalue(), 700)
    members: list[Member] = []
    for m in tar_stream:
        members.append(m)
        if m.name == "b":
            assert tar_stream.read(m) == b"B" * 10
            with pytest.raises(ValueError):
                tar_stream.read(m)
        if m.name == "c":
            with pytest.raises(ValueError):
                tar_stream.read(members[0])  # "a" was skipped: its data is gone
            assert tar_stream.read(m) == b"CCCCC"
    assert [m.name for m in members] == ["a", "b", "c"]


def _one_file_archive(size: int = 3000) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("f")
        info.size = size
        tar.addfile(info, io.BytesIO(b"z" * size))
    return buf.getvalue()


def test_malformed_archives_are_image_errors() -> None:
    whole = _one_file_archive()
    with pytest.raises(ImageError, match="truncated"):  # inside the data, read
        _ours(whole[:1500])
    with pytest.raises(ImageError, match="truncated"):  # inside the data, skipped
        list(_stream(whole[:1500]))
    with pytest.raises(ImageError, match="truncated"):  # inside a header
        list(_stream(whole[:300]))
    garbage = bytearray(whole)
    garbage[10] ^= 0x55  # a byte of the name: the checksum no longer matches
    with pytest.raises(ImageError, match="checksum"):
        list(_stream(bytes(garbage)))
    with pytest.raises(ImageError, match="invalid tar header"):
        list(_stream(b"not a tar archive at all".ljust(512, b"!")))


def test_empty_and_unterminated_archives() -> None:
    assert list(_stream(b"")) == []
    assert list(_stream(b"\0" * 1024)) == []
    whole = _one_file_archive(100)
    unterminated = whole[:1024]  # header and data, without the end-of-archive blocks
    assert [(m.name, m.size) for m in _stream(unterminated)] == [("f", 100)]


def test_base_256_numbers() -> None:
    assert _number(b"\x80" + (8 * 1024**3).to_bytes(11, "big")) == 8 * 1024**3  # a size above 8 GiB
    assert _number(b"\xff" * 8) == -1
    assert _number(b"0000644\0") == 0o644
    assert _number(b"\0" * 8) == 0
