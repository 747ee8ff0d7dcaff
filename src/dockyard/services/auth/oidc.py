"""OpenID Connect login (authorization-code flow with PKCE and nonce) for the UI and API.

Registry clients cannot follow a browser login, so, as Harbor and Quay do, an OIDC user gets a CLI
secret after signing in once and uses it as the password for `docker login` and friends.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

DISCOVERY_TTL = 300.0


class OidcError(Exception):
    """The provider refused, or answered with something that does not verify."""


@dataclass(frozen=True, slots=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str
    scopes: str = "openid profile email"
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    verify_tls: bool = True


@dataclass(frozen=True, slots=True)
class LoginStart:
    url: str  # where to send the browser
    state: str
    nonce: str
    verifier: str  # PKCE code verifier, kept (signed) by the client until the callback


@dataclass(frozen=True, slots=True)
class OidcUser:
    username: str
    subject: str
    email: str | None
    groups: list[str]


# A login waits on these calls: the provider gets less time than the process's default read timeout.
OIDC_TIMEOUT = 10.0


class OidcClient:
    def __init__(self, settings: OidcSettings, http: httpx.Client) -> None:
        """`http`: the outbound client the provider is called with (`wiring.http_client()`, built with
        `verify=False` when `verify_tls` is off: verification is a property of the client in httpx)."""
        self.settings = settings
        self.http = http
        self._discovery: dict[str, Any] | None = None
        self._discovered_at = 0.0
        self._jwks: dict[str, Any] | None = None

    def discovery(self) -> dict[str, Any]:
        if self._discovery is None or time.monotonic() - self._discovered_at > DISCOVERY_TTL:
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            r = self.http.get(url, timeout=OIDC_TIMEOUT)
            if r.status_code != 200:
                raise OidcError(f"discovery at {url} answered {r.status_code}")
            doc = r.json()
            if doc.get("issuer") != self.settings.issuer:
                raise OidcError(f"discovery names issuer {doc.get('issuer')!r}, expected {self.settings.issuer!r}")
            self._discovery, self._discovered_at, self._jwks = doc, time.monotonic(), None
        return self._discovery

    def start(self, redirect_uri: str) -> LoginStart:
        # RFC 7636: a code verifier is 43 to 128 characters; 32 random bytes give 43.
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.settings.scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return LoginStart(f"{self.discovery()['authorization_endpoint']}?{query}", state, nonce, verifier)

    def finish(self, code: str, redirect_uri: str, nonce: str, verifier: str) -> OidcUser:
        """Exchange the code, verify the ID token (signature from the JWKS, issuer, audience,
        expiry, nonce) and read the user from it."""
        doc = self.discovery()
        r = self.http.post(
            doc["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(self.settings.client_id, self.settings.client_secret),
            timeout=OIDC_TIMEOUT,
        )
        if r.status_code != 200:
            raise OidcError(f"token endpoint answered {r.status_code}: {r.text[:200]}")
        id_token = r.json().get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("no id_token in the token response")
        claims = self.verify_id_token(id_token, nonce)
        username = claims.get(self.settings.username_claim) or claims.get("email") or claims["sub"]
        groups = claims.get(self.settings.groups_claim) or []
        if not isinstance(groups, list):
            groups = [groups]
        return OidcUser(str(username), str(claims["sub"]), claims.get("email"), [str(g) for g in groups])

    def _key(self, kid: str | None, refresh: bool = False) -> jwt.PyJWK:
        if self._jwks is None or refresh:
            r = self.http.get(self.discovery()["jwks_uri"], timeout=OIDC_TIMEOUT)
            if r.status_code != 200:
                raise OidcError(f"JWKS answered {r.status_code}")
            self._jwks = r.json()
        keys = jwt.PyJWKSet.from_dict(self._jwks).keys
        for key in keys:
            if kid is None or key.key_id == kid:
                return key
        if not refresh:  # the provider may have rotated its keys since we fetched them
            return self._key(kid, refresh=True)
        raise OidcError("ID token signed with a key the provider does not publish")

    def verify_id_token(self, token: str, nonce: str | None) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OidcError(f"malformed ID token: {exc}") from None
        key = self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"],
                audience=self.settings.client_id,
                issuer=self.settings.issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"ID token rejected: {exc}") from None
        if nonce is not None and claims.get("nonce") != nonce:
            raise OidcError("ID token nonce does not match this login")
        return claims
