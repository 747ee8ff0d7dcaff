"""The registry's events, one frozen dataclass per kind.

Each names the repository and the digest it is about, the tag where one is involved, who acted
(`actor`, the request's identity or a system actor such as the collector) and when (`at`). They
carry names, not database ids: the same event goes to in-process listeners and, through the
outbox, out of the process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from dockyard.db.engine import now
from dockyard.services.audit import Actor, current_actor


def _actor() -> Actor:
    return current_actor()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    kind: ClassVar[str]
    repository: str
    digest: str
    actor: Actor = field(default_factory=_actor)
    at: float = field(default_factory=now)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestPushed(_Event):
    """A manifest or index was stored (or stored again) in `repository`, by tag or by digest."""

    kind: ClassVar[str] = "manifest.pushed"
    tag: str | None
    media_type: str
    size: int
    config_digest: str | None = None  # an image's config blob; None for an index or a bare artifact
    children: tuple[str, ...] = ()  # the manifests an index lists
    subject: str | None = None  # the manifest this one refers to (a signature, an SBOM…)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestPulled(_Event):
    """A manifest was served by GET (not HEAD). No transaction: see Listeners.pulled."""

    kind: ClassVar[str] = "manifest.pulled"
    tag: str | None  # None: pulled by digest


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestDeleted(_Event):
    """A manifest went, with every tag on it (`tags`): deleted by digest, or by the collector."""

    kind: ClassVar[str] = "manifest.deleted"
    tags: tuple[str, ...] = ()
    collected: bool = False  # removed by the garbage collector, not by a request


@dataclass(frozen=True, slots=True, kw_only=True)
class TagMoved(_Event):
    """An existing tag now points at `digest`; it pointed at `old_digest`."""

    kind: ClassVar[str] = "tag.moved"
    tag: str
    old_digest: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TagDeleted(_Event):
    """A tag was deleted (its manifest, `digest`, stays until the collector finds it unclaimed)."""

    kind: ClassVar[str] = "tag.deleted"
    tag: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobPushed(_Event):
    """An upload was committed: the blob is stored and linked into `repository`."""

    kind: ClassVar[str] = "blob.pushed"
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobMounted(_Event):
    """A blob `source` can see was linked into `repository` without an upload."""

    kind: ClassVar[str] = "blob.mounted"
    size: int
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobDeleted(_Event):
    """A blob's link to `repository` went (its bytes go when no repository links them any more)."""

    kind: ClassVar[str] = "blob.deleted"
    collected: bool = False  # an upload no manifest claimed, removed by the garbage collector


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageQuarantined(_Event):
    """An image (`digest`) was quarantined in `project` (named through `repository`, where it was
    asked for or found), by hand or automatically (`advisory`: the finding that did it)."""

    kind: ClassVar[str] = "image.quarantined"
    project: str
    reason: str
    automatic: bool = False
    advisory: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageReleased(_Event):
    """A quarantined image was released in `project`."""

    kind: ClassVar[str] = "image.released"
    project: str
    reason: str  # the quarantine's reason, for whoever reads the event later


ChangeEvent = (
    ManifestPushed
    | ManifestDeleted
    | TagMoved
    | TagDeleted
    | BlobPushed
    | BlobMounted
    | BlobDeleted
    | ImageQuarantined
    | ImageReleased
)
RegistryEvent = ChangeEvent | ManifestPulled
