"""What the registry runs with: the settings in force (secrets never shown) and storage usage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dockyard.api.management.deps import Caller, ServicesDep, require_system
from dockyard.config import mask_url, overview
from dockyard.services.auth.permissions import SystemPermission

router = APIRouter(tags=["system"])


class SettingOut(BaseModel):
    name: str
    value: Any = Field(description='The value in force; for a secret only "set" or null, never the value.')
    secret: bool
    description: str


class StorageOut(BaseModel):
    blobs: int = Field(description="Blobs stored (each once, however many repositories link it).")
    bytes: int = Field(description="Their size in bytes.")
    repositories: int
    manifests: int
    storage: str = Field(description="Where blobs live (file://… or s3://…).")


@router.get(
    "/system/settings",
    response_model=list[SettingOut],
    summary="The settings in force, secrets masked (system administrators)",
)
def get_settings(svc: ServicesDep, caller: Caller) -> list[dict[str, Any]]:
    require_system(svc, caller, SystemPermission.READ_SYSTEM)
    return overview(svc.settings)


@router.get("/system/storage", response_model=StorageOut, summary="Storage usage (system administrators)")
def get_storage(svc: ServicesDep, caller: Caller) -> StorageOut:
    require_system(svc, caller, SystemPermission.READ_SYSTEM)
    where = svc.settings.storage_url or svc.settings.resolved_storage_path.as_uri()
    return StorageOut(**svc.blobs.usage(), storage=mask_url(where))
