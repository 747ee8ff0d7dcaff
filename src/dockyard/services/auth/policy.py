"""The authorization decision, in one place.

Both the token endpoint (what to put in a token) and the registry API (may this Basic-authenticated
identity do this) ask `AccessPolicy.grant`. Replacing this class replaces the access model; the API
code does not change.
"""

from __future__ import annotations

from dockyard.services.auth.identity import Identity
from dockyard.services.auth.scopes import Scope

REPOSITORY_ACTIONS = frozenset({"pull", "push", "delete", "*"})


class AccessPolicy:
    """Core-registry policy: a system administrator may do everything, anyone else nothing."""

    def grant(self, identity: Identity, requested: list[Scope]) -> list[Scope]:
        granted: list[Scope] = []
        for scope in requested:
            actions = self._allowed(identity, scope)
            if actions:
                granted.append(Scope(scope.type, scope.name, frozenset(actions)))
        return granted

    def _allowed(self, identity: Identity, scope: Scope) -> set[str]:
        if not identity.is_admin:
            return set()
        if scope.type == "repository":
            return set(scope.actions & REPOSITORY_ACTIONS)
        if scope.type == "registry" and scope.name == "catalog":
            return set(scope.actions & {"*"})
        return set()
