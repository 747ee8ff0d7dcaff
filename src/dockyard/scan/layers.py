"""Image sources and layer streams: an OCI image layout or a `docker save` archive, read layer by
layer as a stream of tar members (gzip, zstd or plain), never unpacked to disk."""

from __future__ import annotations

import io
import json
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import zstandard

from dockyard.oci import mediatypes as mt
from dockyard.scan.model import ImageError
from dockyard.scan.tarstream import TarStream

__all__ = [
    "ChunkReader",
    "Image",
    "ImageError",
    "ImageSource",
    "LayerRef",
    "layer_stream",
    "open_source",
    "platform_name",
]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20  # decompressed bytes per step


@dataclass(frozen=True)
class LayerRef:
    digest: str  # of the (possibly compressed) layer blob, or of the archive member for docker save
    size: int


@dataclass(frozen=True)
class Image:
    """One platform's image: its layers, bottom first, and how to open them."""

    source: ImageSource
    layers: list[LayerRef]
    config: dict[str, Any]
    platform: str  # os/architecture[/variant]


def layer_stream(raw: IO[bytes]) -> TarStream:
    """A streaming tar reader over a layer, whatever its compression (sniffed from magic bytes)."""
    head = raw.read(4)
    rest = _Prefixed(head, raw)
    next_chunk: Callable[[], bytes]
    if head.startswith(GZIP_MAGIC):
        # Not gzip.GzipFile: its 8 KiB reads cost a third of the inventory's time (bench_scan_inventory).
        next_chunk = _Gunzip(rest).next_chunk
    elif head == ZSTD_MAGIC:
        reader = zstandard.ZstdDecompressor().stream_reader(rest)  # type: ignore[arg-type]
        next_chunk = partial(_zstd_chunk, reader)
    else:
        next_chunk = partial(rest.read, CHUNK)
    return TarStream(next_chunk)


def _zstd_chunk(reader: Any) -> bytes:
    try:
        return bytes(reader.read(CHUNK))
    except zstandard.ZstdError as exc:
        raise ImageError(f"corrupt zstd layer: {exc}") from None


class _Gunzip:
    """gzip decompression in large steps: 256 KiB of input per zlib call, up to 1 MiB out. Handles
    streams made of several gzip members (as `cat a.gz b.gz` makes) and zero padding after the last."""

    INPUT = 256 * 1024

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._z = zlib.decompressobj(wbits=31)
        self._eof = False

    def next_chunk(self) -> bytes:
        """The next decompressed bytes; b"" at the end."""
        while not self._eof:
            if self._z.eof:  # a member ended: another may follow (zero padding after the last is allowed)
                pending = self._z.unused_data.lstrip(b"\x00")
                while not pending:
                    more = self._raw.read(self.INPUT)
                    if not more:
                        self._eof = True
                        return b""
                    pending = more.lstrip(b"\x00")
                self._z = zlib.decompressobj(wbits=31)
            else:
                pending = self._z.unconsumed_tail or self._raw.read(self.INPUT)
                if not pending:
                    raise ImageError("the layer ends before its gzip stream does (truncated)")
            try:
                out = self._z.decompress(pending, CHUNK)  # bounded: a layer of zeros stays small
            except zlib.error as exc:
                raise ImageError(f"corrupt gzip layer: {exc}") from None
            if out:
                return out
        return b""


class ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks (a blob store's stream, an HTTP body)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _Prefixed:
    """A read-only stream that yields some already-read bytes before the rest of another stream."""

    def __init__(self, prefix: bytes, rest: IO[bytes]) -> None:
        self._prefix = prefix
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            if n is None or n < 0:
                data, self._prefix = self._prefix + self._rest.read(), b""
                return data
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            if len(data) < n:
                data += self._rest.read(n - len(data))
            return data
        return self._rest.read(n)

    def readable(self) -> bool:
        return True


class ImageSource:
    """Base: something holding one or more images."""

    def images(self, platform: str | None = None) -> list[Image]:
        raise NotImplementedError

    @contextmanager
    def open_layer(self, layer: LayerRef) -> Iterator[IO[bytes]]:
        raise NotImplementedError
        yield  # pragma: no cover


def platform_name(p: dict[str, Any]) -> str:
    """os/architecture[/variant] of an index entry's `platform` or of an image config."""
    return "/".join(x for x in (p.get("os", "?"), p.get("architecture", "?"), p.get("variant")) if x)


def _wanted(plat: str, platform: str | None) -> bool:
    """No platform asked for, that platform, or a variant of it ("linux/arm64" takes "linux/arm64/v8")."""
    return platform is None or plat == platform or plat.startswith(platform + "/")


class OciLayout(ImageSource):
    """A directory with `oci-layout`, `index.json` and `blobs/<alg>/<hex>`."""

    def __init__(self, path: Path, ref: str | None = None) -> None:
        self.path = path
        self.ref = ref  # org.opencontainers.image.ref.name to pick, when the index holds several

    def _blob(self, digest: str) -> Path:
        alg, hexpart = digest.split(":", 1)
        return self.path / "blobs" / alg / hexpart

    def _json(self, digest: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._blob(digest).read_bytes())
        except (OSError, ValueError) as exc:
            raise ImageError(f"cannot read {digest} from the layout: {exc}") from None
        return data

    def images(self, platform: str | None = None) -> list[Image]:
        try:
            index = json.loads((self.path / "index.json").read_text())
        except (OSError, ValueError) as exc:
            raise ImageError(f"{self.path} is not an OCI image layout: {exc}") from None
        entries = index.get("manifests") or []
        if self.ref is not None:
            entries = [
                m for m in entries if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == self.ref
            ]
            if not entries:
                raise ImageError(f"no image named {self.ref!r} in {self.path}")
        images: list[Image] = []
        for desc in entries:
            images.extend(self._resolve(desc, platform))
        if not images:
            raise ImageError("no image (for that platform) in the layout")
        return images

    def _resolve(self, desc: dict[str, Any], platform: str | None) -> list[Image]:
        doc = self._json(desc["digest"])
        media = doc.get("mediaType") or desc.get("mediaType")
        if media in mt.INDEXES or "manifests" in doc:
            out: list[Image] = []
            for child in doc.get("manifests", []):
                plat = platform_name(child.get("platform") or {})
                if plat.startswith("unknown/"):  # attestation manifests (buildkit)
                    continue
                if _wanted(plat, platform):
                    out.extend(self._resolve(child, platform))
            return out
        config = self._json(doc["config"]["digest"])
        plat = platform_name(config)
        layers = [LayerRef(layer["digest"], int(layer.get("size", 0))) for layer in doc.get("layers", [])]
        return [Image(self, layers, config, plat)]

    @contextmanager
    def open_layer(self, layer: LayerRef) -> Iterator[IO[bytes]]:
        with open(self._blob(layer.digest), "rb") as f:
            yield f


class DockerArchive(ImageSource):
    """A `docker save` tar: `manifest.json` names each image's config and layer members."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, "r:")  # noqa: SIM115 - random access for the object's life (uncompressed)
            manifest = json.load(self._member("manifest.json"))
        except (OSError, tarfile.TarError, ValueError, KeyError) as exc:
            raise ImageError(f"{path} is not a docker save archive: {exc}") from None
        self._manifest: list[dict[str, Any]] = manifest

    def _member(self, name: str) -> IO[bytes]:
        f = self._tar.extractfile(name)
        if f is None:
            raise KeyError(name)
        return f

    def images(self, platform: str | None = None) -> list[Image]:
        out = []
        for entry in self._manifest:
            config = json.load(self._member(entry["Config"]))
            plat = platform_name(config)
            if not _wanted(plat, platform):
                continue
            layers = [LayerRef(name, self._tar.getmember(name).size) for name in entry["Layers"]]
            out.append(Image(self, layers, config, plat))
        if not out:
            raise ImageError("no image (for that platform) in the archive")
        return out

    @contextmanager
    def open_layer(self, layer: LayerRef) -> Iterator[IO[bytes]]:
        yield self._member(layer.digest)


def open_source(path: Path) -> ImageSource:
    """An OCI layout directory (optionally `dir:ref`) or a docker save archive."""
    text = str(path)
    ref = None
    if not path.exists() and ":" in text:
        text, ref = text.rsplit(":", 1)
        path = Path(text)
    if path.is_dir():
        if not (path / "index.json").exists():
            raise ImageError(f"{path} has no index.json: not an OCI image layout")
        return OciLayout(path, ref)
    if path.is_file():
        return DockerArchive(path)
    raise ImageError(f"{path} does not exist")
