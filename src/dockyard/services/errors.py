"""Domain errors. Each kind carries the OCI error code it maps to; the HTTP layer picks the status."""

from __future__ import annotations

from typing import Any

from dockyard.oci.errors import CodedError


class RegistryError(CodedError):
    """A rule of the registry refused the request; `code` (given per kind as a class keyword) is the
    OCI error code it maps to."""


class BlobUnknown(RegistryError, code="BLOB_UNKNOWN"): ...


class BlobUploadUnknown(RegistryError, code="BLOB_UPLOAD_UNKNOWN"): ...


class BlobUploadInvalid(RegistryError, code="BLOB_UPLOAD_INVALID"): ...


class RangeInvalid(BlobUploadInvalid):
    """A chunk that does not start where the upload currently ends (HTTP 416)."""

    def __init__(self, message: str, current_size: int) -> None:
        super().__init__(message, {"size": current_size})
        self.current_size = current_size


class DigestInvalid(RegistryError, code="DIGEST_INVALID"): ...


class ManifestBlobUnknown(RegistryError, code="MANIFEST_BLOB_UNKNOWN"): ...


class ManifestInvalid(RegistryError, code="MANIFEST_INVALID"): ...


class ManifestUnknown(RegistryError, code="MANIFEST_UNKNOWN"): ...


class NameInvalid(RegistryError, code="NAME_INVALID"): ...


class NameUnknown(RegistryError, code="NAME_UNKNOWN"): ...


class SizeInvalid(RegistryError, code="SIZE_INVALID"): ...


class TooLarge(SizeInvalid):
    """Body larger than the registry accepts (HTTP 413)."""


class TagInvalid(RegistryError, code="TAG_INVALID"): ...


class Unauthorized(RegistryError, code="UNAUTHORIZED"): ...


class Denied(RegistryError, code="DENIED"): ...


class Unsupported(RegistryError, code="UNSUPPORTED"): ...


class PaginationInvalid(RegistryError, code="PAGINATION_NUMBER_INVALID"): ...


class RangeNotSatisfiable(RegistryError, code="SIZE_INVALID"):
    """A blob read Range outside the blob (HTTP 416)."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message, {"size": size})
        self.size = size


class TooManyRequests(RegistryError, code="TOOMANYREQUESTS"):
    """Refused for a while (brute-force lock-out, HTTP 429)."""

    def __init__(self, message: str, retry_after: int, detail: Any = None) -> None:
        super().__init__(message, detail)
        self.retry_after = retry_after


# Management-API failures (problem+json); the registry API never raises these.
class NotFound(RegistryError, code="NOT_FOUND"): ...


class Conflict(RegistryError, code="CONFLICT"): ...


class InvalidInput(RegistryError, code="INVALID"): ...


class QuotaExceeded(Denied):
    """A push that would take a project over its storage quota (HTTP 403 DENIED)."""

    def __init__(self, project: str, quota: int, used: int, needed: int) -> None:
        super().__init__(
            f"quota exceeded: project {project!r} uses {used} of {quota} bytes; this blob needs {needed} more",
            {"project": project, "quota_bytes": quota, "used_bytes": used, "needed_bytes": needed},
        )
