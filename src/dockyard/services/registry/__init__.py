"""The distribution model: repositories, blobs, uploads, manifests, tags, referrers."""

from dockyard.services.registry.blobs import BlobService
from dockyard.services.registry.catalog import CatalogService
from dockyard.services.registry.manifests import ManifestService
from dockyard.services.registry.uploads import UploadService

__all__ = ["BlobService", "CatalogService", "ManifestService", "UploadService"]
