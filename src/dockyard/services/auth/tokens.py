"""Bearer tokens per the Docker token authentication spec: ES256 JWTs with an `access` claim.

The signing key is kept in the database so every replica issues and accepts the same tokens.
Verified tokens are cached by their exact text until they expire: verification is pure, so the
cache can never accept a token that verification would refuse.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.db import schema as s
from dockyard.db.engine import Database, now
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.scopes import Scope

ALGORITHM = "ES256"
SESSION_PURPOSE = "session"
LEEWAY_SECONDS = 5


class InvalidToken(Exception):
    """The token is malformed, forged, expired or not meant for this service."""


class UnknownKey(InvalidToken):
    """Signed with a key this process has not loaded (`verify(..., load_keys=False)`): ask again with
    loading allowed, where a database read may block."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: str


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    expires_at: float
    access: frozenset[tuple[str, str, str]]  # (type, name, action)
    credential: str | None = None  # the revocable credential the token was issued from, if any
    uid: str | None = None  # the account's never-reused id (Identity.uid)

    def allows(self, type_: str, name: str, action: str) -> bool:
        return (type_, name, action) in self.access or (type_, name, "*") in self.access


def _key_id(public_der: bytes) -> str:
    # libtrust-style key id: base32 of the first 240 bits of SHA-256(SPKI), in groups of four.
    b32 = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode()
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


# Verified tokens remembered per process: about 1.5 KiB each (the token and its claims), so at most
# ~6 MiB. Past the cap, expired entries go first, then the oldest half: a client whose token was
# dropped pays one signature check again.
CACHE_ENTRIES = 4096


class TokenService:
    def __init__(self, db: Database, issuer: str, service: str, ttl: int) -> None:
        self.db = db
        self.issuer = issuer
        self.service = service
        self.ttl = ttl
        self._keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._current: str | None = None
        self._cache: dict[str, TokenClaims] = {}
        self._lock = threading.Lock()

    # --- keys -------------------------------------------------------------------------------
    def _load_keys(self) -> None:
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(s.signing_keys.c.kid, s.signing_keys.c.private_pem).order_by(
                    s.signing_keys.c.created_at, s.signing_keys.c.kid
                )
            ).all()
        for row in rows:
            key = serialization.load_pem_private_key(row.private_pem.encode(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self._keys[row.kid] = key
        if rows:
            self._current = rows[0].kid

    def ensure_key(self) -> None:
        """Create the signing key on first start; every process converges on the oldest key."""
        self._load_keys()
        if self._current is not None:
            return
        key = ec.generate_private_key(ec.SECP256R1())
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        with self.db.write() as conn:
            conn.execute(
                self.db.insert_ignore(
                    s.signing_keys, kid=_key_id(der), algorithm=ALGORITHM, private_pem=pem, created_at=now()
                )
            )
        self._load_keys()

    def _signing_key(self) -> tuple[str, ec.EllipticCurvePrivateKey]:
        if self._current is None:
            self.ensure_key()
        assert self._current is not None
        return self._current, self._keys[self._current]

    # --- issue / verify ---------------------------------------------------------------------
    def issue(self, identity: Identity, scopes: list[Scope], ttl: int | None = None) -> IssuedToken:
        kid, key = self._signing_key()
        issued = int(time.time())
        lifetime = self.ttl if ttl is None else ttl
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": identity.subject,
            "aud": self.service,
            "exp": issued + lifetime,
            "nbf": issued - 1,
            "iat": issued,
            "jti": secrets.token_hex(16),
            "access": [scope.as_claim() for scope in scopes],
        }
        if identity.credential:
            claims["dyc"] = identity.credential
        if identity.uid:
            claims["uid"] = identity.uid
        token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})
        issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued))
        return IssuedToken(token, lifetime, issued_at)

    def verify(self, token: str, load_keys: bool = True) -> TokenClaims:
        """The token's claims, or InvalidToken. Pure CPU unless the token names a key not loaded yet;
        with `load_keys=False` that raises UnknownKey instead of reading the keys (non-blocking callers)."""
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at > time.time():
                return cached
            raise InvalidToken("token expired")
        claims = self._decode(token, load_keys)
        with self._lock:
            if len(self._cache) >= CACHE_ENTRIES:
                now_ts = time.time()
                live = [(k, v) for k, v in self._cache.items() if v.expires_at > now_ts]
                if len(live) >= CACHE_ENTRIES // 2:
                    live = live[len(live) - CACHE_ENTRIES // 2 :]  # insertion order: keep the newest half
                self._cache = dict(live)
            self._cache[token] = claims
        return claims

    def _decode(self, token: str, load_keys: bool = True) -> TokenClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise InvalidToken("token not signed by this registry")
        if kid not in self._keys:
            if not load_keys:
                raise UnknownKey("token signed with a key not loaded yet")
            self._load_keys()  # a key created by another replica since we started
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("token signed with an unknown key")
        try:
            payload = jwt.decode(
                token,
                key.public_key(),
                algorithms=[ALGORITHM],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from None
        access: set[tuple[str, str, str]] = set()
        for entry in payload.get("access") or []:
            if isinstance(entry, dict):
                for action in entry.get("actions") or []:
                    access.add((str(entry.get("type")), str(entry.get("name")), str(action)))
        credential, uid = payload.get("dyc"), payload.get("uid")
        return TokenClaims(
            str(payload["sub"]),
            float(payload["exp"]),
            frozenset(access),
            credential if isinstance(credential, str) else None,
            uid if isinstance(uid, str) else None,
        )

    # --- the UI session ----------------------------------------------------------------------
    def issue_session(self, identity: Identity, ttl: int) -> str:
        """The management API's session cookie: signed for its own audience, so it is no registry
        token (and a registry token is no session)."""
        return self.sign({"sub": identity.subject, "uid": identity.uid}, SESSION_PURPOSE, ttl)

    def verify_session(self, token: str) -> tuple[str, str]:
        """(subject, uid) of a session cookie; InvalidToken if it is not one."""
        payload = self.unsign(token, SESSION_PURPOSE)
        sub, uid = payload.get("sub"), payload.get("uid")
        if not isinstance(sub, str) or not isinstance(uid, str) or not sub or not uid:
            raise InvalidToken("invalid session")
        return sub, uid

    # --- other signed values (login state cookies) ---------------------------------------------
    def sign(self, payload: dict[str, Any], purpose: str, ttl: int) -> str:
        """Sign a small value for the client to carry (e.g. OIDC login state); `purpose` keeps a
        value made for one use from being accepted for another, and from passing as a registry token."""
        kid, key = self._signing_key()
        issued = int(time.time())
        claims = {**payload, "iss": self.issuer, "aud": f"{self.service}#{purpose}", "iat": issued, "exp": issued + ttl}
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})

    def unsign(self, token: str, purpose: str) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed value: {exc}") from None
        if kid not in self._keys:
            self._load_keys()
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("value signed with an unknown key")
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key.public_key(),
                algorithms=[ALGORITHM],
                audience=f"{self.service}#{purpose}",
                issuer=self.issuer,
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid value: {exc}") from None
        return payload
