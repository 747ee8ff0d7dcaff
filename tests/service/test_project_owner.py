"""The project and account tables behind their owners, on SQLite and PostgreSQL: the registry, tag
rules, retention, robots and the pull gate ask ProjectService; ProjectService asks UserService
(does a member exist) and the registry (is a project empty). Each test replaces the owner's answer
and sees the caller believe it, so a caller that read the table itself would fail here."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.services.auth.permissions import Role
from dockyard.services.errors import Conflict, Denied, NotFound
from dockyard.services.gates.scan_policy import NO_POLICY, ScanPolicies
from dockyard.services.lifecycle.retention import RetentionPolicy
from dockyard.services.projects import ProjectQuota, ProjectService
from dockyard.wiring import Services
from tests.lifecycle.conftest import image, push_blob, svc

__all__ = ["svc"]  # a fixture, used by name

BLOCK_UNSCANNED: dict[str, Any] = {
    "scan_on_push": None,
    "block_severity": None,
    "block_unscanned": True,
    "vulnerability_allowlist": [],
    "licence_denylist": [],
    "block_denied_licences": False,
}


class _Policies:
    """A stand-in owner of `projects` for the scanning gates (the `ScanRules` protocol)."""

    def __init__(self, rules: dict[str, Any] | None) -> None:
        self.rules = rules
        self.asked: list[str] = []

    def find_scan_policy(self, name: str) -> dict[str, Any] | None:
        self.asked.append(name)
        return self.rules


def test_the_pull_gate_asks_the_project_service_and_caches_its_answer(svc: Services) -> None:
    owner = _Policies(BLOCK_UNSCANNED)
    gate = ScanPolicies(svc.db, owner, ttl=3600)
    assert gate.policy("team").block_unscanned and gate.policy("team").block_unscanned is True
    assert owner.asked == ["team"]  # once per ttl: the second answer came from the cache
    gate.forget("team")
    owner.rules = None  # no such project
    assert gate.policy("team") is NO_POLICY
    assert owner.asked == ["team", "team"]
    uncached = ScanPolicies(svc.db, owner, ttl=0)
    uncached.policy("x")
    uncached.policy("x")
    assert owner.asked[-2:] == ["x", "x"]


def test_the_wired_pull_gate_believes_the_project_service(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    svc.projects.create("team")
    digest = image(svc, "team/app", [b"layer"], "v1")
    stored = svc.manifests.get("team/app", "v1")
    svc.gates.check_pull("team/app", digest, stored.media_type, stored.content)  # no rule: served
    # The table says "no rule"; the owner says "block unscanned images": the gate refuses.
    monkeypatch.setattr(svc.projects, "find_scan_policy", lambda name: BLOCK_UNSCANNED)
    svc.gates.forget()
    with pytest.raises(Denied, match="not been scanned"):
        svc.gates.check_pull("team/app", digest, stored.media_type, stored.content)


def test_a_member_must_exist_by_the_user_service(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    svc.projects.create("team")
    svc.users.create("dev", "password-123")
    asked: list[str] = []

    def nobody(conn: sa.Connection, username: str) -> bool:
        asked.append(username)
        return False

    monkeypatch.setattr(svc.users, "exists", nobody)
    with pytest.raises(NotFound, match="user 'dev' does not exist"):
        svc.projects.set_member("team", "user", "dev", Role.GUEST)
    assert asked == ["dev"]
    svc.projects.set_member("team", "group", "devs", Role.GUEST)  # groups are nobody's rows: not asked
    assert asked == ["dev"]


def test_a_project_is_empty_by_the_registry(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    svc.projects.create("full")
    svc.projects.create("empty")
    image(svc, "full/app", [b"layer"], "v1")
    assert [r[0] for r in svc.catalog.repositories_in("full")] == ["full/app"]
    with pytest.raises(Conflict, match="still has repositories"):
        svc.projects.delete("full")
    monkeypatch.setattr(svc.catalog, "has_repositories", lambda conn, project: True)
    with pytest.raises(Conflict, match="still has repositories"):
        svc.projects.delete("empty")


def test_the_registry_counts_usage_and_quota_through_the_project_service(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.projects.create("team")
    svc.projects.set_quota("team", 10)
    added: list[int] = []
    add_usage = ProjectService.add_usage

    def spy(conn: sa.Connection, project_id: int, delta: int) -> None:
        added.append(delta)
        add_usage(conn, project_id, delta)

    monkeypatch.setattr(ProjectService, "add_usage", staticmethod(spy))
    push_blob(svc, "team/app", b"12345")
    push_blob(svc, "team/other", b"12345")  # the same blob again in the project: counted once
    assert added == [5]
    assert svc.projects.get("team").used_bytes == 5
    # The quota is the owner's answer: with its row saying "no quota", an 11-byte blob goes in.
    with svc.db.read() as conn:
        pid = ProjectService.id_of(conn, "team")
    assert pid is not None
    unlimited = ProjectQuota(pid, "team", None, 5)
    monkeypatch.setattr(ProjectService, "lock_quota", staticmethod(lambda conn, project_id: unlimited))
    monkeypatch.setattr(ProjectService, "quota_of", staticmethod(lambda conn, project_id: None))
    push_blob(svc, "team/app", b"0123456789a")
    assert added == [5, 11]


def test_repositories_take_their_project_id_from_the_project_service(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.projects.create("team")
    svc.projects.create("decoy")
    with svc.db.read() as conn:
        decoy = ProjectService.id_of(conn, "decoy")
    monkeypatch.setattr(ProjectService, "id_of", staticmethod(lambda conn, name: decoy))
    push_blob(svc, "team/app", b"layer")
    with svc.db.read() as conn:
        assert conn.execute(sa.select(s.repositories.c.project_id)).scalars().all() == [decoy]


def test_tag_rules_and_retention_find_the_project_by_the_project_service(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.projects.create("team")
    svc.tag_rules.add("team", "v*")
    svc.retention.set_policy("team", RetentionPolicy(keep_last=1))
    assert [r.pattern for r in svc.tag_rules.list_rules("team")] == ["v*"]

    def missing(conn: sa.Connection, name: str) -> int:
        raise NotFound(f"project {name!r} does not exist", {"project": name})

    monkeypatch.setattr(ProjectService, "existing_id", staticmethod(missing))
    with pytest.raises(NotFound):
        svc.tag_rules.list_rules("team")
    with pytest.raises(NotFound):
        svc.retention.get_policy("team")
    # Immutability on a tag push: the project's id is the owner's subquery.
    image(svc, "team/app", [b"layer"], "v1")
    with pytest.raises(Denied, match="immutable"):
        image(svc, "team/app", [b"other layer"], "v1")
    monkeypatch.setattr(ProjectService, "id_query", staticmethod(lambda name: sa.literal(-1)))
    image(svc, "team/app", [b"other layer"], "v1")  # no project -1: no rule holds the tag


def test_retention_runs_due_projects_named_by_the_project_service(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.projects.create("team")
    svc.retention.set_policy("team", RetentionPolicy(keep_last=1))
    ran: list[str] = []
    monkeypatch.setattr(svc.retention, "run", lambda name: ran.append(name) or [])
    svc.retention.run_due(0)
    assert ran == ["team"]
    monkeypatch.setattr(ProjectService, "names_by_id", staticmethod(lambda conn, ids: {i: "renamed" for i in ids}))
    svc.retention.run_due(0)
    assert ran == ["team", "renamed"]


def test_robots_show_project_names_from_the_project_service(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    svc.projects.create("team")
    svc.projects.create("other")
    svc.robots.create("bot", {"team": ["pull"], "other": ["pull", "push"]})
    assert svc.robots.get("bot").permissions == {"other": ["pull", "push"], "team": ["pull"]}
    assert [r.name for r in svc.robots.list_robots("team")] == ["robot$bot"]
    monkeypatch.setattr(svc.projects, "names_by_id", lambda conn, ids: {i: f"p{i}" for i in ids})
    assert all(name.startswith("p") for name in svc.robots.get("bot").permissions)
    monkeypatch.setattr(svc.projects, "id_of", lambda conn, name: None)
    assert svc.robots.list_robots("team") == []
