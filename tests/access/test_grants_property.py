"""Property: whatever sequence of grants and revocations happens, an identity never holds more
(or less) than the permission matrix gives its best remaining role."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.config import Settings
from dockyard.db.engine import Database
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.permissions import REGISTRY_ACTIONS, Role, permissions_of
from dockyard.services.auth.scopes import Scope
from dockyard.services.errors import NotFound
from dockyard.wiring import Services, build_services, prepare

PRINCIPALS = [("user", "alice"), ("user", "bob"), ("group", "devs"), ("group", "ops")]
ALICE = Identity("alice", groups=frozenset({"devs"}))
steps = st.lists(
    st.tuples(st.sampled_from(["grant", "revoke"]), st.sampled_from(PRINCIPALS), st.sampled_from(list(Role))),
    max_size=12,
)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Services:
    path: Path = tmp_path_factory.mktemp("grants")
    db = Database(f"sqlite:///{path / 'g.db'}")
    services = build_services(Settings(data_dir=path, database_url=db.url, admin_password="x" * 12), db=db)
    prepare(services)
    services.users.create("alice", "alice-password")
    services.users.create("bob", "bob-password")
    services.projects.create("proj", creator=None)
    return services


# Derandomized like the other property tests: the same 60 sequences every run, so CI cannot fail by chance.
@settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=steps)
def test_random_grants_and_revocations_match_the_matrix(
    svc: Services, ops: list[tuple[str, tuple[str, str], Role]]
) -> None:
    for kind, name in PRINCIPALS:  # start every example from no grants
        with contextlib.suppress(NotFound):
            svc.projects.remove_member("proj", kind, name)
    model: dict[tuple[str, str], Role] = {}
    for op, principal, role in ops:
        if op == "grant":
            svc.projects.set_member("proj", *principal, role)
            model[principal] = role
        else:
            try:
                svc.projects.remove_member("proj", *principal)
                assert principal in model
                del model[principal]
            except NotFound:
                assert principal not in model
        applies = [r for p, r in model.items() if p in (("user", "alice"), ("group", "devs"))]
        expected = permissions_of(max(applies) if applies else None)
        _, held = svc.policy.permissions(ALICE, "proj")
        assert held == expected
        granted = svc.policy.grant(ALICE, [Scope("repository", "proj/app", frozenset({"pull", "push", "delete"}))])
        actions = granted[0].actions if granted else frozenset()
        assert actions == {a for a, p in REGISTRY_ACTIONS.items() if p in expected}
