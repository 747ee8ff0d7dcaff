"""The UI's session cookie and CSRF tokens.

The session is a value signed by the registry's own key (TokenService.sign, a purpose of its own, so
it is neither a registry token nor the management API's session): subject, account uid, when the
sign-in happened, when the session was last used, and the CSRF token its forms carry. Any replica
can check it; the account's standing is checked on every request (Authenticator.current), so a
disabled or deleted user's session ends at once.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from dockyard.config import Settings
from dockyard.services.auth.tokens import InvalidToken, TokenService

SESSION_COOKIE = "dockyard_ui"
LOGIN_CSRF_COOKIE = "dockyard_ui_login"  # the sign-in form's CSRF token, before there is a session
PURPOSE = "ui-session"
LOGIN_PURPOSE = "ui-login"
# Re-sign the cookie (moving its idle clock) at most this often: a signature per page is waste.
TOUCH_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Session:
    subject: str
    uid: str
    started: float
    seen: float
    csrf: str


class SessionCodec:
    def __init__(self, tokens: TokenService, settings: Settings) -> None:
        self.tokens = tokens
        self.idle = settings.ui_session_idle_seconds
        self.absolute = settings.ui_session_absolute_seconds
        self.secure = (settings.public_url or "").lower().startswith("https://")

    def new(self, subject: str, uid: str) -> Session:
        at = time.time()
        return Session(subject, uid, at, at, secrets.token_urlsafe(24))

    def encode(self, session: Session) -> str:
        payload = {"sub": session.subject, "uid": session.uid, "st": session.started, "seen": session.seen}
        payload["csrf"] = session.csrf
        # The signed value expires with the idle window; `st` bounds the whole session.
        return self.tokens.sign(payload, PURPOSE, self.idle)

    def decode(self, value: str) -> Session | None:
        """The session, or None if the cookie is not one, or idle or absolute time has run out."""
        try:
            p = self.tokens.unsign(value, PURPOSE)
        except InvalidToken:
            return None
        try:
            session = Session(str(p["sub"]), str(p["uid"]), float(p["st"]), float(p["seen"]), str(p["csrf"]))
        except (KeyError, TypeError, ValueError):
            return None
        at = time.time()
        if at - session.seen > self.idle or at - session.started > self.absolute:
            return None
        return session

    def touched(self, session: Session) -> Session | None:
        """The session with its idle clock moved on, when due; None when the cookie can stay."""
        at = time.time()
        if at - session.seen < TOUCH_EVERY:
            return None
        return Session(session.subject, session.uid, session.started, at, session.csrf)

    def max_age(self, session: Session) -> int:
        return max(1, int(min(self.idle, session.started + self.absolute - time.time())))

    # --- the sign-in form ------------------------------------------------------------------
    def login_token(self) -> tuple[str, str]:
        """(token for the form, cookie value): the cookie is signed, so only this server made it."""
        token = secrets.token_urlsafe(24)
        return token, self.tokens.sign({"csrf": token}, LOGIN_PURPOSE, 3600)

    def login_token_ok(self, cookie: str | None, submitted: str) -> bool:
        if not cookie or not submitted:
            return False
        try:
            expected = str(self.tokens.unsign(cookie, LOGIN_PURPOSE).get("csrf", ""))
        except InvalidToken:
            return False
        return bool(expected) and hmac.compare_digest(expected, submitted)


def csrf_ok(session: Session, submitted: str) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf, submitted)
