"""Content-addressed blob storage: bytes only, addressed by digest (see DESIGN.md)."""

from dockyard.storage.base import (
    BlobStore,
    DigestMismatch,
    UploadBusy,
    UploadNotFound,
    UploadOffsetMismatch,
)

__all__ = ["BlobStore", "DigestMismatch", "UploadBusy", "UploadNotFound", "UploadOffsetMismatch"]
