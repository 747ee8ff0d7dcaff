"""Starting a UI session from outside the UI's own sign-in form: the OIDC callback (api/oidc.py)."""

from __future__ import annotations

from starlette.responses import Response

from dockyard.ui.session import SESSION_COOKIE, SessionCodec
from dockyard.wiring import Services


def ui_sign_in(response: Response, services: Services, subject: str, uid: str) -> None:
    """Set the UI's session cookie for the account on `response`, as the sign-in form does."""
    codec = SessionCodec(services.tokens, services.settings)
    session = codec.new(subject, uid)
    response.set_cookie(
        SESSION_COOKIE,
        codec.encode(session),
        max_age=codec.max_age(session),
        httponly=True,
        samesite="lax",
        secure=codec.secure,
        path="/",
    )
