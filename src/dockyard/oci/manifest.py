"""Parsing and validation of image manifests and indexes (OCI image-spec v1.1, Docker schema 2)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.errors import InvalidDigest, InvalidManifest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024


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
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{where}: size must be a non-negative integer")
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


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """Validate `body` as a manifest or index; `content_type` is the request's Content-Type.

    The media type is the document's own `mediaType` when present (it must agree with the header),
    otherwise the header's. Schema 1 manifests are refused: clients fall back to schema 2.
    """
    if len(body) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"manifest is {len(body)} bytes, the limit is {MAX_MANIFEST_BYTES}")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifest(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidManifest("manifest must be a JSON object")
    header_type = (content_type or "").split(";", 1)[0].strip() or None
    doc_type = doc.get("mediaType")
    if doc_type is not None and not isinstance(doc_type, str):
        raise InvalidManifest("mediaType must be a string")
    if doc_type and header_type and header_type in mt.MANIFESTS and doc_type != header_type:
        raise InvalidManifest(f"Content-Type {header_type} does not match mediaType {doc_type}")
    media_type = doc_type or (header_type if header_type in mt.MANIFESTS else None)
    if media_type is None:
        # No declared type: infer from the shape, as the OCI spec allows mediaType to be absent.
        media_type = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
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
