"""Layer streams: gzip read in large steps, several gzip members, zero padding, truncation and
corruption reported as image errors."""

from __future__ import annotations

import gzip
import io
import random
import tarfile

import pytest

from dockyard.scan.layers import ImageError, layer_stream


def _tar(count: int) -> bytes:
    rnd = random.Random(7)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(count):
            data = rnd.randbytes(rnd.randint(0, 300_000)) if i % 2 else b"\0" * rnd.randint(0, 3_000_000)
            info = tarfile.TarInfo(f"f{i}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


RAW = _tar(12)


def _members(data: bytes) -> list[tuple[str, int]]:
    tar = layer_stream(io.BytesIO(data))
    return [(m.name, len(tar.read(m))) for m in tar]


def _expected() -> list[tuple[str, int]]:
    with tarfile.open(fileobj=io.BytesIO(RAW)) as tar:
        return [(m.name, m.size) for m in tar]


@pytest.mark.parametrize(
    "data",
    [
        gzip.compress(RAW),
        gzip.compress(RAW[: len(RAW) // 3]) + gzip.compress(RAW[len(RAW) // 3 :]),  # two members
        gzip.compress(RAW) + b"\0" * 1000,  # zero padding after the last member
        RAW,  # not compressed
    ],
    ids=["gzip", "two-members", "padded", "plain"],
)
def test_every_member_is_read_whole(data: bytes) -> None:
    assert _members(data) == _expected()


def test_truncated_and_corrupt_layers_are_image_errors() -> None:
    whole = gzip.compress(RAW)
    with pytest.raises(ImageError, match="truncated"):
        _members(whole[:-5000])
    corrupt = bytearray(whole)
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 64] = b"\xff" * 64
    with pytest.raises(ImageError):
        _members(bytes(corrupt))
