"""Content digests (OCI image-spec "descriptor.md#digests")."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.oci.errors import InvalidDigest, UnsupportedDigest

if TYPE_CHECKING:
    from hashlib import _Hash

# digest ::= algorithm ":" encoded ; algorithm ::= component (separator component)*
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")  # fullmatch only
# Registered algorithms: lowercase hex of a fixed length.
_ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_HEX_RE = re.compile(r"[a-f0-9]+")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    encoded: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    @classmethod
    def parse(cls, value: str) -> Digest:
        if not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
            raise InvalidDigest(f"invalid digest {value!r}")
        algorithm, encoded = value.split(":", 1)
        length = _ALGORITHMS.get(algorithm)
        if length is None:
            raise UnsupportedDigest(f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != length or not _HEX_RE.fullmatch(encoded):
            raise InvalidDigest(f"invalid {algorithm} digest {value!r}")
        return cls(algorithm, encoded)

    def hasher(self) -> _Hash:
        return hashlib.new(self.algorithm)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())


def is_digest(value: str) -> bool:
    """True when `value` looks like a digest (contains ':'), as opposed to a tag."""
    return ":" in value
