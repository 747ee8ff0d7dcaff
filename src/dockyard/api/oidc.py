"""Browser login through the OIDC provider: /auth/oidc/login → provider → /auth/oidc/callback.

The login state (state, nonce, PKCE verifier) travels in a short-lived signed cookie, so any
replica can finish a login another began.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dockyard.api.auth import SESSION_COOKIE, client_ip, external_base
from dockyard.api.problem import problem
from dockyard.config import secret
from dockyard.services.audit import FAILURE, Actor, acting_as
from dockyard.services.auth.identity import Identity
from dockyard.services.auth.oidc import OidcClient, OidcError, OidcSettings
from dockyard.services.auth.tokens import InvalidToken
from dockyard.wiring import Services

STATE_COOKIE = "dockyard_oidc"
SESSION_TTL = 8 * 3600


def _site_path(value: str) -> bool:
    return value.startswith("/") and not value.startswith("//") and "\\" not in value


def routes(services: Services) -> list[BaseRoute]:
    s = services.settings
    if not s.oidc_issuer:
        return []
    assert s.oidc_client_id and s.oidc_client_secret  # checked by the settings validator
    client = OidcClient(
        OidcSettings(
            issuer=s.oidc_issuer,
            client_id=s.oidc_client_id,
            client_secret=secret(s.oidc_client_secret) or "",
            scopes=s.oidc_scopes,
            username_claim=s.oidc_username_claim,
            groups_claim=s.oidc_groups_claim,
            verify_tls=s.oidc_verify_tls,
        ),
        services.http_for(s.oidc_verify_tls),
    )

    def redirect_uri(request: Request) -> str:
        return external_base(request, s) + "/auth/oidc/callback"

    async def login(request: Request) -> Response:
        try:
            start = await run_in_threadpool(client.start, redirect_uri(request))
        except OidcError as exc:
            return problem(502, "identity provider unavailable", str(exc), "OIDC_UNAVAILABLE")
        saved = {"state": start.state, "nonce": start.nonce, "verifier": start.verifier}
        # Begun by the web UI's "Sign in with" button: the callback starts a UI session and returns
        # there (a path of this site only, never an open redirect) instead of answering JSON.
        ui_next = request.query_params.get("ui_next", "")
        if _site_path(ui_next):
            saved["ui_next"] = ui_next
        state = services.tokens.sign(saved, "oidc-login", 600)
        response = RedirectResponse(start.url, status_code=302)
        response.set_cookie(STATE_COOKIE, state, max_age=600, httponly=True, samesite="lax", path="/auth/oidc")
        return response

    def _finish(request: Request, code: str, returned_state: str, cookie: str) -> dict[str, object]:
        try:
            saved = services.tokens.unsign(cookie, "oidc-login")
        except InvalidToken as exc:
            raise OidcError(f"login state: {exc}") from None
        if saved.get("state") != returned_state:
            raise OidcError("login state does not match: start the login again")
        user = client.finish(code, redirect_uri(request), str(saved["nonce"]), str(saved["verifier"]))
        with services.db.write() as conn:
            record = services.users.upsert_external(conn, user.username, "oidc", user.email, user.groups)
        if record.disabled:
            raise OidcError(f"user {user.username!r} is disabled")
        identity = Identity(record.username, record.is_admin, "user", "oidc", frozenset(user.groups), uid=record.uid)
        actor = Actor.of(identity, client_ip(request), request.headers.get("user-agent"))
        services.audit.record_now("login", actor=actor, detail={"provider": "oidc"})
        with acting_as(actor):
            cli_secret = services.users.first_cli_secret(record.username)
        session = services.tokens.issue_session(identity, SESSION_TTL)
        return {
            "username": record.username,
            "groups": sorted(user.groups),
            "cli_secret": cli_secret,
            "session": session,
            "uid": record.uid,
            "ui_next": saved.get("ui_next"),
        }

    async def callback(request: Request) -> Response:
        q = request.query_params
        if "error" in q:
            return problem(401, "login refused", f"the identity provider said: {q['error']}", "OIDC_REFUSED")
        cookie = request.cookies.get(STATE_COOKIE)
        if not q.get("code") or not q.get("state") or not cookie:
            return problem(400, "bad callback", "missing code, state or login cookie", "OIDC_INVALID")
        try:
            result = await run_in_threadpool(_finish, request, q["code"], q["state"], cookie)
        except OidcError as exc:
            services.audit.record_now(
                "login",
                result=FAILURE,
                actor=Actor("", "anonymous", "oidc", client_ip(request), request.headers.get("user-agent")),
                detail={"provider": "oidc", "reason": str(exc)},
            )
            return problem(401, "login failed", str(exc), "OIDC_FAILED")
        session = str(result.pop("session"))
        uid, ui_next = result.pop("uid"), result.pop("ui_next")
        if isinstance(ui_next, str) and _site_path(ui_next):
            from dockyard.ui.handoff import ui_sign_in  # the UI's own session, built only for its logins

            redirect = RedirectResponse(ui_next, status_code=303)
            ui_sign_in(redirect, services, str(result["username"]), str(uid))  # a CLI secret: My account
            redirect.delete_cookie(STATE_COOKIE, path="/auth/oidc")
            return redirect
        body = {**result, "note": "cli_secret is shown once; use it as the password for registry logins"}
        response = JSONResponse(body, headers={"Cache-Control": "no-store"})
        response.set_cookie(SESSION_COOKIE, session, max_age=SESSION_TTL, httponly=True, samesite="lax")
        response.delete_cookie(STATE_COOKIE, path="/auth/oidc")
        return response

    return [
        Route("/auth/oidc/login", login, methods=["GET"]),
        Route("/auth/oidc/callback", callback, methods=["GET"]),
    ]
