"""Who is asking: a user (from any provider), a robot account, or nobody."""

from __future__ import annotations

from dataclasses import dataclass, field

USER = "user"
ROBOT = "robot"
ANONYMOUS_KIND = "anonymous"
SYSTEM = "system"
# The registry's own scanner pulling through the API for an external scanner adapter: tokens with this
# subject are only ever minted by the registry itself (short-lived, pull scope on one repository).
SCANNER_SUBJECT = "scanner$dockyard"
ROBOT_PREFIX = "robot$"  # robot login names; `$` is not allowed in user names, so the two never collide


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str  # username or robot$name; "" for anonymous
    is_admin: bool = False
    kind: str = USER
    provider: str | None = None  # local | ldap | oidc for users
    groups: frozenset[str] = field(default_factory=frozenset)
    can_create_projects: bool = False
    # The credential a login used when it can be revoked on its own (a personal access token):
    # tokens issued from it die with it.
    credential: str | None = None

    @property
    def anonymous(self) -> bool:
        return not self.subject

    @property
    def is_robot(self) -> bool:
        return self.kind == ROBOT


ANONYMOUS = Identity("", kind=ANONYMOUS_KIND)
