"""The one write an access request may cause: creating the project a push goes into.

`AccessPolicy` only decides. Where a push starts - a /token request that asks for push, and a
/v2 request with Basic credentials whose scope includes push - the caller first ensures the
project exists (when `auto_create_projects` is on and the pusher may create projects), then asks
the policy, which sees the project as it now is.
"""

from __future__ import annotations

from dockyard.services.auth.identity import Identity
from dockyard.services.auth.policy import AccessPolicy
from dockyard.services.auth.scopes import Scope
from dockyard.services.errors import Conflict, InvalidInput
from dockyard.services.projects import Project, ProjectService


def ensure_push_projects(
    policy: AccessPolicy, projects: ProjectService, identity: Identity, requested: list[Scope]
) -> list[Project]:
    """Create (private, the pusher its admin, audited) the missing projects the policy says a push
    among `requested` creates. Returns those this call created."""
    created = []
    for name in policy.push_projects_to_create(identity, requested):
        try:
            created.append(projects.create(name, public=False, creator=identity.subject, auto=True))
        except Conflict:  # created by a concurrent push
            pass
        except InvalidInput:  # an invalid project name: the push fails on the name, not here
            pass
    return created


def request_access(
    policy: AccessPolicy, projects: ProjectService, identity: Identity, requested: list[Scope]
) -> list[Scope]:
    """What /token puts in a token and what a Basic-authenticated /v2 request may do: the push
    projects ensured first, then the policy's decision."""
    ensure_push_projects(policy, projects, identity, requested)
    return policy.grant(identity, requested)
