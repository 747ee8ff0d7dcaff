"""The UI's Starlette application, mounted at / beside /v2/ and /api/v1 (api/app.py builds it lazily)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from dockyard.services.registry.browse import BrowseService
from dockyard.ui.session import SessionCodec
from dockyard.ui.views import account, admin, audit, auth, images, projects, security, settings, trust
from dockyard.ui.web import HERE, SECURITY_HEADERS, Ui, View, environment, view
from dockyard.wiring import Services


def _routes(get: Callable[[Request], Ui]) -> list[BaseRoute]:
    def r(path: str, func: View, method: str = "GET", signed_in: bool = True) -> Route:
        return Route(path, view(get, func, signed_in), methods=[method])

    repo = "/repositories/{repository:path}"
    return [
        Route("/", lambda request: RedirectResponse("/projects", status_code=303), methods=["GET"]),
        r("/login", auth.login_form, signed_in=False),
        r("/login", auth.login, "POST", signed_in=False),
        r("/logout", auth.logout, "POST"),
        r("/projects", projects.projects),
        r("/projects", projects.create_project, "POST"),
        r("/projects/{project}", projects.repositories),
        r("/projects/{project}/members", projects.members),
        r("/projects/{project}/members", projects.set_member, "POST"),
        r("/projects/{project}/members/{kind}/{principal}/remove", projects.remove_member, "POST"),
        r("/projects/{project}/robots", projects.create_robot, "POST"),
        r("/projects/{project}/settings", settings.settings),
        r("/projects/{project}/settings/visibility", settings.visibility, "POST"),
        r("/projects/{project}/settings/scan-policy", settings.scan_policy, "POST"),
        r("/projects/{project}/settings/immutable", settings.add_rule, "POST"),
        r("/projects/{project}/settings/immutable/remove", settings.remove_rule, "POST"),
        r("/projects/{project}/settings/retention", settings.retention, "POST"),
        r("/projects/{project}/settings/retention/preview", settings.retention_preview, "POST"),
        r("/projects/{project}/settings/quota", settings.quota, "POST"),
        r("/projects/{project}/robots/{robot}/disabled", projects.set_robot_disabled, "POST"),
        r("/projects/{project}/trust", trust.trust),
        r("/projects/{project}/trust/policy", trust.set_trust_policy, "POST"),
        r("/projects/{project}/trust/auto-quarantine", trust.set_auto_quarantine, "POST"),
        r("/projects/{project}/trust/keys", trust.add_key, "POST"),
        r("/projects/{project}/trust/keys/{key}/delete", trust.delete_key, "POST"),
        r("/projects/{project}/trust/certificates", trust.add_certificate, "POST"),
        r("/projects/{project}/trust/certificates/{cert}/delete", trust.delete_certificate, "POST"),
        r(repo + "/tags", images.tags),
        r(repo + "/tags/{tag}/history", trust.tag_history),
        r(repo + "/tags/{tag}/revert", trust.revert, "POST"),
        r(repo + "/images/{digest}/quarantine", trust.quarantine, "POST"),
        r(repo + "/images/{digest}/release", trust.release, "POST"),
        r(repo + "/tags/{tag}/delete", images.confirm_delete),
        r(repo + "/tags/{tag}/delete", images.delete_tag, "POST"),
        r(repo + "/images/{digest}", images.image),
        r(repo + "/images/{digest}/sbom", images.sbom),
        r("/security", security.security),
        r("/security/vulndb/update", security.update_vulndb, "POST"),
        r("/security/exposure/export", trust.exposure_export),
        r("/admin/gc", admin.gc_dry_run, "POST"),
        r("/audit", audit.events),
        r("/audit/export", audit.export),
        r("/admin", admin.admin),
        r("/admin/users", admin.create_user, "POST"),
        r("/admin/users/{username}/{action}", admin.change_user, "POST"),
        r("/account", account.account),
        r("/account/tokens", account.create_token, "POST"),
        r("/account/cli-secret", account.new_cli_secret, "POST"),
        r("/account/tokens/{name}/revoke", account.revoke_token, "POST"),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]


async def _not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    text = "There is no such page." if status == 404 else str(exc.detail)
    ui: Ui = request.app.state.ui
    html = ui.env.get_template("bare_error.html").render(status_code=status, message=text)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def create_ui_app(services: Services) -> Starlette:
    ui = Ui(services, environment(), SessionCodec(services.tokens, services.settings), BrowseService(services.db))

    def get(request: Request) -> Ui:
        return ui

    app = Starlette(routes=_routes(get), exception_handlers={HTTPException: _not_found})
    app.state.ui = ui
    app.state.services = services  # client_ip and external_base read it from the request's app
    return app
