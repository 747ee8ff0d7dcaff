"""Tag history and revert over HTTP, on SQLite and PostgreSQL: every role and kind of credential,
immutability, the tag-time gate chain, bad input, and concurrent reverts."""

from __future__ import annotations

import itertools
import json
import threading

import httpx
import pytest

from dockyard.services.auth.permissions import Permission
from dockyard.services.gates.model import Refusal, Stage, Subject
from tests.access.conftest import PASSWORD, PROJECT, Principal
from tests.api.conftest import ADMIN, Registry, basic, sha256

REPO = f"{PROJECT}/app"
BASE = f"/api/v1/repositories/{REPO}/tags"


def push(reg: Registry, tag: str, marker: str) -> str:
    body = reg.image(REPO, [marker.encode()], config=json.dumps({"os": "linux", "m": marker}).encode())
    assert reg.put_manifest(REPO, tag, body).status_code == 201
    return sha256(body)


def revert(reg: Registry, tag: str, digest: str, headers: dict[str, str] = ADMIN) -> httpx.Response:
    return reg.http.post(f"{BASE}/{tag}/revert", json={"digest": digest}, headers=headers)


def current(reg: Registry, tag: str) -> str:
    return reg.services.manifests.get(REPO, tag).digest


def expected(p: Principal, permission: Permission) -> int:
    if p.holds(permission):
        return 200
    if p.anonymous:
        return 401
    return 403 if p.sees_project() else 404


def test_history_and_revert_for_every_role_and_credential(registry: Registry, principals: list[Principal]) -> None:
    a = push(registry, "v1", "a")
    b = push(registry, "v1", "b")
    svc = registry.services
    token = svc.access_tokens.create("developer-user", "ci").secret
    callers = [*principals, Principal("developer PAT", basic("developer-user", token), role=principals[4].role)]
    assert callers[-1].role is not None and callers[-1].role.label == "developer"
    problems = []
    for p in callers:
        r = registry.http.get(f"{BASE}/v1/history", headers=p.headers)
        if r.status_code != expected(p, Permission.PULL):
            problems.append((p.label, "history", r.status_code))
        elif r.status_code == 200:
            oldest = [(e["action"], e["digest"], e["previous_digest"]) for e in r.json()["entries"]][-2:]
            assert oldest == [("moved", b, a), ("moved", a, None)]
        target = a if current(registry, "v1") == b else b
        r = revert(registry, "v1", target, p.headers)
        want = expected(p, Permission.PUSH)
        if r.status_code != want:
            problems.append((p.label, "revert", r.status_code, r.text))
        elif want == 200:
            assert r.json()["changed"] and current(registry, "v1") == target
        else:
            assert r.headers["content-type"].startswith("application/problem+json")
            assert current(registry, "v1") != target  # nothing changed
    assert problems == []
    # Every revert is in the history, with who did it, and in the audit log.
    entries = registry.http.get(f"{BASE}/v1/history", params={"limit": 1000}, headers=ADMIN).json()["entries"]
    movers = {e["actor"] for e in entries}
    assert {"admin", "developer-user", "maintainer-user", "admin-user", "robot$bot-pull-push"} <= movers
    audit = registry.http.get("/api/v1/audit", params={"action": "tag.revert"}, headers=ADMIN).json()["events"]
    assert len(audit) == len(entries) - 2 and {e["reference"] for e in audit} == {"v1"}


def test_registry_tokens_are_refused(registry: Registry, principals: list[Principal]) -> None:
    a = push(registry, "v1", "a")
    push(registry, "v1", "b")
    r = registry.http.get(
        "/token", params={"service": "dockyard", "scope": f"repository:{REPO}:pull,push"}, headers=ADMIN
    )
    bearer = {"Authorization": f"Bearer {r.json()['token']}"}
    assert registry.http.get(f"{BASE}/v1/history", headers=bearer).status_code == 401
    assert revert(registry, "v1", a, bearer).status_code == 401
    assert current(registry, "v1") != a


def test_bad_input_changes_nothing(registry: Registry, principals: list[Principal]) -> None:
    a = push(registry, "v1", "a")
    b = push(registry, "v1", "b")
    other = push(registry, "other", "c")
    for body, status in (
        ({"digest": other}, 404),  # stored, but never a target of v1
        ({"digest": "sha256:" + "0" * 64}, 404),
        ({"digest": "not-a-digest"}, 400),
        ({"digest": "sha256:abc"}, 400),
        ({}, 422),
        ({"digest": a, "extra": 1}, 422),
    ):
        r = registry.http.post(f"{BASE}/v1/revert", json=body, headers=ADMIN)
        assert r.status_code == status, (body, r.text)
        assert current(registry, "v1") == b
    assert registry.http.post(f"{BASE}/bad tag/revert", json={"digest": a}, headers=ADMIN).status_code == 422
    assert registry.http.get(f"{BASE}/v1/history", params={"before": "x"}, headers=ADMIN).status_code == 422
    assert registry.http.get(f"{BASE}/v1/history", params={"limit": 0}, headers=ADMIN).status_code == 422
    missing = registry.http.get("/api/v1/repositories/nope/app/tags/v1/history", headers=ADMIN)
    assert missing.status_code == 404


def test_immutable_tag_is_not_reverted(registry: Registry, principals: list[Principal]) -> None:
    a = push(registry, "v1", "a")
    b = push(registry, "v1", "b")
    assert registry.http.post(f"/api/v1/projects/{PROJECT}/immutable-tags", json={"pattern": "v*"}, headers=ADMIN)
    r = revert(registry, "v1", a)
    assert r.status_code == 403 and "immutable" in r.json()["detail"]
    assert current(registry, "v1") == b
    audit = registry.http.get("/api/v1/audit", params={"action": "tag.revert"}, headers=ADMIN).json()["events"]
    assert audit == []  # rolled back with the move


class RefuseTagging:
    """A tag-time gate refusing one digest: proves the revert asks the chain (the signatures work
    adds the real one)."""

    name = "test_tag_gate"
    stages = frozenset({Stage.TAG})

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.seen: list[Subject] = []

    def evaluate(self, subject: Subject) -> Refusal | None:
        self.seen.append(subject)
        if subject.digest == self.digest:
            return Refusal(self.name, "this image may not be tagged", "sign it first")
        return None

    def forget(self, project: str | None = None) -> None:
        return None


def test_tag_gates_judge_a_revert(registry: Registry, principals: list[Principal]) -> None:
    a = push(registry, "v1", "a")
    b = push(registry, "v1", "b")
    gate = RefuseTagging(a)
    registry.services.gates.gates.append(gate)
    r = revert(registry, "v1", a, basic("developer-user", PASSWORD))
    assert r.status_code == 403 and "test_tag_gate" in r.json()["detail"] and "sign it first" in r.json()["detail"]
    assert current(registry, "v1") == b
    (subject,) = gate.seen
    assert (subject.repository, subject.digest, subject.tag) == (REPO, a, "v1")
    assert subject.caller is not None and subject.caller.subject == "developer-user"
    gate.digest = "none"
    assert revert(registry, "v1", a).status_code == 200 and current(registry, "v1") == a


def test_concurrent_reverts(registry: Registry, principals: list[Principal]) -> None:
    digests = [push(registry, "v1", f"img{i}") for i in range(4)]
    results: list[int] = []
    lock = threading.Lock()

    def worker(target: str) -> None:
        for _ in range(3):
            r = revert(registry, "v1", target)
            with lock:
                results.append(r.status_code)

    threads = [threading.Thread(target=worker, args=(d,)) for d in digests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 12
    entries = registry.http.get(f"{BASE}/v1/history", params={"limit": 1000}, headers=ADMIN).json()["entries"]
    # The history is one chain: each move starts where the previous one ended, and ends at the tag.
    chain = list(reversed(entries))
    for before, after in itertools.pairwise(chain):
        assert after["previous_digest"] == before["digest"]
    assert chain[-1]["digest"] == current(registry, "v1")


@pytest.fixture(autouse=True)
def _no_extra_gates(registry: Registry):  # type: ignore[no-untyped-def]
    gates = list(registry.services.gates.gates)
    yield
    registry.services.gates.gates[:] = gates
