"""POST /admission/validate with AdmissionReview documents as kube-apiserver sends them (data/admission),
for every workload kind, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.db.engine import Database
from dockyard.wiring import build_services, prepare
from tests.api.conftest import ADMIN, Registry, make_settings, sha256

DATA = Path(__file__).parent / "data" / "admission"
WORKLOADS = ["pod", "deployment", "statefulset", "daemonset", "replicaset", "job", "cronjob", "replicationcontroller"]
HOST = "registry.example.com"
TOKEN = "k8s-webhook-token-0123456789"


def fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return doc


def _registry(tmp_path: Path, database: Database, **settings: Any) -> Iterator[Registry]:
    update = {"admission_registry_names": [HOST], "admission_token": TOKEN, **settings}
    base = make_settings(tmp_path, database).model_copy(update=update)
    svc = build_services(base, db=database)
    prepare(svc)
    with TestClient(create_app(svc), base_url="http://registry.test") as client:
        yield Registry(client, svc)


@pytest.fixture
def reg(tmp_path: Path, database: Database) -> Iterator[Registry]:
    yield from _registry(tmp_path, database)


def _push(reg: Registry, repo: str, tag: str) -> str:
    body = reg.image(repo, [f"{repo}:{tag}".encode()])
    assert reg.put_manifest(repo, tag, body).status_code == 201
    return sha256(body)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _review(reg: Registry, doc: Any, headers: dict[str, str] | None = None) -> Any:
    r = reg.http.post("/admission/validate", json=doc, headers=AUTH if headers is None else headers)
    assert r.status_code == 200, r.text
    return r.json()


def _images(reg: Registry) -> dict[str, str]:
    return {name: _push(reg, f"team/{name}", "v1") for name in ("app", "migrate", "debug")}


@pytest.mark.parametrize("kind", WORKLOADS)
def test_each_workload_kind_is_allowed_then_denied_by_quarantine(reg: Registry, kind: str) -> None:
    digests = _images(reg)
    doc = fixture(kind)
    answer = _review(reg, doc)
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == doc["request"]["uid"]
    assert answer["response"]["allowed"] is True, answer

    reg.services.quarantines.quarantine("team/app", digests["app"], "CVE-2024-3094 backdoor in xz")
    answer = _review(reg, doc)["response"]
    assert answer["uid"] == doc["request"]["uid"] and answer["allowed"] is False
    assert answer["status"]["code"] == 403
    message = answer["status"]["message"]
    assert f"{HOST}/team/app:v1 ({digests['app']})" in message
    assert "CVE-2024-3094 backdoor in xz" in message and "gate quarantine" in message
    assert "busybox" not in message and "migrate" not in message  # only what was refused is listed

    # An init container is judged too.
    reg.services.quarantines.release("team/app", digests["app"])
    reg.services.quarantines.quarantine("team/migrate", digests["migrate"], "bad migration image")
    answer = _review(reg, doc)["response"]
    assert answer["allowed"] is False and "team/migrate:v1" in answer["status"]["message"]


def test_ephemeral_containers_of_kubectl_debug_are_judged(reg: Registry) -> None:
    digests = _images(reg)
    doc = fixture("pod-ephemeral")
    assert _review(reg, doc)["response"]["allowed"] is True
    reg.services.quarantines.quarantine("team/debug", digests["debug"], "debug image withdrawn")
    answer = _review(reg, doc)["response"]
    assert answer["allowed"] is False and "team/debug:v1" in answer["status"]["message"]


def test_unknown_images_of_ours_are_denied_and_digests_resolve(reg: Registry) -> None:
    digests = _images(reg)
    doc = fixture("pod")
    containers = doc["request"]["object"]["spec"]["containers"]
    containers[0]["image"] = f"{HOST}/team/app:v2"  # no such tag
    answer = _review(reg, doc)["response"]
    assert answer["allowed"] is False and "team/app:v2 is not in this registry" in answer["status"]["message"]

    for image in (f"{HOST}/team/app@{digests['app']}", f"{HOST}/team/app:v1@{digests['app']}"):
        containers[0]["image"] = image
        assert _review(reg, doc)["response"]["allowed"] is True, image
    containers[0]["image"] = f"{HOST}/team/app@sha256:{'0' * 64}"
    assert _review(reg, doc)["response"]["allowed"] is False
    # By digest, a quarantined image is refused whatever tag names it.
    reg.services.quarantines.quarantine("team/app", digests["app"], "withdrawn")
    containers[0]["image"] = f"{HOST}/team/app@{digests['app']}"
    answer = _review(reg, doc)["response"]
    assert answer["allowed"] is False and "withdrawn" in answer["status"]["message"]


def test_project_scan_policy_is_applied(reg: Registry) -> None:
    _images(reg)
    reg.services.projects.set_scan_policy("team", block_unscanned=True)
    reg.services.gates.forget()
    answer = _review(reg, fixture("deployment"))["response"]
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert "not been scanned" in message and "gate unscanned" in message
    assert "refused 2 of 3 images" in message  # app and migrate; busybox is another registry's


def test_delete_is_allowed(reg: Registry) -> None:
    answer = _review(reg, fixture("delete"))
    assert answer["response"] == {"uid": fixture("delete")["request"]["uid"], "allowed": True}


def test_other_registries_can_be_refused(tmp_path: Path, database: Database) -> None:
    for reg in _registry(tmp_path, database, admission_other_registries="deny"):
        _images(reg)
        answer = _review(reg, fixture("deployment"))["response"]
        assert answer["allowed"] is False
        message = answer["status"]["message"]
        assert "docker.io/library/busybox:1.36" in message and "other registries (docker.io)" in message
        assert "refused 1 of 3" in message


def test_the_public_url_names_this_registry(tmp_path: Path, database: Database) -> None:
    for reg in _registry(tmp_path, database, admission_registry_names=[], public_url="https://reg.example.org"):
        doc = fixture("pod")
        doc["request"]["object"]["spec"]["initContainers"] = []
        containers = doc["request"]["object"]["spec"]["containers"]
        containers[0]["image"] = "reg.example.org:443/team/app:v1"
        answer = _review(reg, doc)["response"]
        assert answer["allowed"] is False and "not in this registry" in answer["status"]["message"]
        _push(reg, "team/app", "v1")
        assert _review(reg, doc)["response"]["allowed"] is True
        containers[0]["image"] = f"{HOST}/team/app:nothing"  # not ours now: another registry, allowed
        assert _review(reg, doc)["response"]["allowed"] is True


def test_the_bearer_token_is_required(reg: Registry) -> None:
    doc = fixture("delete")
    # A registry login (the administrator's, even) is not the webhook's token.
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, ADMIN):
        r = reg.http.post("/admission/validate", json=doc, headers=headers)
        assert r.status_code == 401, headers
        assert TOKEN not in r.text
    # Refused before the body is read: a caller without the token learns nothing about bad input either.
    assert (
        reg.http.post("/admission/validate", content=b"{nope", headers={"Content-Type": "application/json"}).status_code
        == 401
    )
    assert _review(reg, doc, {"Authorization": f"Bearer {TOKEN}"})["response"]["allowed"] is True


def test_off_without_a_token(tmp_path: Path, database: Database) -> None:
    for reg in _registry(tmp_path, database, admission_token=None):
        _images(reg)
        for headers in ({}, AUTH):
            r = reg.http.post("/admission/validate", json=fixture("pod"), headers=headers)
            assert r.status_code == 404 and "not enabled" in r.text


def test_bad_input(reg: Registry) -> None:
    _images(reg)
    good = fixture("pod")

    def changed(**changes: Any) -> dict[str, Any]:
        doc = json.loads(json.dumps(good))
        for path, value in changes.items():
            target = doc
            keys = path.split("__")
            for k in keys[:-1]:
                target = target[k]
            target[keys[-1]] = value
        return doc

    cases: list[tuple[Any, int]] = [
        ([], 400),
        ("AdmissionReview", 400),
        (changed(apiVersion="admission.k8s.io/v1beta1"), 400),
        (changed(kind="Pod"), 400),
        (changed(request=None), 400),
        (changed(request__uid=""), 400),
        (changed(request__uid=5), 400),
        (changed(request__kind="Pod"), 400),
        (changed(request__object__spec__containers={"image": "x"}), 400),
        (changed(request__object__spec__containers=[{"name": "a", "image": 7}]), 400),
        (changed(request__object__spec="nope"), 400),
    ]
    for doc, status in cases:
        r = reg.http.post("/admission/validate", json=doc, headers=AUTH)
        assert r.status_code == status, (doc if not isinstance(doc, dict) else doc.get("request"), r.text)
        assert "error" in r.json()
    json_type = {**AUTH, "Content-Type": "application/json"}
    r = reg.http.post("/admission/validate", content=b"{nope", headers=json_type)
    assert r.status_code == 400
    r = reg.http.post("/admission/validate", content=json.dumps(good), headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 415
    huge = json.dumps({**good, "padding": "x" * (4 * 1024 * 1024)})
    r = reg.http.post("/admission/validate", content=huge, headers=json_type)
    assert r.status_code == 413
    assert reg.http.get("/admission/validate", headers=AUTH).status_code == 405
    # An image reference that is no reference is refused by name, not a 400: the review is well formed.
    answer = _review(reg, changed(request__object__spec__containers=[{"name": "a", "image": "Bad Image"}]))
    assert (
        answer["response"]["allowed"] is False and "not an image reference" in answer["response"]["status"]["message"]
    )
    # A kind without a pod template is allowed (the webhook's rules should not send it).
    other = changed(request__kind={"group": "", "version": "v1", "kind": "ConfigMap"})
    assert _review(reg, other)["response"]["allowed"] is True
