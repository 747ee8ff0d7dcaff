"""A real OpenID Connect provider for the tests: authorization-code flow with PKCE, RS256 ID tokens
signed with joserfc (authlib's JOSE library) and published as a JWKS, served over real HTTP by uvicorn
in a background thread. A test chooses who is "signed in" at the provider (there is no browser), and
can make it misbehave (foreign key, expired token, wrong nonce) to check the registry refuses."""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass
class Misbehaviour:
    foreign_key: bool = False  # sign with a key that is not in the JWKS
    expired: bool = False
    wrong_nonce: bool = False
    wrong_audience: bool = False


@dataclass
class OidcProvider:
    client_id: str = "dockyard"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    users: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "alice": {"email": "alice@example.test", "groups": ["team-a-devs"]},
            "bob": {"email": "bob@example.test", "groups": ["team-a-admins", "ops"]},
        }
    )
    current_user: str = "alice"
    misbehave: Misbehaviour = field(default_factory=Misbehaviour)

    def __post_init__(self) -> None:
        # The foreign key claims the same kid: only the signature check can tell it apart.
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"})
        self.foreign = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"})
        self._codes: dict[str, dict[str, Any]] = {}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.issuer = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- endpoints ----------------------------------------------------------------------------
    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return JSONResponse({"error": "unauthorized_client"}, status_code=400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request", "error_description": "PKCE S256 required"}, 400)
        code = secrets.token_urlsafe(16)
        self._codes[code] = {
            "user": self.current_user,
            "nonce": q.get("nonce"),
            "challenge": q["code_challenge"],
            "redirect_uri": q.get("redirect_uri"),
        }
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}", 302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != self.client_id or secret != self.client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self._codes.pop(str(form.get("code")), None)  # a code is good once
        if grant is None or form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "redirect_uri"}, status_code=400)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.id_token(grant["user"], grant["nonce"]),
            }
        )

    def id_token(self, user: str, nonce: str | None) -> str:
        m = self.misbehave
        now = int(time.time()) - (7200 if m.expired else 0)
        claims = {
            "iss": self.issuer,
            "sub": f"sub-{user}",
            "aud": "someone-else" if m.wrong_audience else self.client_id,
            "iat": now,
            "exp": now + 600,
            "nonce": "not-the-nonce" if m.wrong_nonce else nonce,
            "preferred_username": user,
            "email": self.users[user]["email"],
            "groups": self.users[user]["groups"],
        }
        key = self.foreign if m.foreign_key else self.key
        return jwt.encode({"alg": "RS256", "kid": "test-key-1"}, claims, key)

    # --- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> OidcProvider:
        app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("OIDC provider did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
