"""Docker token authentication: challenge, token endpoint, bearer and Basic on the API."""

from __future__ import annotations

import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.services.auth.identity import Identity
from dockyard.services.auth.scopes import Scope
from tests.api.conftest import ADMIN, Registry, basic


def token(reg: Registry, scope: str | None, headers: dict[str, str] | None = None) -> str:
    params = {"service": "dockyard"}
    if scope:
        params["scope"] = scope
    r = reg.http.get("/token", params=params, headers=headers if headers is not None else ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] > 0 and body["issued_at"].endswith("Z")
    return str(body["token"])


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def test_base_challenges_anonymous_clients(registry: Registry) -> None:
    r = registry.request("GET", "/v2/", auth=False)
    assert r.status_code == 401
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'realm="http://registry.test/token"' in challenge and 'service="dockyard"' in challenge
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_base_accepts_basic_and_bearer(registry: Registry) -> None:
    assert registry.request("GET", "/v2/").status_code == 200
    t = token(registry, None)
    assert registry.request("GET", "/v2/", auth=False, headers=bearer(t)).status_code == 200


def test_wrong_password_is_refused_everywhere(registry: Registry) -> None:
    bad = basic("admin", "wrong")
    r = registry.request("GET", "/v2/", auth=False, headers=bad)
    assert r.status_code == 401 and "www-authenticate" in r.headers
    r = registry.http.get("/token", params={"scope": "repository:a:pull"}, headers=bad)
    assert r.status_code == 401
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert registry.http.get("/token", headers={"Authorization": "Basic !!!"}).status_code == 401


def test_scoped_token_grants_exactly_its_scope(registry: Registry) -> None:
    registry.put_manifest("team/app", "v1", registry.image("team/app", [b"layer"]))
    t = token(registry, "repository:team/app:pull")
    claims = jwt.decode(t, options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert claims["sub"] == "admin" and claims["aud"] == "dockyard"
    ok = registry.request("GET", "/v2/team/app/manifests/v1", auth=False, headers=bearer(t))
    assert ok.status_code == 200
    # Push and other repositories need a token with those scopes: 403 insufficient_scope (RFC 6750),
    # with a challenge naming the scope to ask for.
    r = registry.request("POST", "/v2/team/app/blobs/uploads/", auth=False, headers=bearer(t))
    assert r.status_code == 403
    assert r.json()["errors"][0]["code"] == "DENIED"
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="repository:team/app:pull,push"' in r.headers["www-authenticate"]
    r = registry.request("GET", "/v2/other/manifests/v1", auth=False, headers=bearer(t))
    assert r.status_code == 403


def test_anonymous_token_grants_nothing(registry: Registry) -> None:
    registry.put_manifest("team/app", "v1", registry.image("team/app", [b"layer"]))
    t = token(registry, "repository:team/app:pull", headers={})
    assert jwt.decode(t, options={"verify_signature": False})["access"] == []
    # An anonymous token is answered like no credentials: 401, log in.
    r = registry.request("GET", "/v2/team/app/manifests/v1", auth=False, headers=bearer(t))
    assert r.status_code == 401 and r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    r = registry.request("GET", "/v2/team/app/manifests/v1", auth=False)
    assert r.status_code == 401
    assert 'scope="repository:team/app:pull"' in r.headers["www-authenticate"]


def test_catalog_scope(registry: Registry) -> None:
    t = token(registry, "registry:catalog:*")
    assert registry.request("GET", "/v2/_catalog", auth=False, headers=bearer(t)).status_code == 200
    t2 = token(registry, "repository:a:pull")
    assert registry.request("GET", "/v2/_catalog", auth=False, headers=bearer(t2)).status_code == 403


def test_expired_token_is_refused(registry: Registry) -> None:
    scope = Scope("repository", "team/app", frozenset({"pull"}))
    expired = registry.services.tokens.issue(Identity("admin", True), [scope], ttl=-60).token
    r = registry.request("GET", "/v2/", auth=False, headers=bearer(expired))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert "expired" in r.json()["errors"][0]["message"]


def test_forged_tokens_are_refused(registry: Registry) -> None:
    good = token(registry, "repository:team/app:pull")
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    # Same kid and claims, signed by a key that is not ours.
    forged = jwt.encode(
        claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": header["kid"]}
    )
    # Claims altered after signing (signature no longer matches).
    head, _payload, sig = good.split(".")
    tampered_claims = dict(claims, access=[{"type": "repository", "name": "*", "actions": ["*"]}])
    tampered = ".".join(
        [head, jwt.utils.base64url_encode(jwt.api_jws.json.dumps(tampered_claims).encode()).decode(), sig]
    )
    # "none" algorithm.
    unsigned = jwt.encode(claims, None, algorithm="none")
    # Valid signature, other audience.
    wrong_aud = registry.services.tokens
    other = type(wrong_aud)(wrong_aud.db, wrong_aud.issuer, "another-service", 300)
    other_aud = other.issue(Identity("admin", True), []).token
    for bad in (forged, tampered, unsigned, other_aud, "not-a-jwt", ""):
        r = registry.request("GET", "/v2/", auth=False, headers=bearer(bad))
        assert r.status_code == 401, bad
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_token_endpoint_post_password_grant(registry: Registry) -> None:
    r = registry.http.post(
        "/token",
        data={
            "grant_type": "password",
            "username": "admin",
            "password": "s3cret-admin",
            "scope": "repository:x:pull",
            "service": "dockyard",
            "client_id": "test",
        },
    )
    assert r.status_code == 200
    assert jwt.decode(r.json()["access_token"], options={"verify_signature": False})["access"][0]["name"] == "x"
    r = registry.http.post("/token", data={"grant_type": "password", "username": "admin", "password": "no"})
    assert r.status_code == 401
    assert registry.http.post("/token", data={"grant_type": "refresh_token"}).status_code == 400


def test_token_lifetime_matches_settings(registry: Registry) -> None:
    t = token(registry, None)
    claims = jwt.decode(t, options={"verify_signature": False})
    assert abs(claims["exp"] - time.time() - registry.services.settings.token_ttl_seconds) < 10


def _loop_thread_recorder(calls: list[str], fn):  # type: ignore[no-untyped-def]
    """Wrap `fn` to note whether it ran on a thread with a running event loop."""
    import asyncio

    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            asyncio.get_running_loop()
            calls.append("event loop")
        except RuntimeError:
            calls.append("worker thread")
        return fn(*args, **kwargs)

    return wrapper


def test_authentication_runs_off_the_event_loop(registry: Registry, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """argon2, LDAP binds and account queries block: /v2 resolves the caller in a worker thread."""
    registry.put_manifest("team/app", "v1", registry.image("team/app", [b"layer"]))
    t = token(registry, "repository:team/app:pull")
    auth = registry.services.authenticator
    calls: list[str] = []
    monkeypatch.setattr(auth, "login", _loop_thread_recorder(calls, auth.login))
    monkeypatch.setattr(auth, "current", _loop_thread_recorder(calls, auth.current))
    monkeypatch.setattr(registry.services.policy, "grant", _loop_thread_recorder(calls, registry.services.policy.grant))
    assert registry.request("GET", "/v2/").status_code == 200
    assert registry.request("GET", "/v2/team/app/manifests/v1").status_code == 200
    assert registry.request("GET", "/v2/team/app/tags/list").status_code == 200
    assert registry.request("GET", "/v2/team/app/manifests/v1", auth=False, headers=bearer(t)).status_code == 200
    assert registry.request("POST", "/v2/team/new/blobs/uploads/").status_code == 202
    assert len(calls) >= 7 and set(calls) == {"worker thread"}, calls


def test_cross_repository_mount_logs_in_once(registry: Registry, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    digest = registry.push_blob("team/app", b"shared layer")
    auth = registry.services.authenticator
    logins: list[str] = []
    real = auth.login

    def counting(username: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        logins.append(username)
        return real(username, *args, **kwargs)

    monkeypatch.setattr(auth, "login", counting)
    r = registry.request("POST", "/v2/team/copy/blobs/uploads/", params={"mount": digest, "from": "team/app"})
    assert r.status_code == 201, r.text
    assert logins == ["admin"]
