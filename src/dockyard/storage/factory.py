"""The BlobStore that `storage_url` names: file:///path (default <storage_path>) or s3://bucket/prefix."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from dockyard.storage.base import BlobStore

if TYPE_CHECKING:
    from dockyard.config import Settings


def open_store(settings: Settings) -> BlobStore:
    url = settings.storage_url
    if not url:
        from dockyard.storage.filesystem import FilesystemBlobStore

        return FilesystemBlobStore(settings.resolved_storage_path, fsync=settings.fsync)
    if url.startswith("file://"):
        from dockyard.storage.filesystem import FilesystemBlobStore

        return FilesystemBlobStore(Path(unquote(urlsplit(url).path)).resolve(), fsync=settings.fsync)
    if url.startswith("s3://"):
        from dockyard.storage.s3 import S3BlobStore, parse_s3_url  # boto3 is imported only when used

        bucket, prefix = parse_s3_url(url)
        return S3BlobStore(
            bucket,
            prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            redirect_expiry=settings.storage_redirect_expiry_seconds if settings.storage_redirect else None,
        )
    raise ValueError(f"unsupported storage URL {url!r}: use file:///path or s3://bucket/prefix")
