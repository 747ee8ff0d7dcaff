"""Request input of the registry services checked against the OCI grammar, as the services' errors."""

from __future__ import annotations

from dockyard.oci.digest import Digest
from dockyard.oci.errors import InvalidDigest, InvalidName, InvalidTag
from dockyard.oci.names import validate_name, validate_tag
from dockyard.services.errors import DigestInvalid, NameInvalid, TagInvalid


def check_name(name: str) -> str:
    try:
        return validate_name(name)
    except InvalidName as exc:
        raise NameInvalid(exc.message, exc.detail) from None


def check_tag(tag: str) -> str:
    try:
        return validate_tag(tag)
    except InvalidTag as exc:
        raise TagInvalid(exc.message, exc.detail) from None


def check_digest(value: str) -> Digest:
    try:
        return Digest.parse(value)
    except InvalidDigest as exc:
        raise DigestInvalid(exc.message, {"digest": value}) from None
