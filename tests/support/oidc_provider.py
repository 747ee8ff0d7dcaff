"""A real OpenID Connect provider for the tests, in-process, over real HTTP on a loopback port.

    with OidcProvider(client_id="dockyard", redirect_uris=["http://registry.test/auth/oidc/callback"]) as idp:
        idp.issuer                      # http://127.0.0.1:PORT (discovery at /.well-known/openid-configuration)
        idp.login_as("bob")             # who is "signed in" at the provider: /authorize approves for them
        idp.faults.expired = True       # the next ID tokens from /token are expired (see TokenFaults)
        idp.mint_id_token("alice", foreign_key=True)   # a token signed by a key that is not in the JWKS

The protocol is authlib's authorization server (RFC 6749 code grant, RFC 7636 PKCE, OpenID Connect Core code
flow with nonce; client_secret_basic and client_secret_post at the token endpoint) behind a small Starlette
app served by uvicorn in a daemon thread. ID tokens are RS256 JWTs signed with joserfc; the public key is
published at /jwks. There is no browser, so /authorize approves at once for the signed-in user (or the
known user named by `login_hint`); with nobody signed in it answers error=access_denied (login_required
with prompt=none).
"""

from __future__ import annotations

import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, InvalidRequestError, OAuth2Error, OAuth2Payload
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from tests.support.running import Running
from tests.support.tls import make_tls_files

CODE_LIFETIME = 600  # seconds an authorization code stays good (RFC 6749 recommends at most 10 minutes)


@dataclass
class OidcUser:
    username: str
    email: str = ""
    groups: list[str] = field(default_factory=list)
    name: str = ""
    sub: str = ""  # the stable subject identifier; default "sub-<username>"

    def __post_init__(self) -> None:
        self.email = self.email or f"{self.username}@dockyard.test"
        self.name = self.name or self.username.title()
        self.sub = self.sub or f"sub-{self.username}"


DEFAULT_USERS = (
    OidcUser("alice", groups=["team-a-devs"]),
    OidcUser("bob", groups=["team-a-admins", "ops"]),
    OidcUser("carol", groups=["registry-admins"]),
)


@dataclass
class TokenFaults:
    """Ways the ID tokens issued by /token go wrong, for negative tests (reset with provider.reset_faults())."""

    expired: bool = False  # exp an hour ago
    foreign_key: bool = False  # signed with provider.foreign_key (same kid as the published key)
    wrong_audience: bool = False  # aud is not the client id
    wrong_issuer: bool = False  # iss is not the issuer
    wrong_nonce: bool = False  # nonce is not the one the client sent
    extra_claims: dict[str, Any] = field(default_factory=dict)  # merged last: override or add any claim


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str | None
    scope: str
    username: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    created: float

    # authlib's AuthorizationCodeMixin (OpenID flavour)
    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _Client(ClientMixin):
    def __init__(self, provider: OidcProvider) -> None:
        self.p = provider

    def get_client_id(self) -> str:
        return self.p.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.p.redirect_uris[0] if self.p.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        requested = (scope or "").split()
        return " ".join(s for s in requested if s in self.p.scopes_supported)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if self.p.redirect_uris is None:  # accept any http(s) redirect
            return redirect_uri.startswith(("http://", "https://"))
        return redirect_uri in self.p.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.p.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


class _Payload(OAuth2Payload):
    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._data.setdefault(key, value)
            self._datalist[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):
    """An authlib request from a Starlette one whose form has been read already."""

    def __init__(self, request: Request, form: Sequence[tuple[str, str]]) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        self._args = dict(request.query_params)
        self._form = dict(reversed(form))  # first value wins, as in the payload
        self.payload = _Payload([*request.query_params.multi_items(), *form])

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Server(AuthorizationServer):
    def __init__(self, provider: OidcProvider) -> None:
        super().__init__()
        self.p = provider
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                lambda **_: secrets.token_urlsafe(32), None, lambda client, grant_type: provider.access_token_lifetime
            ),
        )

    def query_client(self, client_id: str) -> _Client | None:
        return _Client(self.p) if client_id == self.p.client_id else None

    def save_token(self, token: dict[str, Any], request: _Request) -> None:
        expires = time.time() + float(token.get("expires_in", self.p.access_token_lifetime))
        with self.p._lock:
            self.p._access_tokens[token["access_token"]] = (request.user.username, token.get("scope", ""), expires)
            self.p.issued_tokens.append(dict(token))

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        assert isinstance(request, OAuth2Request)
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError

    def handle_response(self, status: int, body: Any, headers: Iterable[tuple[str, str]]) -> Response:
        hdrs = dict(headers)
        if isinstance(body, dict):
            hdrs.pop("Content-Type", None)
            return JSONResponse(body, status_code=status, headers=hdrs)
        return Response(body or b"", status_code=status, headers=hdrs)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class _CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    @property
    def p(self) -> OidcProvider:
        provider: OidcProvider = self.server.p
        return provider

    def save_authorization_code(self, code: str, request: _Request) -> None:
        data = request.payload.data
        with self.p._lock:
            self.p._codes[code] = _Code(
                code=code,
                client_id=request.client.get_client_id(),
                redirect_uri=data.get("redirect_uri"),
                scope=request.scope or "",
                username=request.user.username,
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                auth_time=int(time.time()),
                created=time.monotonic(),
            )

    def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
        with self.p._lock:
            found = self.p._codes.get(code)
        if found is None or found.client_id != client.get_client_id():
            return None
        if time.monotonic() - found.created > CODE_LIFETIME:
            return None
        return found

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        with self.p._lock:
            self.p._codes.pop(authorization_code.code, None)  # a code is good once

    def authenticate_user(self, authorization_code: _Code) -> OidcUser | None:
        return self.p.users.get(authorization_code.username)


class _Pkce(CodeChallenge):
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def __init__(self, provider: OidcProvider) -> None:
        super().__init__(required=True)
        self.p = provider

    def validate_code_challenge(self, grant: _CodeGrant, redirect_uri: str) -> None:
        if self.p.require_pkce and not grant.request.payload.data.get("code_challenge"):
            raise InvalidRequestError("PKCE (code_challenge, S256) is required", redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)


class _OpenIDCode(OpenIDCode):
    def __init__(self, provider: OidcProvider) -> None:
        super().__init__(require_nonce=provider.require_nonce)
        self.p = provider

    def exists_nonce(self, nonce: str, request: _Request) -> bool:
        """A nonce already bound to an outstanding code is a replay."""
        with self.p._lock:
            return any(c.nonce == nonce for c in self.p._codes.values())

    def encode_id_token(self, token: dict[str, Any], request: _Request) -> str:
        f = self.p.faults
        code: _Code = request.authorization_code
        nonce = "not-the-nonce" if f.wrong_nonce else code.nonce
        return self.p.mint_id_token(
            request.user.username,
            nonce=nonce,
            audience="someone-else" if f.wrong_audience else None,
            issuer=self.p.issuer + "/elsewhere" if f.wrong_issuer else None,
            expired=f.expired,
            foreign_key=f.foreign_key,
            auth_time=code.auth_time,
            access_token=token.get("access_token"),
            extra_claims=f.extra_claims,
        )


class OidcProvider(Running):
    """An OpenID Connect provider on 127.0.0.1 (see the module docstring).

    Constructor (all keyword, all optional):
      client_id, client_secret   the one registered client (secret: random by default)
      redirect_uris              the client's allowed redirect URIs; None (default) allows any http(s) URI
      users                      OidcUser list; default alice (team-a-devs), bob (team-a-admins, ops),
                                 carol (registry-admins); emails <name>@dockyard.test, sub "sub-<name>"
      current_user               who is signed in at the provider (default "alice"; None: nobody)
      require_pkce               refuse authorization requests without an S256 code_challenge (default False)
      require_nonce              refuse authorization requests without a nonce (default False)
      groups_claim               name of the groups claim (default "groups"; None: no groups claim)
      id_token_lifetime, access_token_lifetime   seconds (600, 300)
      path                       issuer path, e.g. "/realms/test" (issuer http://127.0.0.1:PORT/realms/test)
      tls                        serve https with a certificate from a throwaway CA (ca_cert_path)

    Attributes: issuer, discovery_url, authorization_endpoint, token_endpoint, jwks_uri, userinfo_endpoint,
    port, client_id, client_secret, redirect_uris, users {username: OidcUser}, current_user, faults
    (TokenFaults for tokens from /token), key (joserfc RSAKey, published), foreign_key (RSAKey, never
    published, same kid), kid, ca_cert_path (str, with tls), issued_tokens (token responses, oldest first),
    authorization_requests (query parameters of each /authorize call).

    Methods: login_as, add_user, set_groups, mint_id_token, jwks, rotate_key, reset_faults, authorize,
    start/stop (or use it as a context manager).
    """

    def __init__(
        self,
        *,
        client_id: str = "dockyard",
        client_secret: str | None = None,
        redirect_uris: Sequence[str] | None = None,
        users: Iterable[OidcUser] | None = None,
        current_user: str | None = "alice",
        require_pkce: bool = False,
        require_nonce: bool = False,
        groups_claim: str | None = "groups",
        id_token_lifetime: int = 600,
        access_token_lifetime: int = 300,
        path: str = "",
        tls: bool = False,
        scopes_supported: Sequence[str] = ("openid", "profile", "email", "groups"),
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.redirect_uris: list[str] | None = None if redirect_uris is None else list(redirect_uris)
        self.users: dict[str, OidcUser] = {  # copies: a test may change them without touching the defaults
            u.username: OidcUser(u.username, u.email, list(u.groups), u.name, u.sub)
            for u in (DEFAULT_USERS if users is None else users)
        }
        self.current_user = current_user
        self.require_pkce = require_pkce
        self.require_nonce = require_nonce
        self.groups_claim = groups_claim
        self.id_token_lifetime = id_token_lifetime
        self.access_token_lifetime = access_token_lifetime
        self.scopes_supported = list(scopes_supported)
        self.faults = TokenFaults()
        self.kid = "dockyard-test-1"
        self.key = RSAKey.generate_key(2048, parameters={"kid": self.kid, "use": "sig", "alg": "RS256"})
        # Claims the published kid: only the signature check tells its tokens apart.
        self.foreign_key = RSAKey.generate_key(2048, parameters={"kid": self.kid, "use": "sig", "alg": "RS256"})
        self._retired_keys: list[RSAKey] = []
        self.issued_tokens: list[dict[str, Any]] = []
        self.authorization_requests: list[dict[str, str]] = []
        self._codes: dict[str, _Code] = {}
        self._access_tokens: dict[str, tuple[str, str, float]] = {}
        self._lock = threading.Lock()

        self.tls = tls
        self.ca_cert_path: str | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))  # bound now, handed to uvicorn: no race for the port
        self.port = int(self._sock.getsockname()[1])
        self.path = "/" + path.strip("/") if path.strip("/") else ""
        self.issuer = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}{self.path}"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self.authorization_endpoint = f"{self.issuer}/authorize"
        self.token_endpoint = f"{self.issuer}/token"
        self.jwks_uri = f"{self.issuer}/jwks"
        self.userinfo_endpoint = f"{self.issuer}/userinfo"

        self._server = _Server(self)
        self._server.register_grant(_CodeGrant, [_Pkce(self), _OpenIDCode(self)])
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- test controls --------------------------------------------------------------------------
    def login_as(self, username: str | None) -> None:
        """Who is signed in at the provider (None: nobody, so /authorize answers access_denied)."""
        if username is not None and username not in self.users:
            raise KeyError(f"no such OIDC user: {username}")
        self.current_user = username

    def add_user(
        self, username: str, *, email: str = "", groups: Iterable[str] = (), name: str = "", sub: str = ""
    ) -> OidcUser:
        user = OidcUser(username, email, list(groups), name, sub)
        self.users[username] = user
        return user

    def set_groups(self, username: str, groups: Iterable[str]) -> None:
        self.users[username].groups = list(groups)

    def reset_faults(self) -> None:
        self.faults = TokenFaults()

    def rotate_key(self, keep_old: bool = True) -> None:
        """Sign from now on with a new key (new kid); the old one stays in the JWKS when keep_old."""
        if keep_old:
            self._retired_keys.append(self.key)
        self.kid = f"dockyard-test-{len(self._retired_keys) + 2}-{secrets.token_hex(2)}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": self.kid, "use": "sig", "alg": "RS256"})

    def jwks(self) -> dict[str, Any]:
        """The published JSON Web Key Set (public keys only)."""
        return {"keys": [key.as_dict(private=False) for key in (self.key, *self._retired_keys)]}

    def mint_id_token(
        self,
        username: str = "alice",
        *,
        nonce: str | None = None,
        audience: str | list[str] | None = None,
        issuer: str | None = None,
        expired: bool = False,
        foreign_key: bool = False,
        key: RSAKey | None = None,
        kid: str | None = None,
        lifetime: int | None = None,
        issued_at: int | None = None,
        auth_time: int | None = None,
        access_token: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """An RS256 ID token for a user, as /token issues them; the keywords make it wrong on purpose.

        expired: exp an hour ago. foreign_key: signed by `foreign_key` (not in the JWKS, same kid);
        key: sign with any other key. kid: header kid (default: the signing key's). extra_claims win last
        (a value None removes the claim).
        """
        user = self.users[username]
        now = int(time.time()) if issued_at is None else issued_at
        if expired:
            now -= 7200
        claims: dict[str, Any] = {
            "iss": self.issuer if issuer is None else issuer,
            "sub": user.sub,
            "aud": self.client_id if audience is None else audience,
            "iat": now,
            "exp": now + (3600 if expired else (lifetime or self.id_token_lifetime)),
            "auth_time": now if auth_time is None else auth_time,
            **self._profile(user),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token:
            claims["at_hash"] = create_half_hash(access_token, "RS256").decode()
        for name, value in (extra_claims or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        signer = key or (self.foreign_key if foreign_key else self.key)
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or signer.kid or self.kid}
        return jwt.encode(header, claims, signer, algorithms=["RS256"])

    def authorize(self, url: str) -> str:
        """What a browser does at the provider: GET the authorization URL, return the redirect Location."""
        with httpx.Client(verify=self.ssl_context() if self.tls else True, timeout=10) as http:
            r = http.get(url, follow_redirects=False)
        if r.status_code != 302:
            raise AssertionError(f"provider answered {r.status_code}, not a redirect: {r.text}")
        return r.headers["location"]

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context trusting this provider's CA (with tls=True)."""
        assert self.ca_cert_path, "the provider was started without tls"
        return ssl.create_default_context(cafile=self.ca_cert_path)

    # --- endpoints ----------------------------------------------------------------------------
    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": self.authorization_endpoint,
                "token_endpoint": self.token_endpoint,
                "jwks_uri": self.jwks_uri,
                "userinfo_endpoint": self.userinfo_endpoint,
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": self.scopes_supported,
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
                "claims_supported": [
                    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "name", "email",
                    "email_verified", "preferred_username", *([self.groups_claim] if self.groups_claim else []),
                ],
            }
        )  # fmt: skip

    async def _jwks(self, request: Request) -> Response:
        return JSONResponse(self.jwks())

    async def _authorize(self, request: Request) -> Response:
        form = list((await request.form()).multi_items()) if request.method == "POST" else []
        req = _Request(request, [(k, v) for k, v in form if isinstance(v, str)])
        self.authorization_requests.append(dict(req.payload.data))
        hint = req.payload.data.get("login_hint")
        username = hint if hint in self.users else self.current_user
        user = self.users.get(username) if username else None
        try:
            grant = self._server.get_consent_grant(req, end_user=user)
        except OAuth2Error as error:
            response: Response = self._server.handle_error_response(req, error)
            return response
        response = self._server.create_authorization_response(req, grant_user=user, grant=grant)
        return response

    async def _token(self, request: Request) -> Response:
        form = [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
        response: Response = self._server.create_token_response(_Request(request, form))
        return response

    async def _userinfo(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self._lock:
            found = self._access_tokens.get(token)
        if found is None or found[2] < time.time():
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        user = self.users[found[0]]
        return JSONResponse({"sub": user.sub, **self._profile(user)})

    def _profile(self, user: OidcUser) -> dict[str, Any]:
        """The user's profile claims, alike in ID tokens and at /userinfo."""
        claims: dict[str, Any] = {
            "preferred_username": user.username,
            "name": user.name,
            "email": user.email,
            "email_verified": True,
        }
        if self.groups_claim:
            claims[self.groups_claim] = list(user.groups)
        return claims

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        routes = [
            Route("/.well-known/openid-configuration", self._discovery),
            Route("/jwks", self._jwks),
            Route("/authorize", self._authorize, methods=["GET", "POST"]),
            Route("/token", self._token, methods=["POST"]),
            Route("/userinfo", self._userinfo, methods=["GET", "POST"]),
        ]
        app = Starlette(routes=[Mount(self.path, routes=routes)] if self.path else routes)
        ssl_options: dict[str, Any] = {}
        if self.tls:
            self._tmp = tempfile.TemporaryDirectory(prefix="dockyard-oidc-")
            ca, cert, key = make_tls_files(Path(self._tmp.name))
            self.ca_cert_path = str(ca)
            ssl_options = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", access_log=False, **ssl_options
        )
        self._sock.listen(128)
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [self._sock]}, name="oidc-provider", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the OIDC provider did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._uvicorn, self._thread = None, None
        self._sock.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
