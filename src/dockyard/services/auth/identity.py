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
# Robot login names (robot$name); `$` is not allowed in user names, so the two never collide. The
# robots' secrets have their own prefix (secrets.ROBOT_SECRET_PREFIX).
ROBOT_NAME_PREFIX = "robot$"

# How the caller proved who it is (Identity.method). Only a password, or the browser session made
# by a password/OIDC login, may mint new long-lived credentials: a leaked token or secret must not
# outlive its own revocation.
PASSWORD = "password"  # a local or directory password
ACCESS_TOKEN = "access-token"  # a personal access token (dyp_…)
CLI_SECRET = "cli-secret"  # an OIDC user's registry secret (dyc_…)
ROBOT_SECRET = "robot-secret"
SESSION = "session"  # the UI session cookie
REGISTRY_TOKEN = "registry-token"  # a bearer token from /token
MINTING_METHODS = frozenset({PASSWORD, SESSION})


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
    # The account's uid (users.uid / robots.uid): never reused, so a token names this account and no
    # later one of the same name. None for anonymous and the registry's own scanner.
    uid: str | None = None
    method: str = ""  # how this request authenticated (PASSWORD, ACCESS_TOKEN, …); "" for anonymous

    @property
    def anonymous(self) -> bool:
        return not self.subject

    @property
    def is_robot(self) -> bool:
        return self.kind == ROBOT

    @property
    def may_mint_credentials(self) -> bool:
        """Whether this login may create access tokens or CLI secrets (see MINTING_METHODS)."""
        return self.kind == USER and self.method in MINTING_METHODS


ANONYMOUS = Identity("", kind=ANONYMOUS_KIND)
# The registry's own scanner (see SCANNER_SUBJECT): the policy gives it the scanner's system role.
SCANNER = Identity(SCANNER_SUBJECT, kind=SYSTEM)
