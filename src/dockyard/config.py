"""One settings object: defaults < config file (TOML) < DOCKYARD_* environment variables."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_FILE_ENV = "DOCKYARD_CONFIG"


def _default_vulndb_sources() -> tuple[str, ...]:
    from dockyard.scan.sources import DEFAULT_SOURCES

    return DEFAULT_SOURCES


# How often a background duty runs, in seconds; 0 turns its schedule off.
Interval = Annotated[float, Field(ge=0)]


class ConfigError(Exception):
    """A bad setting; the message names the setting and the problem."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCKYARD_", extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(5000, ge=1, le=65535, description="TCP port to listen on.")
    workers: int = Field(1, ge=1, le=64, description="Server worker processes.")
    data_dir: Path = Field(Path("dockyard-data"), description="Folder for the SQLite database and blobs.")
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/dockyard.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db (secret: it may hold a password).",
    )
    storage_path: Path | None = Field(
        None, description="Blob folder; default <data_dir>/storage (used when storage_url is not set)."
    )
    storage_url: str | None = Field(
        None,
        pattern=r"^(file://.+|s3://[^/]+(/.*)?)$",
        description="Where blobs live: file:///path or s3://bucket/optional/prefix; default file://<storage_path>.",
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint for non-AWS servers (MinIO, Ceph, ...).")
    s3_region: str | None = Field(None, description="S3 region; default: the AWS chain's (AWS_REGION, profile).")
    storage_redirect: bool = Field(
        False, description="Answer blob GETs with 307 to a presigned storage URL (S3 only) instead of streaming."
    )
    storage_redirect_expiry_seconds: int = Field(
        1200, ge=10, le=7 * 86400, description="Lifetime of the presigned URLs blob GETs redirect to."
    )
    public_url: str | None = Field(
        None,
        description="External base URL (e.g. https://registry.example.com) used in the token realm; "
        "default: taken from each request's Host header.",
    )
    token_service: str = Field("dockyard", min_length=1, description="The `service` name in tokens.")
    token_issuer: str = Field("dockyard", min_length=1, description="The `iss` claim of issued tokens.")
    token_ttl_seconds: int = Field(300, ge=30, le=86400, description="Lifetime of issued bearer tokens.")
    admin_password: SecretStr | None = Field(
        None, description="Password for the `admin` user created on first start; generated (and printed) if unset."
    )
    max_manifest_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest manifest accepted.")
    fsync: bool = Field(True, description="fsync blobs before they become visible.")
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$", description="Log level.")
    server: str = Field("granian", pattern="^(granian|uvicorn)$", description="ASGI server implementation.")
    http_header_read_timeout_seconds: float = Field(
        30,
        gt=0,
        le=3600,
        description="How long a connection may take to send a request's headers before it is closed "
        "(granian; uvicorn has no such limit).",
    )
    http_body_read_timeout_seconds: float = Field(
        60,
        gt=0,
        le=3600,
        description="How long the server waits for the next part of a request body before it answers "
        "408 and closes the connection.",
    )
    metrics_users: list[str] = Field(
        default_factory=list,
        description="Users or robots (robot$name) besides system administrators who may read /metrics "
        "(with Basic credentials); nobody else, anonymous callers included, may.",
    )

    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For is believed, for "
        "the client address in the audit log and login limits, and whose X-Forwarded-Proto and "
        "X-Forwarded-Host name the external URL (the token realm, OIDC redirects) unless `public_url` is set.",
    )

    # --- TLS ---------------------------------------------------------------------------------------
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate (chain) to serve HTTPS with; with `tls_key_file`. Default: plain HTTP."
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of `tls_cert_file` (unencrypted).")
    tls_client_ca_file: Path | None = Field(
        None,
        description="PEM CA certificates: when set, every client must present a certificate one of them "
        "signed to complete the TLS handshake (registry authentication still applies on top).",
    )
    tls_reload_interval_seconds: Interval = Field(
        5,
        description="How often the TLS files are checked for change; a changed, loadable set replaces the "
        "workers gracefully (as SIGHUP does). 0: only on SIGHUP.",
    )

    # --- background duties and replicas ------------------------------------------------------
    background_duties: bool = Field(
        True,
        description="`dockyard serve` also runs the background duties (collector, retention, scrub, scans, "
        "vulnerability-database updates); false: it only serves, and `dockyard worker` runs them.",
    )
    duty_lease_seconds: float | None = Field(
        None,
        ge=2,
        le=86400,
        description="How long a duty's lease lasts unrenewed, i.e. how soon another replica takes over a "
        "duty whose holder died; default ten minutes, or two of the duty's intervals if longer.",
    )

    # --- lifecycle ------------------------------------------------------------------------------
    gc_grace_seconds: float = Field(
        3600,
        ge=0,
        description="How long unreferenced content is kept before the collector removes it "
        "(uploaded layers waiting for their manifest, untagged manifests, unlinked blobs).",
    )
    gc_interval_seconds: Interval = Field(
        60, description="How often the background collector runs; 0 turns it off (use `dockyard gc`)."
    )
    gc_pace: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Fixes the fraction of the time the collector may be busy (it sleeps the rest; 1: never "
        "pauses). Unset (default), the collector paces itself by measured contention: it backs off while its "
        "own transactions wait longer or run slower than its best, and speeds up while they do not.",
    )
    tag_history_keep_days: float = Field(
        14,
        ge=0,
        le=36500,
        description="Manifests a tag pointed at within this many days (its history) are not garbage-collected, "
        "so a tag can be reverted to them; 0: the history does not hold anything.",
    )
    upload_ttl_seconds: float = Field(86400, gt=0, description="Upload sessions older than this are abandoned.")
    upload_idle_ttl_seconds: float = Field(
        3600, gt=0, description="Upload sessions that received no bytes for this long are abandoned."
    )
    max_upload_sessions_per_identity: int = Field(
        100, ge=0, description="Open upload sessions one user or robot may have at a time (429 beyond); 0: no cap."
    )
    retention_interval_seconds: Interval = Field(
        3600, description="How often enabled retention policies run; 0 turns the schedule off."
    )
    scrub_interval_seconds: Interval = Field(
        0, description="How often the storage scrub re-verifies every blob; 0 (default) off."
    )
    scrub_rate_mb: float = Field(50, gt=0, description="Scrub read bandwidth limit, MB/s.")

    # --- scanning --------------------------------------------------------------------------------
    vulndb_path: Path | None = Field(None, description="Vulnerability database folder; default <data_dir>/vulndb.")
    vulndb_sources: list[str] = Field(
        default_factory=lambda: list(_default_vulndb_sources()),
        description="OSV `all.zip` sources: https:// URLs (osv.dev's per-ecosystem zips by default), "
        "file:// URLs or paths.",
    )
    vulndb_update_interval_seconds: Interval = Field(
        21600, description="How often the vulnerability database is updated; 0 turns the schedule off."
    )
    vulndb_severity_sources: list[str] = Field(
        default_factory=list,
        description="CVSS ratings of CVEs for advisories that carry none (Debian's, Alpine's): NVD CVE API 2.0 "
        "JSON files or URLs (the NVD feeds nvdcve-2.0-<year>.json.gz, plain, .gz or .zip), or folders of them; "
        "updated with the advisories.",
    )
    vulndb_stale_after_seconds: float = Field(
        7 * 86400,
        gt=0,
        description="A vulnerability database whose sources were last read successfully longer ago than this "
        "is reported as stale (in scan reports, GET /api/v1/vulndb, the metrics and the log).",
    )
    scan_on_push: bool = Field(True, description="Scan images when they are pushed (projects can override it).")
    scan_interval_seconds: float = Field(2, gt=0, description="How often the scan queue is looked at.")
    signature_interval_seconds: float = Field(
        2,
        ge=0,
        description="How often the signature queue is looked at (signatures are verified off the request path; "
        "0: never).",
    )
    signature_max_blob_bytes: int = Field(
        1024 * 1024,
        gt=0,
        le=64 * 1024 * 1024,
        description="The largest blob of a signature manifest read to verify it (larger: the signature is invalid).",
    )
    scan_allowlist: list[str] = Field(
        default_factory=list, description="Advisory or CVE ids no project's pull policy blocks on (system-wide)."
    )
    external_scanner_url: str | None = Field(
        None,
        description="Base URL of a Harbor Scanner Adapter API v1.1 service to scan with instead of the "
        "built-in scanner (e.g. http://trivy-adapter:8080).",
    )
    external_scanner_authorization: SecretStr | None = Field(
        None, description="Authorization header value sent to the scanner adapter (e.g. 'Bearer …')."
    )
    scanner_enabled: bool = Field(
        True, description="This replica works the scan queue (each queued image is claimed by one process at a time)."
    )

    # --- quarantine and admission (docs/quarantine.md, docs/admission.md) ------------------------
    security_reviewers: list[str] = Field(
        default_factory=list,
        description="Accounts (user names, robot$name) and groups (group:NAME) holding the security reviewer "
        "role: they may pull quarantined images and quarantine or release images in any project.",
    )
    admission_registry_names: list[str] = Field(
        default_factory=list,
        description="Host names (host[:port]) under which Kubernetes refers to this registry's images, for "
        "POST /admission/validate; the host of `public_url` is always one.",
    )
    admission_other_registries: Literal["allow", "deny"] = Field(
        "allow", description="What the admission review answers for images of other registries."
    )
    admission_token: SecretStr | None = Field(
        None,
        description="Enables POST /admission/validate, which then requires `Authorization: Bearer <this>` "
        "(the API server's kubeconfig for the webhook sends it); unset, the webhook is off (404).",
    )
    admission_max_body_bytes: int = Field(
        3 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest AdmissionReview accepted (413 beyond)."
    )

    # --- projects and access -------------------------------------------------------------------
    users_can_create_projects: bool = Field(
        False, description="Let every user create projects (otherwise system admins and users flagged for it)."
    )
    auto_create_projects: bool = Field(
        True,
        description="A push into a project that does not exist creates it (private, pusher as admin) "
        "when the pusher may create projects; otherwise the push is DENIED.",
    )
    audit_retention_days: float = Field(
        365,
        ge=0,
        description="Audit events older than this are deleted (by every server process, hourly; "
        "`dockyard audit prune` at once); 0 keeps them for ever.",
    )
    account_check_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="How long a replica may rely on its last check that a token's account is still enabled "
        "(0: check on every request). Changes made on the same replica apply at once.",
    )
    login_slow_after: int = Field(
        5, ge=1, description="Failed logins for one account (from anywhere) before failure answers slow down."
    )
    login_lock_after: int = Field(
        10, ge=1, description="Failed logins for one account from one address before that account is refused there."
    )
    login_ip_slow_after: int = Field(
        25, ge=1, description="Failed logins from one address within the window before failure answers slow down."
    )
    login_ip_lock_after: int = Field(
        50, ge=1, description="Failed logins from one address within the window before it is refused (NAT-friendly)."
    )
    login_window_seconds: float = Field(900, gt=0, description="Window in which failed logins are counted.")
    login_lockout_seconds: float = Field(900, gt=0, description="How long logins stay refused after the limit.")

    # --- LDAP / Active Directory (on when ldap_url is set) -------------------------------------
    ldap_url: str | None = Field(None, description="ldap://host:389 or ldaps://host:636; unset: LDAP off.")
    ldap_bind_dn: str | None = Field(None, description="Service account that searches for users.")
    ldap_bind_password: SecretStr | None = Field(None, description="Its password.")
    ldap_user_base: str | None = Field(None, description="Where users are searched (required with ldap_url).")
    ldap_user_filter: str = Field(
        "(&(objectClass=inetOrgPerson)(uid={username}))",
        description="Filter finding one user; AD: (&(objectClass=user)(sAMAccountName={username})).",
    )
    ldap_group_base: str | None = Field(None, description="Where groups are searched; unset: only memberOf.")
    ldap_group_filter: str = Field("(|(member={dn})(uniqueMember={dn}))", description="Groups of the user {dn}.")
    ldap_group_name_attribute: str = Field("cn", description="Attribute naming a group (used in project grants).")
    ldap_start_tls: bool = Field(False, description="Upgrade ldap:// connections with StartTLS.")
    ldap_verify_tls: bool = Field(True, description="Verify the directory's certificate.")
    ldap_ca_file: str | None = Field(None, description="CA certificate (PEM) for the directory.")

    # --- web UI (src/dockyard/ui) --------------------------------------------------------------
    ui_session_idle_seconds: int = Field(
        1800, ge=60, description="A UI session unused this long ends (the user signs in again)."
    )
    ui_session_absolute_seconds: int = Field(
        43200, ge=300, description="A UI session ends this long after sign-in, however busy."
    )

    # --- OIDC (on when oidc_issuer is set) -----------------------------------------------------
    oidc_issuer: str | None = Field(None, description="Issuer URL (discovery at /.well-known/openid-configuration).")
    oidc_client_id: str | None = Field(None, description="Client id registered with the provider.")
    oidc_client_secret: SecretStr | None = Field(None, description="Client secret.")
    oidc_scopes: str = Field("openid profile email", description="Scopes asked for at login.")
    oidc_username_claim: str = Field("preferred_username", description="ID-token claim used as the user name.")
    oidc_groups_claim: str = Field("groups", description="ID-token claim listing the user's groups.")
    oidc_verify_tls: bool = Field(True, description="Verify the provider's certificate.")

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql+psycopg:// URL")
        return v

    @model_validator(mode="after")
    def _check_providers(self) -> Settings:
        if self.ldap_url and not self.ldap_user_base:
            raise ValueError("ldap_user_base is required when ldap_url is set")
        if self.oidc_issuer and not (self.oidc_client_id and self.oidc_client_secret):
            raise ValueError("oidc_client_id and oidc_client_secret are required when oidc_issuer is set")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file are set together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, v: list[str]) -> list[str]:
        for item in v:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return v

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.trusted_proxies)

    @property
    def resolved_database_url(self) -> str:
        """The URL to connect with, password included: never log it (see `database_url_for_logs`)."""
        url = secret(self.database_url)
        if url:
            return url
        return f"sqlite:///{(self.data_dir / 'dockyard.db').resolve()}"

    @property
    def database_url_for_logs(self) -> str:
        """The database URL with its password masked."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            return make_url(self.resolved_database_url).render_as_string(hide_password=True)
        except ArgumentError:
            return "<unparsable database URL>"

    @property
    def resolved_vulndb_path(self) -> Path:
        return (self.vulndb_path or self.data_dir / "vulndb").resolve()

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


SECRET_SETTINGS = frozenset(
    name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)
)


# user:password@ in a URL (a vulnerability source, a scanner, an issuer may carry one).
_URL_PASSWORD = re.compile(r"(?<=://)([^/@:\s]*):[^/@\s]*@")


def mask_url(value: str) -> str:
    """`value` with the password of any URL in it replaced by ***."""
    return _URL_PASSWORD.sub(r"\1:***@", value)


def overview(settings: Settings) -> list[dict[str, Any]]:
    """Every setting in force, for administrators: a secret setting says only whether it is set
    (the database URL is shown with its password masked), and a password in any URL is masked."""

    def shown(value: Any) -> Any:
        if isinstance(value, str):
            return mask_url(value)
        if isinstance(value, list | tuple | set | frozenset):
            return [shown(v) for v in value]
        if isinstance(value, dict):
            return {k: shown(v) for k, v in value.items()}
        if value is None or isinstance(value, bool | int | float):
            return value
        return str(value)

    out = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        entry: dict[str, Any] = {"name": name, "description": field.description or ""}
        entry["secret"] = name in SECRET_SETTINGS
        if name == "database_url":
            entry["value"] = settings.database_url_for_logs
        elif name in SECRET_SETTINGS:
            entry["value"] = "set" if value is not None and secret(value) else None
        else:
            entry["value"] = shown(value)
        out.append(entry)
    return out


def secret(value: SecretStr | str | None) -> str | None:
    """The plain value of an optional secret setting, for the one place that must use it. (A plain
    str gets here only from `model_copy(update=...)`, which skips validation.)"""
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation failures into one readable ConfigError."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"DOCKYARD_{name.upper()}"
            got = "(hidden)" if name in SECRET_SETTINGS else repr(err.get("input"))
            problems.append(f"  {name} ({env}): {err['msg']} (got {got})")
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None
