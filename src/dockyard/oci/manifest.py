"""Parsing and validation of image manifests and indexes (OCI image-spec v1.1, Docker schema 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.errors import InvalidDigest, InvalidManifest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the default of the max_manifest_bytes setting
# Deepest nesting of arrays and objects accepted: a real manifest nests five or six levels, and
# deeper documents only cost memory and stack in every later reader.
MAX_JSON_DEPTH = 64
# Descriptor sizes are int64 in the image spec (and in the database).
MAX_SIZE = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    def blob_references(self) -> list[Descriptor]:
        """Blobs whose bytes the registry must hold for this manifest (config and non-foreign layers)."""
        refs = [self.config] if self.config is not None else []
        refs.extend(layer for layer in self.layers if layer.media_type not in mt.FOREIGN_LAYERS)
        return refs

    def effective_artifact_type(self) -> str | None:
        """artifactType as the referrers API reports it: explicit, else the config media type."""
        if self.artifact_type:
            return self.artifact_type
        if self.config is not None and not self.is_index:
            return self.config.media_type
        return None


def _descriptor(obj: Any, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidManifest(f"{where}: descriptor must be an object")
    media_type = obj.get("mediaType")
    digest = obj.get("digest")
    size = obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidManifest(f"{where}: mediaType must be a non-empty string")
    if not isinstance(digest, str):
        raise InvalidManifest(f"{where}: digest must be a string")
    try:
        Digest.parse(digest)
    except InvalidDigest as exc:
        raise InvalidManifest(f"{where}: {exc.message}") from exc
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
        raise InvalidManifest(f"{where}: size must be an integer from 0 to {MAX_SIZE}")
    annotations = obj.get("annotations")
    if annotations is not None and (
        not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values())
    ):
        raise InvalidManifest(f"{where}: annotations must map strings to strings")
    artifact_type = obj.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise InvalidManifest(f"{where}: artifactType must be a string")
    platform = obj.get("platform")
    if platform is not None and (
        not isinstance(platform, dict)
        or not isinstance(platform.get("architecture"), str)
        or not isinstance(platform.get("os"), str)
    ):
        raise InvalidManifest(f"{where}: platform needs architecture and os strings")
    urls = obj.get("urls") or ()
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
        raise InvalidManifest(f"{where}: urls must be a list of strings")
    return Descriptor(media_type, digest, size, artifact_type, annotations, platform, tuple(urls))


def load_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted JSON: strict UTF-8 and RFC 8259 (no NaN, no lone surrogates), integers within
    64 bits (orjson refuses larger ones instead of building a 5,000-digit int), and at most
    `max_depth` levels of nesting. Raises InvalidManifest."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidManifest(f"manifest is not valid JSON: {exc}") from None
    # orjson itself stops at 1024 levels (no RecursionError); enforce the tighter bound, iteratively.
    level = [doc] if isinstance(doc, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise InvalidManifest(f"manifest nests deeper than {max_depth} levels")
        level = [
            v
            for node in level
            for v in (node.values() if isinstance(node, dict) else node)
            if isinstance(v, dict | list)
        ]
    return doc


def parse_manifest(body: bytes, content_type: str | None, max_bytes: int | None = MAX_MANIFEST_BYTES) -> ParsedManifest:
    """Validate `body` as a manifest or index.

    `content_type` is the type the client declared (the PUT's Content-Type, "" when it sent none):
    it must be a manifest media type and agree with the document's own `mediaType`, as the
    distribution spec requires. None means nothing was declared (a stored manifest read back):
    the document's `mediaType`, else its shape, decides. `max_bytes` is the registry's one
    manifest size limit (the max_manifest_bytes setting); None for manifests already admitted.
    Schema 1 manifests are refused: clients fall back to schema 2.
    """
    if max_bytes is not None and len(body) > max_bytes:
        raise InvalidManifest(f"manifest is {len(body)} bytes, the limit is {max_bytes}")
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise InvalidManifest("manifest must be a JSON object")
    doc_type = doc.get("mediaType")
    if doc_type is not None and not isinstance(doc_type, str):
        raise InvalidManifest("mediaType must be a string")
    if content_type is not None:
        header_type = content_type.split(";", 1)[0].strip().lower()
        if header_type in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED) or doc_type in (
            mt.DOCKER_SCHEMA1,
            mt.DOCKER_SCHEMA1_SIGNED,
        ):
            raise InvalidManifest("Docker schema 1 manifests are not supported")
        if header_type not in mt.MANIFESTS:
            raise InvalidManifest(
                f"Content-Type {header_type or '(none)'!r} is not a manifest media type: "
                "send the manifest's mediaType as Content-Type",
                {"content_type": header_type},
            )
        if doc_type and doc_type != header_type:
            raise InvalidManifest(
                f"Content-Type {header_type} does not match mediaType {doc_type}",
                {"content_type": header_type, "media_type": doc_type},
            )
        media_type = header_type
    else:
        # Nothing declared: the OCI spec allows mediaType to be absent, so infer from the shape.
        media_type = doc_type or (mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST)
    if media_type in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED):
        raise InvalidManifest("Docker schema 1 manifests are not supported")
    if media_type not in mt.MANIFESTS:
        raise InvalidManifest(f"unsupported manifest media type {media_type!r}")
    if doc.get("schemaVersion") != 2:
        raise InvalidManifest("schemaVersion must be 2")

    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise InvalidManifest("annotations must map strings to strings")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise InvalidManifest("artifactType must be a string")
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None

    if media_type in mt.INDEXES:
        raw = doc.get("manifests")
        if not isinstance(raw, list):
            raise InvalidManifest("an index needs a manifests list")
        children = tuple(_descriptor(d, f"manifests[{i}]") for i, d in enumerate(raw))
        return ParsedManifest(media_type, None, (), children, subject, artifact_type, annotations)

    config = _descriptor(doc.get("config"), "config")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise InvalidManifest("layers must be a list")
    layers = tuple(_descriptor(d, f"layers[{i}]") for i, d in enumerate(raw_layers))
    if media_type == mt.DOCKER_MANIFEST and artifact_type is not None:
        raise InvalidManifest("artifactType is not allowed in a Docker manifest")
    return ParsedManifest(media_type, config, layers, (), subject, artifact_type, annotations)
