"""Errors raised by the pure OCI layer; the services re-raise them as registry errors.

`CodedError` is the one shape of every error Dockyard maps onto the wire (these and the services'
`RegistryError`): a message, optional structured detail, and the OCI error code of its kind, given
once per kind as a class keyword: `class NameInvalid(RegistryError, code="NAME_INVALID"): ...`.
"""

from __future__ import annotations

from typing import Any


class CodedError(Exception):
    code = "UNKNOWN"

    def __init_subclass__(cls, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class OCIFormatError(CodedError, ValueError, code="INVALID"):
    """Input that does not follow an OCI/Docker grammar or document schema."""


class InvalidDigest(OCIFormatError, code="DIGEST_INVALID"): ...


class UnsupportedDigest(InvalidDigest):
    """Well-formed digest with an algorithm we do not implement."""


class InvalidName(OCIFormatError, code="NAME_INVALID"): ...


class InvalidTag(OCIFormatError, code="TAG_INVALID"): ...


class InvalidManifest(OCIFormatError, code="MANIFEST_INVALID"): ...
