"""Repository name and tag grammar (OCI distribution-spec "Pulling manifests")."""

from __future__ import annotations

import re

from dockyard.oci.errors import InvalidName, InvalidTag

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
# Used with fullmatch only: `re.match(...$)` would also accept a trailing newline ("latest\n").
_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
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


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.fullmatch(tag))


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and bool(_NAME_RE.fullmatch(name))
