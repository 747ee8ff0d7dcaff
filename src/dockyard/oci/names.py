"""Repository name and tag grammar (OCI distribution-spec "Pulling manifests")."""

from __future__ import annotations

import re

from dockyard.oci.errors import InvalidName, InvalidTag

# One path component; a project name is one too (the first component of its repositories' names).
COMPONENT_PATTERN = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
# Used with fullmatch only: `re.match(...$)` would also accept a trailing newline ("latest\n").
_NAME_RE = re.compile(rf"{COMPONENT_PATTERN}(?:/{COMPONENT_PATTERN})*")
_TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# Docker and distribution cap the full name (including a registry host of any length) at 255.
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"repository name longer than {MAX_NAME_LENGTH} characters", {"name": name[:64]})
    if not _NAME_RE.fullmatch(name):
        raise InvalidName(f"invalid repository name {name!r}", {"name": name})
    return name


def validate_tag(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag):
        raise InvalidTag(f"invalid tag {tag!r}", {"tag": tag})
    return tag


def project_of(repository: str) -> str:
    """The project a repository belongs to: the first path component of its name (a one-component
    name, `alpine`, is its own project). Dockyard's rule, the one place it is spelled."""
    return repository.split("/", 1)[0]
