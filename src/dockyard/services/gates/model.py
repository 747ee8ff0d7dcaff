"""What a gate decides about, and what it answers."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from dockyard.oci.errors import InvalidManifest
from dockyard.oci.manifest import parse_manifest
from dockyard.oci.names import project_of
from dockyard.services.auth.identity import Identity


class Stage(enum.StrEnum):
    PULL = "pull"  # a manifest GET, an admission review, a promotion's source, a UI download
    TAG = "tag"  # a tag is to point at this manifest (push by tag, tag revert, promotion's target)


@dataclass(frozen=True, eq=False)
class Subject:
    """One image in one repository. `tag` is set at tag time. `caller` is who asks (None: nobody in
    particular, as in an admission review); a gate may let some callers through."""

    repository: str
    digest: str
    media_type: str
    content: bytes
    tag: str | None = None
    caller: Identity | None = None
    # Lookups several gates need (the image's scans, say), made once per evaluation.
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def project(self) -> str:
        return project_of(self.repository)

    @cached_property
    def images(self) -> tuple[str, ...]:
        """The image digests this subject stands for: an index's children, otherwise itself."""
        try:
            parsed = parse_manifest(self.content, self.media_type, max_bytes=None)  # admitted at push time
        except InvalidManifest:
            return (self.digest,)
        if parsed.manifests:
            return tuple(d.digest for d in parsed.manifests)
        return (self.digest,)


@dataclass(frozen=True)
class Refusal:
    gate: str  # the gate's name, e.g. "scan_severity"
    message: str  # what is wrong, in words a user understands
    remedy: str  # what would satisfy the gate
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.message} (gate {self.gate}: {self.remedy})"


class Gate(Protocol):
    """One decision. `stages` says when it is asked; `evaluate` returns None to let the subject pass."""

    name: str
    stages: frozenset[Stage]

    def evaluate(self, subject: Subject) -> Refusal | None: ...

    def forget(self, project: str | None = None) -> None:
        """Drop what the gate cached about a project (None: every project); this replica changed it."""
        ...
