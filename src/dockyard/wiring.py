"""Builds the object graph (database, storage, services) from settings. No HTTP here."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.config import Settings
from dockyard.db.engine import Database
from dockyard.services.auth.policy import AccessPolicy
from dockyard.services.auth.tokens import TokenService
from dockyard.services.auth.users import UserService
from dockyard.services.registry import BlobService, CatalogService, ManifestService, UploadService
from dockyard.storage.base import BlobStore
from dockyard.storage.filesystem import FilesystemBlobStore


@dataclass
class Services:
    settings: Settings
    db: Database
    store: BlobStore
    blobs: BlobService
    uploads: UploadService
    manifests: ManifestService
    catalog: CatalogService
    users: UserService
    tokens: TokenService
    policy: AccessPolicy

    def close(self) -> None:
        self.db.dispose()


def build_services(settings: Settings, store: BlobStore | None = None, db: Database | None = None) -> Services:
    db = db or Database(settings.resolved_database_url)
    store = store or FilesystemBlobStore(settings.resolved_storage_path, fsync=settings.fsync)
    return Services(
        settings=settings,
        db=db,
        store=store,
        blobs=BlobService(db, store),
        uploads=UploadService(db, store),
        manifests=ManifestService(db, settings.max_manifest_bytes),
        catalog=CatalogService(db),
        users=UserService(db),
        tokens=TokenService(db, settings.token_issuer, settings.token_service, settings.token_ttl_seconds),
        policy=AccessPolicy(),
    )


def prepare(services: Services) -> str | None:
    """First-start work, done once before serving: migrate, signing key, admin user.

    Returns the generated admin password when one was generated (to be printed once).
    """
    services.settings.data_dir.mkdir(parents=True, exist_ok=True)
    services.db.migrate()
    services.tokens.ensure_key()
    return services.users.ensure_admin(services.settings.admin_password)
