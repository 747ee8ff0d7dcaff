"""Content-addressed blob storage: bytes only, addressed by digest (see DESIGN.md)."""

from dockyard.storage.base import (
    BlobStore,
    DigestMismatch,
    UploadBusy,
    UploadNotFound,
    UploadState,
)

__all__ = ["BlobStore", "DigestMismatch", "UploadBusy", "UploadNotFound", "UploadState"]
