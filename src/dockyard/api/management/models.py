"""Request and response bodies of the management API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

RoleName = Literal["guest", "developer", "maintainer", "admin"]
RobotAction = Literal["pull", "push", "delete"]


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=255, examples=["team-a"])
    public: bool = False


class ProjectPatch(BaseModel):
    public: bool | None = None


class ProjectOut(BaseModel):
    name: str
    public: bool
    created_by: str | None
    created_at: float
    updated_at: float
    role: str | None = Field(None, description="The caller's role in the project (system admins: admin).")
    quota_bytes: int | None = Field(None, description="Storage quota; null: none.")
    used_bytes: int = Field(0, description="Bytes of distinct blobs stored in the project.")


class RepositoryOut(BaseModel):
    name: str
    created_at: float
    tag_count: int
    used_bytes: int


class QuotaIn(BaseModel):
    quota_bytes: int | None = Field(None, ge=0, description="null lifts the quota.")


class TagRuleIn(BaseModel):
    pattern: str = Field(min_length=1, max_length=255, examples=["v*"])


class TagRuleOut(BaseModel):
    pattern: str
    created_by: str | None
    created_at: float


class RetentionIn(BaseModel):
    keep_last: int | None = Field(None, ge=0, description="Keep the N most recently pushed tags per repository.")
    keep_days: float | None = Field(None, ge=0, description="Keep tags pushed or pulled within D days.")
    keep_patterns: list[str] = Field(default_factory=list, description="Keep tags matching these patterns.")
    remove_untagged: bool = False
    enabled: bool = True


class RetentionOut(RetentionIn):
    pass


class RemovalOut(BaseModel):
    repository: str
    tag: str | None
    digest: str
    reason: str


class MemberIn(BaseModel):
    role: RoleName


class MemberOut(BaseModel):
    kind: Literal["user", "group"]
    name: str
    role: RoleName


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024)
    email: str | None = None
    is_admin: bool = False
    can_create_projects: bool = False


class UserPatch(BaseModel):
    is_admin: bool | None = None
    disabled: bool | None = None
    can_create_projects: bool | None = None
    email: str | None = None


class PasswordIn(BaseModel):
    password: str = Field(min_length=1, max_length=1024)
    current_password: str | None = Field(
        None, max_length=1024, description="Required to change your own password (not for an admin setting another's)."
    )


class UnlockOut(BaseModel):
    locks: int = Field(description="Addresses the account was locked out from")
    refused: int = Field(description="Login attempts refused while it was locked")


class UserOut(BaseModel):
    username: str
    provider: str
    email: str | None
    is_admin: bool
    disabled: bool
    can_create_projects: bool
    groups: list[str]
    created_at: float
    last_login_at: float | None


class MeOut(BaseModel):
    subject: str
    kind: str
    provider: str | None
    is_admin: bool
    groups: list[str]
    can_create_projects: bool


class RobotIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["ci-builder"])
    permissions: dict[str, list[RobotAction]] = Field(
        description="Project name → actions.", examples=[{"team-a": ["pull", "push"]}]
    )
    expires_at: float | None = Field(None, description="UNIX time; omit for no expiry.")
    description: str | None = None


class RobotPatch(BaseModel):
    disabled: bool | None = None


class RobotOut(BaseModel):
    name: str
    description: str | None
    permissions: dict[str, list[str]]
    expires_at: float | None
    disabled: bool
    created_by: str | None
    created_at: float


class RobotCreated(RobotOut):
    secret: str = Field(description="Shown once: store it now.")


class SecretOut(BaseModel):
    secret: str = Field(description="Shown once: store it now.")


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    expires_at: float | None = Field(None, description="UNIX time; omit for no expiry.")


class TokenOut(BaseModel):
    name: str
    expires_at: float | None
    revoked_at: float | None
    created_at: float
    last_used_at: float | None


class TokenCreated(TokenOut):
    secret: str = Field(description="Shown once: use it as the password for registry logins.")


class AuditEventOut(BaseModel):
    id: int
    ts: float
    actor: str
    actor_kind: str
    provider: str | None
    source_ip: str | None
    user_agent: str | None
    action: str
    project: str | None
    repository: str | None
    reference: str | None
    digest: str | None
    result: str
    detail: object | None


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    next_before: str | None = Field(None, description="Pass as `before` for the next (older) page.")


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
