"""One settings object: defaults < config file (TOML) < DOCKYARD_* environment variables."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_FILE_ENV = "DOCKYARD_CONFIG"


class ConfigError(Exception):
    """A bad setting; the message names the setting and the problem."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCKYARD_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(5000, ge=1, le=65535, description="TCP port to listen on.")
    workers: int = Field(1, ge=1, le=64, description="Server worker processes.")
    data_dir: Path = Field(Path("dockyard-data"), description="Folder for the SQLite database and blobs.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/dockyard.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    storage_path: Path | None = Field(None, description="Blob folder; default <data_dir>/storage.")
    public_url: str | None = Field(
        None,
        description="External base URL (e.g. https://registry.example.com) used in the token realm; "
        "default: taken from each request's Host header.",
    )
    token_service: str = Field("dockyard", min_length=1, description="The `service` name in tokens.")
    token_issuer: str = Field("dockyard", min_length=1, description="The `iss` claim of issued tokens.")
    token_ttl_seconds: int = Field(300, ge=30, le=86400, description="Lifetime of issued bearer tokens.")
    admin_password: str | None = Field(
        None, description="Password for the `admin` user created on first start; generated if unset."
    )
    max_manifest_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest manifest accepted.")
    fsync: bool = Field(True, description="fsync blobs before they become visible.")
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$", description="Log level.")
    server: str = Field("granian", pattern="^(granian|uvicorn)$", description="ASGI server implementation.")

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql+psycopg:// URL")
        return v

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'dockyard.db').resolve()}"

    @property
    def resolved_storage_path(self) -> Path:
        return (self.storage_path or self.data_dir / "storage").resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))


class _TomlFileSource(PydanticBaseSettingsSource):
    """Settings from the TOML file named by DOCKYARD_CONFIG (set by `--config`)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        import os

        path = os.environ.get(CONFIG_FILE_ENV)
        self._data: dict[str, Any] = {}
        if path:
            try:
                self._data = tomllib.loads(Path(path).read_text())
            except FileNotFoundError:
                raise ConfigError(f"config file {path} does not exist") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation failures into one readable ConfigError."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"DOCKYARD_{name.upper()}"
            problems.append(f"  {name} ({env}): {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None
