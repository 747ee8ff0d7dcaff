"""Every registry and management endpoint against every kind of caller, on SQLite and PostgreSQL.

The expected answer comes from the permission matrix (`Principal.holds`), never from the policy
under test: allowed where the table says so, and refused with the right error everywhere else
(401 for anonymous callers, 404 for a project the caller may not see, 403 DENIED otherwise).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from dockyard.oci import mediatypes as mt
from dockyard.services.auth.permissions import Permission
from tests.access.conftest import PROJECT, Principal
from tests.api.conftest import ADMIN, Registry, sha256
from tests.support.trust_material import ca_pem, ec_pem

REPO = f"{PROJECT}/app"
_counter = itertools.count()


def unique() -> str:
    return f"t{next(_counter)}"


@dataclass
class Op:
    label: str
    permission: Permission | None  # None: system administrators only
    call: Callable[[Registry, dict[str, str]], httpx.Response]
    scope_actions: str = ""  # registry token scope needed


def _fresh_image(reg: Registry, tag: str | None = None) -> tuple[str, bytes]:
    body = reg.image(REPO, [unique().encode()], config=json.dumps({"architecture": "amd64", "os": unique()}).encode())
    digest = sha256(body)
    r = reg.put_manifest(REPO, tag or digest, body)
    assert r.status_code == 201, r.text
    return digest, body


def registry_ops(reg: Registry) -> list[Op]:
    digest, body = _fresh_image(reg, "v1")
    layer = json.loads(body)["layers"][0]["digest"]

    def call(method: str, url: str) -> Callable[[Registry, dict[str, str]], httpx.Response]:
        return lambda r, h: r.http.request(method, url, headers=h)

    def put_manifest(r: Registry, h: dict[str, str]) -> httpx.Response:
        return r.http.put(
            f"/v2/{REPO}/manifests/{unique()}", content=body, headers={**h, "Content-Type": mt.OCI_MANIFEST}
        )

    def delete_tag(r: Registry, h: dict[str, str]) -> httpx.Response:
        tag = unique()
        assert r.put_manifest(REPO, tag, body).status_code == 201
        return r.http.delete(f"/v2/{REPO}/manifests/{tag}", headers=h)

    def delete_manifest(r: Registry, h: dict[str, str]) -> httpx.Response:
        d, _ = _fresh_image(r)
        return r.http.delete(f"/v2/{REPO}/manifests/{d}", headers=h)

    def delete_blob(r: Registry, h: dict[str, str]) -> httpx.Response:
        d = r.push_blob(REPO, unique().encode())
        return r.http.delete(f"/v2/{REPO}/blobs/{d}", headers=h)

    return [
        Op("GET manifest", Permission.PULL, call("GET", f"/v2/{REPO}/manifests/v1"), "pull"),
        Op("HEAD manifest", Permission.PULL, call("HEAD", f"/v2/{REPO}/manifests/{digest}"), "pull"),
        Op("GET blob", Permission.PULL, call("GET", f"/v2/{REPO}/blobs/{layer}"), "pull"),
        Op("GET tags", Permission.PULL, call("GET", f"/v2/{REPO}/tags/list"), "pull"),
        Op("GET referrers", Permission.PULL, call("GET", f"/v2/{REPO}/referrers/{digest}"), "pull"),
        Op("POST upload", Permission.PUSH, call("POST", f"/v2/{REPO}/blobs/uploads/"), "pull,push"),
        Op("PUT manifest", Permission.PUSH, put_manifest, "pull,push"),
        Op("DELETE tag", Permission.DELETE, delete_tag, "delete"),
        Op("DELETE manifest", Permission.DELETE, delete_manifest, "delete"),
        Op("DELETE blob", Permission.DELETE, delete_blob, "delete"),
    ]


def _expected_registry(p: Principal, op: Op) -> int | None:
    """None: allowed (any 2xx); else the status of the refusal."""
    assert op.permission is not None
    if p.holds(op.permission):
        return None
    return 401 if p.anonymous else 403


def _check(label: str, r: httpx.Response, expected: int | None, code: str | None = None) -> str | None:
    if expected is None:
        return None if 200 <= r.status_code < 300 else f"{label}: expected success, got {r.status_code} {r.text[:200]}"
    if r.status_code != expected:
        return f"{label}: expected {expected}, got {r.status_code} {r.text[:200]}"
    if code and r.request.method != "HEAD" and code not in r.text:
        return f"{label}: expected error code {code}, got {r.text[:200]}"
    return None


def _token(reg: Registry, p: Principal, actions: str) -> str:
    r = reg.http.get(
        "/token", params={"service": "dockyard", "scope": f"repository:{REPO}:{actions}"}, headers=p.headers
    )
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def test_registry_api_matrix(registry: Registry, principals: list[Principal]) -> None:
    ops = registry_ops(registry)
    problems = []
    for p, op in itertools.product(principals, ops):
        expected = _expected_registry(p, op)
        code = {401: "UNAUTHORIZED", 403: "DENIED"}.get(expected or 0)
        # Basic credentials on the request itself: the policy decides directly.
        problems.append(_check(f"{p.label} {op.label} (basic)", op.call(registry, p.headers), expected, code))
        # A bearer token from /token: the token's grant decides.
        bearer = {"Authorization": f"Bearer {_token(registry, p, op.scope_actions)}"}
        problems.append(_check(f"{p.label} {op.label} (token)", op.call(registry, bearer), expected, code))
    # The catalog lists every repository: system administrators only.
    for p in principals:
        r = registry.http.get("/v2/_catalog", headers=p.headers)
        problems.append(_check(f"{p.label} catalog", r, None if p.sysadmin else (401 if p.anonymous else 403)))
    assert [x for x in problems if x] == []


def management_ops(reg: Registry) -> list[Op]:
    def empty_project() -> str:
        name = f"empty-{unique()}"
        assert reg.http.post("/api/v1/projects", json={"name": name}, headers=ADMIN).status_code == 201
        # Members of the matrix project get the same role here, so the delete is checked per role.
        for m in reg.http.get(f"/api/v1/projects/{PROJECT}/members", headers=ADMIN).json():
            reg.http.put(
                f"/api/v1/projects/{name}/members/{m['kind']}/{m['name']}", json={"role": m["role"]}, headers=ADMIN
            )
        return name

    base = f"/api/v1/projects/{PROJECT}"
    return [
        Op("GET project", Permission.PROJECT_READ, lambda r, h: r.http.get(base, headers=h)),
        Op(
            "PATCH project",
            Permission.PROJECT_UPDATE,
            lambda r, h: r.http.patch(base, json={"public": False}, headers=h),
        ),
        Op("GET repositories", Permission.PULL, lambda r, h: r.http.get(f"{base}/repositories", headers=h)),
        Op("GET members", Permission.MEMBER_READ, lambda r, h: r.http.get(f"{base}/members", headers=h)),
        Op(
            "PUT member",
            Permission.MEMBER_MANAGE,
            lambda r, h: r.http.put(f"{base}/members/group/{unique()}", json={"role": "guest"}, headers=h),
        ),
        Op(
            "DELETE member",
            Permission.MEMBER_MANAGE,
            lambda r, h: (
                r.http.put(f"{base}/members/group/g-{(g := unique())}", json={"role": "guest"}, headers=ADMIN),
                r.http.delete(f"{base}/members/group/g-{g}", headers=h),
            )[1],
        ),
        Op(
            "GET robots",
            Permission.ROBOT_READ,
            lambda r, h: r.http.get("/api/v1/robots", params={"project": PROJECT}, headers=h),
        ),
        Op(
            "POST robot",
            Permission.ROBOT_MANAGE,
            lambda r, h: r.http.post(
                "/api/v1/robots", json={"name": unique(), "permissions": {PROJECT: ["pull"]}}, headers=h
            ),
        ),
        Op(
            "GET audit",
            Permission.AUDIT_READ,
            lambda r, h: r.http.get("/api/v1/audit", params={"project": PROJECT}, headers=h),
        ),
        Op(
            "DELETE project",
            Permission.PROJECT_DELETE,
            lambda r, h: r.http.delete(f"/api/v1/projects/{empty_project()}", headers=h),
        ),
        Op(
            "POST immutable rule",
            Permission.TAG_POLICY_MANAGE,
            lambda r, h: r.http.post(f"{base}/immutable-tags", json={"pattern": f"{unique()}-*"}, headers=h),
        ),
        Op(
            "GET immutable rules", Permission.PROJECT_READ, lambda r, h: r.http.get(f"{base}/immutable-tags", headers=h)
        ),
        Op(
            "PUT retention",
            Permission.TAG_POLICY_MANAGE,
            lambda r, h: r.http.put(f"{base}/retention", json={"keep_last": 100}, headers=h),
        ),
        Op(
            "POST retention dry run",
            Permission.TAG_POLICY_MANAGE,
            lambda r, h: r.http.post(f"{base}/retention/run", params={"dry_run": True}, headers=h),
        ),
        Op(
            "GET scan report",
            Permission.PULL,
            lambda r, h: r.http.get(f"/api/v1/repositories/{REPO}/manifests/v1/scan", headers=h),
        ),
        Op(
            "POST scan",
            Permission.PUSH,
            lambda r, h: r.http.post(f"/api/v1/repositories/{REPO}/manifests/v1/scan", headers=h),
        ),
        Op("GET scan policy", Permission.PROJECT_READ, lambda r, h: r.http.get(f"{base}/scan-policy", headers=h)),
        Op(
            "PATCH scan policy",
            Permission.PROJECT_UPDATE,
            lambda r, h: r.http.patch(f"{base}/scan-policy", json={"scan_on_push": True}, headers=h),
        ),
        Op("POST quarantine", Permission.QUARANTINE_MANAGE, _quarantine),
        Op("DELETE quarantine", Permission.QUARANTINE_MANAGE, _release),
        Op(
            "GET quarantined",
            Permission.PROJECT_READ,
            lambda r, h: r.http.get("/api/v1/quarantine", params={"project": PROJECT}, headers=h),
        ),
        Op(
            "GET quarantine policy",
            Permission.PROJECT_READ,
            lambda r, h: r.http.get(f"{base}/quarantine-policy", headers=h),
        ),
        Op(
            "PATCH quarantine policy",
            Permission.PROJECT_UPDATE,
            lambda r, h: r.http.patch(
                f"{base}/quarantine-policy", json={"auto_quarantine_severity": "high"}, headers=h
            ),
        ),
        # Signature trust (docs/trust.md): material and policy are maintainers' and up.
        Op(
            "POST trust key",
            Permission.TRUST_MANAGE,
            lambda r, h: r.http.post(f"{base}/trust/keys", json={"name": unique(), "public_key": ec_pem()}, headers=h),
        ),
        Op("GET trust keys", Permission.PROJECT_READ, lambda r, h: r.http.get(f"{base}/trust/keys", headers=h)),
        Op(
            "GET trust key",
            Permission.PROJECT_READ,
            lambda r, h: (
                r.http.post(
                    f"{base}/trust/keys", json={"name": (k := unique()), "public_key": ec_pem()}, headers=ADMIN
                ),
                r.http.get(f"{base}/trust/keys/{k}", headers=h),
            )[1],
        ),
        Op(
            "DELETE trust key",
            Permission.TRUST_MANAGE,
            lambda r, h: (
                r.http.post(
                    f"{base}/trust/keys", json={"name": (k := unique()), "public_key": ec_pem()}, headers=ADMIN
                ),
                r.http.delete(f"{base}/trust/keys/{k}", headers=h),
            )[1],
        ),
        Op(
            "POST trust certificate",
            Permission.TRUST_MANAGE,
            lambda r, h: r.http.post(
                f"{base}/trust/certificates",
                json={"name": unique(), "certificate": ca_pem(), "identities": ["CN=signer"]},
                headers=h,
            ),
        ),
        Op(
            "GET trust certificates",
            Permission.PROJECT_READ,
            lambda r, h: r.http.get(f"{base}/trust/certificates", headers=h),
        ),
        Op(
            "DELETE trust certificate",
            Permission.TRUST_MANAGE,
            lambda r, h: (
                r.http.post(
                    f"{base}/trust/certificates", json={"name": (c := unique()), "certificate": ca_pem()}, headers=ADMIN
                ),
                r.http.delete(f"{base}/trust/certificates/{c}", headers=h),
            )[1],
        ),
        Op("GET trust policy", Permission.PROJECT_READ, lambda r, h: r.http.get(f"{base}/trust-policy", headers=h)),
        Op(
            "PATCH trust policy",
            Permission.TRUST_MANAGE,
            lambda r, h: r.http.patch(f"{base}/trust-policy", json={"signed_tags": []}, headers=h),
        ),
        Op(
            "GET signatures",
            Permission.PULL,
            lambda r, h: r.http.get(f"/api/v1/repositories/{REPO}/manifests/v1/signatures", headers=h),
        ),
        Op("POST vulndb update", None, lambda r, h: r.http.post("/api/v1/vulndb/update", headers=h)),
        Op("POST project", None, lambda r, h: r.http.post("/api/v1/projects", json={"name": unique()}, headers=h)),
        Op("GET users", None, lambda r, h: r.http.get("/api/v1/users", headers=h)),
        Op(
            "POST user",
            None,
            lambda r, h: r.http.post(
                "/api/v1/users", json={"username": unique(), "password": "long-enough"}, headers=h
            ),
        ),
        Op("GET all audit", None, lambda r, h: r.http.get("/api/v1/audit", headers=h)),
        Op("PUT quota", None, lambda r, h: r.http.put(f"{base}/quota", json={"quota_bytes": 10**12}, headers=h)),
        Op("POST gc dry run", None, lambda r, h: r.http.post("/api/v1/system/gc", params={"dry_run": True}, headers=h)),
        Op(
            "DELETE immutable rule",
            None,
            lambda r, h: (
                r.http.post(f"{base}/immutable-tags", json={"pattern": (p := f"{unique()}-*")}, headers=ADMIN),
                r.http.delete(f"{base}/immutable-tags/{p}", headers=h),
            )[1],
        ),
    ]


def _quarantine(r: Registry, h: dict[str, str]) -> httpx.Response:
    digest, _ = _fresh_image(r)
    return r.http.post(f"/api/v1/repositories/{REPO}/manifests/{digest}/quarantine", json={"reason": "r"}, headers=h)


def _release(r: Registry, h: dict[str, str]) -> httpx.Response:
    digest, _ = _fresh_image(r)
    url = f"/api/v1/repositories/{REPO}/manifests/{digest}/quarantine"
    assert r.http.post(url, json={"reason": "r"}, headers=ADMIN).status_code == 201
    return r.http.delete(url, headers=h)


def _expected_management(p: Principal, op: Op) -> int | None:
    if op.permission is None:
        if p.sysadmin:
            return None
        if p.anonymous:
            return 401
        # Listing every robot / the whole audit log without naming a project is a 400 for others.
        return 400 if op.label == "GET all audit" else 403
    if p.holds(op.permission):
        return None
    if p.anonymous:
        return 401
    if op.label == "DELETE project" and p.robot_actions is not None:
        return 404  # robots are scoped to the matrix project only: the fresh project is invisible to them
    return 403 if p.sees_project() else 404


def test_management_api_matrix(registry: Registry, principals: list[Principal]) -> None:
    _fresh_image(registry, "v1")
    problems = []
    for p, op in itertools.product(principals, management_ops(registry)):
        r = op.call(registry, p.headers)
        expected = _expected_management(p, op)
        problems.append(_check(f"{p.label} {op.label}", r, expected))
        if expected is not None and r.status_code == expected:
            assert r.headers["content-type"].startswith("application/problem+json"), (p.label, op.label, r.text)
    assert [x for x in problems if x] == []


def test_management_api_refuses_registry_tokens(registry: Registry, principals: list[Principal]) -> None:
    """A bearer token from /token is for /v2 and the scopes it names: as an Authorization header or
    replayed as the session cookie, it is no login on the management API, even a system
    administrator's token with every scope it could get."""
    _fresh_image(registry, "v1")
    admin = next(p for p in principals if p.sysadmin)
    narrow = _token(registry, admin, "pull")
    r = registry.http.get(
        "/token",
        params={"service": "dockyard", "scope": [f"repository:{REPO}:*", "registry:catalog:*"]},
        headers=admin.headers,
    )
    wide = str(r.json()["token"])
    users_before = registry.http.get("/api/v1/users", headers=ADMIN).json()
    problems = []
    for op, (label, t) in itertools.product(management_ops(registry), [("pull", narrow), ("all", wide)]):
        for how, headers in (
            ("bearer", {"Authorization": f"Bearer {t}"}),
            ("cookie", {"Cookie": f"dockyard_session={t}"}),
        ):
            problems.append(_check(f"admin {label} token as {how}: {op.label}", op.call(registry, headers), 401))
    assert [x for x in problems if x] == []
    assert registry.http.get("/api/v1/users", headers=ADMIN).json() == users_before
