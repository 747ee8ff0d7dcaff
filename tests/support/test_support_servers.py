"""The test servers themselves work: a real slapd answers binds and searches, and a full OIDC
authorization-code flow against the in-process provider yields an ID token that verifies against its JWKS."""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import ldap3
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, InvalidClaimError
from joserfc.jwk import KeySet
from ldap3.core.exceptions import LDAPInvalidCredentialsResult

from tests.support.http import TIMEOUT
from tests.support.oidc_provider import OidcProvider
from tests.support.slapd import SlapdServer

REDIRECT = "http://registry.test/auth/oidc/callback"


# --- LDAP ---------------------------------------------------------------------------------------
def test_bind_as_user_and_search_groups(slapd: SlapdServer) -> None:
    with slapd.connection(slapd.user_dn("alice"), "alice-pass") as conn:
        assert conn.extend.standard.who_am_i() == f"dn:{slapd.user_dn('alice')}"
        conn.search(
            slapd.groups_dn, f"(&(objectClass=groupOfNames)(member={slapd.user_dn('alice')}))", attributes=["cn"]
        )
        assert [e.cn.value for e in conn.entries] == ["team-a-devs"] == slapd.groups_of("alice")
        conn.search(slapd.people_dn, "(uid=bob)", attributes=["mail", "userPassword"])
        assert conn.entries[0].mail.value == "bob@dockyard.test"
        assert not conn.entries[0].userPassword.values  # passwords are not readable


def test_wrong_password_does_not_bind(slapd: SlapdServer) -> None:
    with pytest.raises(LDAPInvalidCredentialsResult):
        slapd.connection(slapd.user_dn("alice"), "not-alices-password")
    with pytest.raises(LDAPInvalidCredentialsResult):
        slapd.connection(slapd.user_dn("nobody"), "whatever")


def test_directory_changes(slapd: SlapdServer) -> None:
    slapd.add_user("dave", "dave-pass", groups=["team-a-devs", "new-team"])
    with slapd.connection(slapd.service_dn, slapd.service_password) as conn:
        conn.search(slapd.groups_dn, f"(member={slapd.user_dn('dave')})", attributes=["cn"])
        assert sorted(e.cn.value for e in conn.entries) == ["new-team", "team-a-devs"]
    slapd.set_password("dave", "dave-new")
    with pytest.raises(LDAPInvalidCredentialsResult):
        slapd.connection(slapd.user_dn("dave"), "dave-pass")
    slapd.connection(slapd.user_dn("dave"), "dave-new").unbind()
    slapd.remove_from_group("team-a-devs", "dave")
    slapd.delete_user("dave")
    with pytest.raises(LDAPInvalidCredentialsResult):
        slapd.connection(slapd.user_dn("dave"), "dave-new")
    assert slapd.groups["team-a-devs"] == ["alice"]


def test_ldaps_and_starttls_verify_against_the_ca(slapd: SlapdServer) -> None:
    assert slapd.ldaps_url and slapd.ca_cert_path
    tls = ldap3.Tls(ca_certs_file=slapd.ca_cert_path, validate=ssl.CERT_REQUIRED)
    ldaps = ldap3.Server(slapd.ldaps_url, tls=tls, connect_timeout=5)
    with ldap3.Connection(ldaps, slapd.user_dn("bob"), "bob-pass", auto_bind=True, raise_exceptions=True) as conn:
        assert conn.server.ssl
        assert conn.extend.standard.who_am_i() == f"dn:{slapd.user_dn('bob')}"
    plain = ldap3.Server(slapd.url, tls=tls, connect_timeout=5)
    with ldap3.Connection(
        plain, slapd.user_dn("carol"), "carol-pass", auto_bind=ldap3.AUTO_BIND_TLS_BEFORE_BIND, raise_exceptions=True
    ) as conn:
        assert conn.tls_started
        assert conn.extend.standard.who_am_i() == f"dn:{slapd.user_dn('carol')}"


# --- OIDC ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with OidcProvider(redirect_uris=[REDIRECT], require_pkce=True) as p:
        yield p


@pytest.fixture(autouse=True)
def _fresh_provider_state(request: pytest.FixtureRequest) -> None:
    if "provider" in request.fixturenames:
        p: OidcProvider = request.getfixturevalue("provider")
        p.reset_faults()
        p.login_as("alice")


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def code_flow(provider: OidcProvider, *, post_auth: bool = False, **extra: str) -> tuple[dict[str, object], str]:
    """Discovery, /authorize (auto-approved, redirect followed by hand), /token. Returns (token response, nonce)."""
    discovery = httpx.get(provider.discovery_url, timeout=TIMEOUT).json()
    assert discovery["issuer"] == provider.issuer
    verifier, challenge = pkce()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    query = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid profile email",
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    r = httpx.get(f"{discovery['authorization_endpoint']}?{urlencode(query)}", follow_redirects=False, timeout=TIMEOUT)
    assert r.status_code == 302, r.text
    back = urlparse(r.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
    params = {k: v[0] for k, v in parse_qs(back.query).items()}
    assert params["state"] == state
    form = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    if post_auth:  # client_secret_post
        form |= {"client_id": provider.client_id, "client_secret": provider.client_secret}
        r = httpx.post(discovery["token_endpoint"], data=form, timeout=TIMEOUT)
    else:  # client_secret_basic
        r = httpx.post(
            discovery["token_endpoint"], data=form, auth=(provider.client_id, provider.client_secret), timeout=TIMEOUT
        )
    assert r.status_code == 200, r.text
    return r.json(), nonce


def verify(provider: OidcProvider, id_token: str, nonce: str | None = None) -> dict[str, object]:
    """What a relying party does: signature against the published JWKS, then iss/aud/exp/nonce."""
    keys = KeySet.import_key_set(httpx.get(provider.jwks_uri, timeout=TIMEOUT).json())
    token = jwt.decode(id_token, keys, algorithms=["RS256"])
    checks: dict[str, Any] = {
        "iss": {"essential": True, "value": provider.issuer},
        "aud": {"essential": True, "value": provider.client_id},
        "exp": {"essential": True},
    }
    if nonce is not None:
        checks["nonce"] = {"essential": True, "value": nonce}
    jwt.JWTClaimsRegistry(**checks).validate(token.claims)
    return token.claims


def test_authorization_code_flow_yields_verifiable_id_token(provider: OidcProvider) -> None:
    body, nonce = code_flow(provider)
    claims = verify(provider, str(body["id_token"]), nonce)
    assert claims["preferred_username"] == "alice"
    assert claims["sub"] == "sub-alice"
    assert claims["email"] == "alice@dockyard.test"
    assert claims["groups"] == ["team-a-devs"]
    info = httpx.get(
        provider.userinfo_endpoint, headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=TIMEOUT
    )
    assert info.status_code == 200 and info.json()["groups"] == ["team-a-devs"]


def test_client_secret_post_and_login_as(provider: OidcProvider) -> None:
    provider.login_as("bob")
    body, nonce = code_flow(provider, post_auth=True)
    assert verify(provider, str(body["id_token"]), nonce)["groups"] == ["team-a-admins", "ops"]
    body, nonce = code_flow(provider, login_hint="carol")
    assert verify(provider, str(body["id_token"]), nonce)["preferred_username"] == "carol"


def test_provider_refuses_bad_requests(provider: OidcProvider) -> None:
    base = {"response_type": "code", "client_id": provider.client_id, "redirect_uri": REDIRECT, "scope": "openid"}
    verifier, challenge = pkce()
    # no PKCE (required here), then nobody signed in: errors redirected back to the client
    r = httpx.get(provider.authorization_endpoint, params={**base, "state": "s"}, timeout=TIMEOUT)
    assert parse_qs(urlparse(r.headers["location"]).query)["error"] == ["invalid_request"]
    provider.login_as(None)
    with_pkce = {**base, "code_challenge": challenge, "code_challenge_method": "S256"}
    location = provider.authorize(f"{provider.authorization_endpoint}?{urlencode(with_pkce)}")
    assert parse_qs(urlparse(location).query)["error"] == ["access_denied"]
    provider.login_as("alice")
    # unregistered redirect URI: not redirected
    r = httpx.get(
        provider.authorization_endpoint, params={**base, "redirect_uri": "http://evil.test/cb"}, timeout=TIMEOUT
    )
    assert r.status_code == 400
    # wrong PKCE verifier, wrong client secret
    location = provider.authorize(f"{provider.authorization_endpoint}?{urlencode(with_pkce)}")
    code = parse_qs(urlparse(location).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    r = httpx.post(provider.token_endpoint, data=form, auth=(provider.client_id, "wrong-secret"), timeout=TIMEOUT)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = httpx.post(
        provider.token_endpoint,
        data={**form, "code_verifier": pkce()[0]},
        auth=(provider.client_id, provider.client_secret),
        timeout=TIMEOUT,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_minted_bad_tokens_fail_verification(provider: OidcProvider) -> None:
    assert verify(provider, provider.mint_id_token("alice", nonce="n"), "n")["sub"] == "sub-alice"
    with pytest.raises(ExpiredTokenError):
        verify(provider, provider.mint_id_token("alice", expired=True))
    with pytest.raises(BadSignatureError):
        verify(provider, provider.mint_id_token("alice", foreign_key=True))
    with pytest.raises(InvalidClaimError):
        verify(provider, provider.mint_id_token("alice", audience="someone-else"))


def test_faults_apply_to_tokens_from_the_token_endpoint(provider: OidcProvider) -> None:
    provider.faults.wrong_nonce = True
    body, nonce = code_flow(provider)
    with pytest.raises(InvalidClaimError):
        verify(provider, str(body["id_token"]), nonce)
    provider.reset_faults()
    provider.faults.foreign_key = True
    body, nonce = code_flow(provider)
    with pytest.raises(BadSignatureError):
        verify(provider, str(body["id_token"]), nonce)


def test_https_provider_with_issuer_path() -> None:
    with OidcProvider(tls=True, path="/realms/test") as p:
        assert p.issuer.startswith("https://") and p.issuer.endswith("/realms/test")
        r = httpx.get(p.discovery_url, verify=p.ssl_context(), timeout=TIMEOUT)
        assert r.status_code == 200 and r.json()["jwks_uri"] == p.jwks_uri
        with pytest.raises(httpx.ConnectError):  # not trusted without the CA
            httpx.get(p.discovery_url, timeout=TIMEOUT)
