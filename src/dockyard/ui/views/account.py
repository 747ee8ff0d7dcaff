"""My account: who I am, personal access tokens (the token shown once), revoking them."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from dockyard.api.management import users as api
from dockyard.api.management.models import TokenIn
from dockyard.db.engine import now
from dockyard.services.errors import InvalidInput
from dockyard.ui.web import Page


def _render(page: Page, status: int = 200, created: object = None, cli_secret: str | None = None) -> Response:
    tokens = api.list_tokens(page.svc, page.identity)
    return page.render("account.html", status=status, tokens=tokens, created=created, cli_secret=cli_secret)


def account(page: Page) -> Response:
    return _render(page)


def create_token(page: Page) -> Response:
    days = page.field("expires_days")
    try:
        expires_at = now() + float(days) * 86400 if days else None
    except ValueError:
        raise InvalidInput("expiry must be a number of days") from None
    created = api.create_token(TokenIn(name=page.field("name"), expires_at=expires_at), page.svc, page.identity)
    return _render(page, 201, created)


def revoke_token(page: Page) -> Response:
    api.revoke_token(page.request.path_params["name"], page.svc, page.identity)
    return RedirectResponse("/account", status_code=303)


def new_cli_secret(page: Page) -> Response:
    """OIDC users: a new registry-login secret, shown once (the old one stops working)."""
    return _render(page, 201, cli_secret=api.new_cli_secret(page.svc, page.identity).secret)
