"""Request and response bodies of the management API."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from dockyard.api.problem import PROBLEM
from dockyard.services.auth.robots import ROBOT_NAME_PATTERN
from dockyard.services.auth.users import MAX_PASSWORD, MIN_PASSWORD, USERNAME_PATTERN
from dockyard.services.projects import PROJECT_NAME_PATTERN
from dockyard.services.text import LABEL_PATTERN

RoleName = Literal["guest", "developer", "maintainer", "admin"]
RobotAction = Literal["pull", "push", "delete"]

# Every number in a body is bounded by what the database stores (BIGINT, finite floats).
INT64 = 2**63 - 1
Count = Annotated[int, Field(ge=0, le=INT64)]
Seconds = Annotated[float, Field(ge=0, le=1e15, description="UNIX time")]
# PostgreSQL text cannot hold NUL; refused as input rather than failing in the database.
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
ProjectName = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=PROJECT_NAME_PATTERN)]


def Checked(description: str | None = None, **constraints: Any) -> Any:
    """A field whose grammar the service checks (answering 400 with its own message), stated in
    the document so that it says what is accepted, but not enforced twice here."""
    return Field(description=description, json_schema_extra=constraints)


def _keep_if_omitted(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class Body(BaseModel):
    """A request body. Unknown fields (a typo), NaN and infinities are refused with 422 instead of
    being ignored or stored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def Keep(description: str = "Omit to keep the current value.") -> Any:
    """A PATCH field that may be omitted but not null: with exclude_unset, an omitted field keeps
    the stored value, and null is refused by validation (the column is NOT NULL)."""
    return Field(None, description=description, json_schema_extra=_keep_if_omitted)


class ProjectIn(Body):
    name: str = Checked(minLength=1, maxLength=255, pattern=PROJECT_NAME_PATTERN, examples=["team-a"])
    public: bool = False


class ProjectPatch(Body):
    public: bool = Keep()


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
    quarantined_images: int = Field(0, description="Images (manifests) of it quarantined in the project.")


class QuotaIn(Body):
    quota_bytes: Count | None = Field(None, description="null lifts the quota.")


class TagRuleIn(Body):
    pattern: str = Checked(minLength=1, maxLength=255, pattern=r"^[^\s\x00]+$", examples=["v*"])


class TagRuleOut(BaseModel):
    pattern: str
    created_by: str | None
    created_at: float


class RetentionIn(Body):
    keep_last: Count | None = Field(None, description="Keep the N most recently pushed tags per repository.")
    keep_days: float | None = Field(None, ge=0, le=1e9, description="Keep tags pushed or pulled within D days.")
    keep_patterns: list[Text] = Field(default_factory=list, description="Keep tags matching these patterns.")
    remove_untagged: bool = False
    enabled: bool = True


class RetentionOut(BaseModel):
    keep_last: int | None
    keep_days: float | None
    keep_patterns: list[str]
    remove_untagged: bool
    enabled: bool


class RemovalOut(BaseModel):
    repository: str
    tag: str | None
    digest: str
    reason: str


class MemberIn(Body):
    role: RoleName


class MemberOut(BaseModel):
    kind: Literal["user", "group"]
    name: str
    role: RoleName


class UserIn(Body):
    username: str = Checked(minLength=1, maxLength=255, pattern=USERNAME_PATTERN)
    password: str = Checked(minLength=MIN_PASSWORD, maxLength=MAX_PASSWORD)
    email: Text | None = None
    is_admin: bool = False
    can_create_projects: bool = False


class UserPatch(Body):
    is_admin: bool = Keep()
    disabled: bool = Keep()
    can_create_projects: bool = Keep()
    email: Text = Keep()


class PasswordIn(Body):
    password: str = Checked(minLength=MIN_PASSWORD, maxLength=MAX_PASSWORD)
    current_password: str | None = Field(
        None,
        max_length=MAX_PASSWORD,
        description="Required to change your own password (not for an admin setting another's).",
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


class RobotIn(Body):
    name: str = Checked(minLength=1, maxLength=206, pattern=ROBOT_NAME_PATTERN, examples=["ci-builder"])
    permissions: dict[ProjectName, Annotated[list[RobotAction], Field(min_length=1)]] = Field(
        min_length=1,
        description="Project name → actions.",
        examples=[{"team-a": ["pull", "push"]}],
        # pydantic validates the keys but does not say so in the schema
        json_schema_extra={"propertyNames": {"pattern": PROJECT_NAME_PATTERN, "maxLength": 255}},
    )
    expires_at: Seconds | None = Field(None, description="UNIX time, in the future; omit for no expiry.")
    description: Text | None = None


class RobotPatch(Body):
    disabled: bool = Keep()


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


class TokenIn(Body):
    name: str = Checked(minLength=1, maxLength=128, pattern=LABEL_PATTERN)
    expires_at: Seconds | None = Field(None, description="UNIX time, in the future; omit for no expiry.")


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
    """An error, as RFC 9457 problem details (application/problem+json)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str = Field(description="The registry error code, e.g. NOT_FOUND, DENIED, INVALID.")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries documenting error statuses with their problem+json body."""
    schema = Problem.model_json_schema()
    return {
        status: {"description": HTTPStatus(status).phrase, "content": {PROBLEM: {"schema": schema}}}
        for status in statuses
    }
