"""Errors raised by the pure OCI layer; the services re-raise them as registry errors."""


class OCIFormatError(ValueError):
    """Input that does not follow an OCI/Docker grammar or document schema."""

    code = "INVALID"

    def __init__(self, message: str, detail: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidDigest(OCIFormatError):
    code = "DIGEST_INVALID"


class UnsupportedDigest(InvalidDigest):
    """Well-formed digest with an algorithm we do not implement."""


class InvalidName(OCIFormatError):
    code = "NAME_INVALID"


class InvalidTag(OCIFormatError):
    code = "TAG_INVALID"


class InvalidManifest(OCIFormatError):
    code = "MANIFEST_INVALID"
