"""Operator commands: users, projects, members, robots, access tokens and the audit log, run
directly against the configured database (no server needed), as actor `cli:<os user>`."""

from __future__ import annotations

import getpass
import json
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from dockyard.config import ConfigError, load_settings
from dockyard.services.audit import Actor, AuditFilter, acting_as
from dockyard.services.auth.permissions import Role, markdown_table
from dockyard.services.errors import RegistryError
from dockyard.services.lifecycle import leases
from dockyard.wiring import Services, build_services, prepare_database

console = Console()
P = ParamSpec("P")
R = TypeVar("R")

users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
projects_app = typer.Typer(help="Manage projects and their members.", no_args_is_help=True)
robots_app = typer.Typer(help="Manage robot accounts.", no_args_is_help=True)
tokens_app = typer.Typer(help="Manage users' personal access tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="Read, export and prune the audit log.", no_args_is_help=True)


@contextmanager
def _services() -> Iterator[Services]:
    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"dockyard: {exc}", err=True)
        raise typer.Exit(2) from None
    svc = build_services(settings)
    try:
        prepare_database(svc)  # no implicit `admin`: the first `serve` makes it, and prints its password
        with acting_as(Actor(f"cli:{getpass.getuser()}", "system")):
            yield svc
    finally:
        svc.close()


def _errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Domain errors become one readable line and exit status 1."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except RegistryError as exc:
            typer.echo(f"dockyard: {exc.message}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _password(value: str | None, stdin: bool, generate: bool = False) -> str:
    if generate:
        return secrets.token_urlsafe(18)
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    if value:
        return value
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _expiry(days: float | None) -> float | None:
    return time.time() + days * 86400 if days else None


def _table(columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


# --- users -------------------------------------------------------------------------------------
@users_app.command("create")
@_errors
def user_create(
    username: str,
    password: Annotated[str | None, typer.Option(help="Prompted for when omitted.")] = None,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
    generate_password: Annotated[bool, typer.Option(help="Generate a password and print it (shown once).")] = False,
    admin: Annotated[bool, typer.Option(help="Make a system administrator.")] = False,
    can_create_projects: Annotated[bool, typer.Option(help="Allow creating projects.")] = False,
    email: str | None = None,
) -> None:
    """Create a local user (with --admin, e.g. the first administrator before the first `serve`)."""
    secret = _password(password, password_stdin, generate_password)
    with _services() as svc:
        user = svc.users.create(username, secret, admin, email, can_create_projects)
    typer.echo(f"created user {user.username}")
    if generate_password:
        typer.echo(f"generated password (shown once): {secret}")


@users_app.command("list")
@_errors
def user_list() -> None:
    """List users."""
    with _services() as svc:
        users = svc.users.list_users()
    _table(
        ["user", "provider", "admin", "disabled", "groups"],
        [[u.username, u.provider, u.is_admin, u.disabled, ", ".join(u.groups)] for u in users],
    )


def _set_flag(username: str, disabled: bool | None = None, is_admin: bool | None = None) -> None:
    with _services() as svc:
        svc.users.update(username, disabled=disabled, is_admin=is_admin)
    typer.echo(f"updated user {username}")


@users_app.command("disable")
@_errors
def user_disable(username: str) -> None:
    """Disable a user: every login and every token already issued stops working at once."""
    _set_flag(username, disabled=True)


@users_app.command("enable")
@_errors
def user_enable(username: str) -> None:
    """Enable a disabled user."""
    _set_flag(username, disabled=False)


@users_app.command("set-admin")
@_errors
def user_set_admin(username: str, admin: Annotated[bool, typer.Option("--admin/--no-admin")] = True) -> None:
    """Grant or remove the system administrator role."""
    _set_flag(username, is_admin=admin)


@users_app.command("delete")
@_errors
def user_delete(username: str) -> None:
    """Delete a user and their direct project grants."""
    with _services() as svc:
        svc.users.delete(username)
    typer.echo(f"deleted user {username}")


@users_app.command("set-password")
@_errors
def user_set_password(
    username: str,
    password: Annotated[str | None, typer.Option(help="Prompted for when omitted.")] = None,
    password_stdin: bool = False,
) -> None:
    """Set a local user's password."""
    secret = _password(password, password_stdin)
    with _services() as svc:
        svc.users.set_password(username, secret)
    typer.echo(f"password of {username} set")


@users_app.command("unlock")
@_errors
def user_unlock(username: Annotated[str, typer.Argument(help="A user name, or a robot's robot$NAME.")]) -> None:
    """Clear the failed-login locks and counters of a user or robot, from every address."""
    with _services() as svc:
        cleared = svc.authenticator.unlock(username)
    typer.echo(f"unlocked {username} ({cleared['locks']} lock(s), {cleared['refused']} refused attempt(s) cleared)")


# --- projects ----------------------------------------------------------------------------------
@projects_app.command("create")
@_errors
def project_create(
    name: str,
    public: Annotated[bool, typer.Option(help="Anyone, even anonymous, may pull.")] = False,
    owner: Annotated[str | None, typer.Option(help="User to make project admin.")] = None,
) -> None:
    """Create a project."""
    with _services() as svc:
        svc.projects.create(name, public, creator=owner)
    typer.echo(f"created project {name}" + (" (public)" if public else ""))


@projects_app.command("list")
@_errors
def project_list() -> None:
    """List projects."""
    with _services() as svc:
        projects = svc.projects.list_projects()
    _table(["project", "public", "created by"], [[p.name, p.public, p.created_by] for p in projects])


@projects_app.command("set-public")
@_errors
def project_set_public(name: str, public: Annotated[bool, typer.Option("--public/--private")] = True) -> None:
    """Make a project public or private."""
    with _services() as svc:
        svc.projects.update(name, public=public)
    typer.echo(f"project {name} is now {'public' if public else 'private'}")


@projects_app.command("delete")
@_errors
def project_delete(name: str) -> None:
    """Delete an empty project."""
    with _services() as svc:
        svc.projects.delete(name)
    typer.echo(f"deleted project {name}")


@projects_app.command("grant")
@_errors
def project_grant(
    project: str,
    principal: Annotated[str, typer.Argument(help="user:NAME or group:NAME")],
    role: Annotated[str, typer.Argument(help="guest, developer, maintainer or admin")],
) -> None:
    """Grant a role in a project to a user or a group (replacing any role they had)."""
    kind, _, name = principal.partition(":")
    try:
        parsed = Role.parse(role)
    except ValueError as exc:
        typer.echo(f"dockyard: {exc}", err=True)
        raise typer.Exit(2) from None
    with _services() as svc:
        svc.projects.set_member(project, kind, name, parsed)
    typer.echo(f"{principal} is {parsed.label} in {project}")


@projects_app.command("revoke")
@_errors
def project_revoke(project: str, principal: Annotated[str, typer.Argument(help="user:NAME or group:NAME")]) -> None:
    """Remove a user's or group's role in a project."""
    kind, _, name = principal.partition(":")
    with _services() as svc:
        svc.projects.remove_member(project, kind, name)
    typer.echo(f"{principal} no longer has a role in {project}")


@projects_app.command("members")
@_errors
def project_members(project: str) -> None:
    """List a project's members."""
    with _services() as svc:
        members = svc.projects.members(project)
    _table(["kind", "name", "role"], [[m.principal_kind, m.principal, m.role.label] for m in members])


@projects_app.command("permissions")
def project_permissions() -> None:
    """Print the permission matrix (least role per permission)."""
    typer.echo(markdown_table())


# --- robots ------------------------------------------------------------------------------------
@robots_app.command("create")
@_errors
def robot_create(
    name: str,
    project: Annotated[
        list[str], typer.Option("--project", "-p", help="PROJECT:ACTIONS, e.g. team-a:pull,push (repeatable)")
    ],
    expires_days: Annotated[float | None, typer.Option(help="Expire after this many days.")] = None,
    description: str | None = None,
) -> None:
    """Create a robot account; prints its secret once."""
    permissions: dict[str, list[str]] = {}
    for item in project:
        proj, _, actions = item.partition(":")
        permissions[proj] = [a for a in actions.split(",") if a] or ["pull"]
    with _services() as svc:
        created = svc.robots.create(name, permissions, _expiry(expires_days), description)
    typer.echo(f"created {created.robot.name}")
    typer.echo(f"secret (shown once): {created.secret}")


@robots_app.command("list")
@_errors
def robot_list(project: str | None = None) -> None:
    """List robot accounts."""
    with _services() as svc:
        robots = svc.robots.list_robots(project)
    _table(
        ["robot", "permissions", "expires", "disabled"],
        [
            [
                r.name,
                "; ".join(f"{p}:{','.join(a)}" for p, a in r.permissions.items()),
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.expires_at)) if r.expires_at else "never",
                r.disabled,
            ]
            for r in robots
        ],
    )


@robots_app.command("disable")
@_errors
def robot_disable(name: str, disabled: Annotated[bool, typer.Option("--disable/--enable")] = True) -> None:
    """Disable (or enable) a robot account."""
    with _services() as svc:
        svc.robots.set_disabled(name, disabled)
    typer.echo(f"{name} {'disabled' if disabled else 'enabled'}")


@robots_app.command("delete")
@_errors
def robot_delete(name: str) -> None:
    """Delete a robot account."""
    with _services() as svc:
        svc.robots.delete(name)
    typer.echo(f"deleted {name}")


# --- access tokens -----------------------------------------------------------------------------
@tokens_app.command("create")
@_errors
def token_create(
    username: str, name: str, expires_days: Annotated[float | None, typer.Option(help="Expire after N days.")] = None
) -> None:
    """Create a personal access token for a user; prints it once."""
    with _services() as svc:
        created = svc.access_tokens.create(username, name, _expiry(expires_days))
    typer.echo(f"token (shown once, use it as {username}'s password): {created.secret}")


@tokens_app.command("list")
@_errors
def token_list(username: str) -> None:
    """List a user's access tokens."""
    with _services() as svc:
        tokens = svc.access_tokens.list(username)
    _table(["name", "expires", "revoked"], [[t.name, t.expires_at, t.revoked_at] for t in tokens])


@tokens_app.command("revoke")
@_errors
def token_revoke(username: str, name: str) -> None:
    """Revoke a user's access token (tokens issued from it stop working too)."""
    with _services() as svc:
        svc.access_tokens.revoke(username, name)
    typer.echo(f"revoked {name}")


# --- audit -------------------------------------------------------------------------------------
def _filter(
    project: str | None, repository: str | None, actor: str | None, action: str | None, since_hours: float | None
) -> AuditFilter:
    since = time.time() - since_hours * 3600 if since_hours else None
    return AuditFilter(project=project, repository=repository, actor=actor, action=action, since=since)


def _target(row: dict[str, Any]) -> str:
    where = row["repository"] or row["project"] or ""
    if row["reference"]:
        where = f"{where}:{row['reference']}" if where else row["reference"]
    if row["digest"]:
        where = f"{where}@{row['digest'][:19]}"
    return str(where)


@audit_app.command("list")
@_errors
def audit_list(
    project: str | None = None,
    repository: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since_hours: float | None = None,
    limit: int = 50,
) -> None:
    """Show the newest audit events."""
    with _services() as svc:
        rows, _ = svc.audit.query(_filter(project, repository, actor, action, since_hours), limit)
    _table(
        ["time (UTC)", "actor", "action", "target", "result", "from"],
        [
            [
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["ts"])),
                r["actor"] or "(anonymous)",
                r["action"],
                _target(r),
                r["result"],
                r["source_ip"],
            ]
            for r in rows
        ],
    )


@audit_app.command("export")
@_errors
def audit_export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    project: str | None = None,
    repository: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since_hours: float | None = None,
) -> None:
    """Write matching events to standard output, oldest first."""
    if fmt not in ("jsonl", "csv"):
        typer.echo("dockyard: --format must be jsonl or csv", err=True)
        raise typer.Exit(2)
    with _services() as svc:
        for chunk in svc.audit.export(_filter(project, repository, actor, action, since_hours), fmt):
            sys.stdout.write(chunk)


@audit_app.command("prune")
@_errors
def audit_prune(
    older_than_days: Annotated[float | None, typer.Option(help="Default: the retention setting.")] = None,
) -> None:
    """Delete audit events older than the retention period."""
    with _services() as svc:
        days = older_than_days if older_than_days is not None else svc.settings.audit_retention_days
        if not days:
            typer.echo("retention is 0 (keep for ever): nothing pruned")
            return
        gone = svc.audit.prune(days * 86400)
    typer.echo(json.dumps({"pruned": gone, "older_than_days": days}))


# --- lifecycle ---------------------------------------------------------------------------------
storage_app = typer.Typer(help="Verify and tidy blob storage.", no_args_is_help=True)
retention_app = typer.Typer(help="Retention policies.", no_args_is_help=True)
immutable_app = typer.Typer(help="Tag immutability rules of a project.", no_args_is_help=True)
projects_app.add_typer(immutable_app, name="immutable")


def _size(text: str) -> int | None:
    """`none`, a number of bytes, or a number with K/M/G/T (powers of 1024; KB, KiB, … accepted)."""
    value = text.strip().upper()
    if value in ("NONE", "OFF", ""):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", value)
    if m is None:
        raise typer.BadParameter(f"not a size: {text!r} (e.g. 500M, 20GiB, none)")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2)])


def gc_command(
    dry_run: Annotated[bool, typer.Option(help="Report what would be removed, remove nothing.")] = False,
    everything: Annotated[
        bool, typer.Option("--all", help="First queue every manifest and blob (registries from before the queue).")
    ] = False,
) -> None:
    """Collect garbage now: untagged manifests, unreferenced links and blobs past the grace period."""
    with _services() as svc:
        if everything:
            typer.echo(f"queued {svc.collector.enqueue_everything()} candidates")
        # A real run waits for no one: while the server's collector (or another `dockyard gc`) holds
        # the lease, this one refuses and says who has it.
        report = svc.collector.run_now(leases.holder_name(f"cli:{getpass.getuser()}"), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    typer.echo(
        f"{verb} {len(report.manifests)} manifests, {len(report.links)} blob links and {len(report.blobs)} blobs "
        f"({report.bytes} bytes); {report.kept} candidates still in use, {report.deferred} within the grace period"
    )
    for repo, digest in report.manifests:
        typer.echo(f"  manifest {repo}@{digest}")
    for digest in report.blobs:
        typer.echo(f"  blob {digest}")


@storage_app.command("reconcile")
@_errors
def storage_reconcile(
    dry_run: Annotated[bool, typer.Option(help="List orphaned files, remove nothing.")] = False,
    min_age_hours: Annotated[float, typer.Option(help="Leave unknown files younger than this.")] = 1.0,
) -> None:
    """Remove files in storage that the database does not know (walks the whole storage)."""
    from dockyard.services.lifecycle.reconcile import Reconciler

    with _services() as svc:
        report = Reconciler(svc.db, svc.store, min_age_hours * 3600).run(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    typer.echo(
        f"checked {report.checked} files: {verb} {len(report.orphans)} orphans ({report.bytes} bytes); "
        f"{report.young} unknown files too recent to judge"
    )
    for digest in report.orphans:
        typer.echo(f"  {digest}")


@storage_app.command("scrub")
@_errors
def storage_scrub(rate_mb: Annotated[float, typer.Option(help="Read at most this many MB/s.")] = 50.0) -> None:
    """Re-read every blob and verify its digest; exit status 1 when any is missing or altered."""
    with _services() as svc:
        report = svc.scrubber.run(rate_mb * 1_000_000)
    typer.echo(json.dumps(report.as_dict(), indent=2))
    if report.missing or report.corrupt:
        raise typer.Exit(1)


@projects_app.command("quota")
@_errors
def project_quota(name: str, size: Annotated[str, typer.Argument(help="e.g. 500M, 20G, or none")]) -> None:
    """Set or lift a project's storage quota."""
    with _services() as svc:
        project = svc.projects.set_quota(name, _size(size))
    typer.echo(f"project {name}: quota {project.quota_bytes or 'none'}, using {project.used_bytes} bytes")


@immutable_app.command("add")
@_errors
def immutable_add(project: str, pattern: str) -> None:
    """Make tags matching PATTERN (e.g. 'v*') immutable in PROJECT."""
    with _services() as svc:
        svc.tag_rules.add(project, pattern, creator=None)
    typer.echo(f"tags matching {pattern!r} in {project} are immutable")


@immutable_app.command("remove")
@_errors
def immutable_remove(project: str, pattern: str) -> None:
    """Remove an immutability rule."""
    with _services() as svc:
        svc.tag_rules.remove(project, pattern)
    typer.echo(f"removed rule {pattern!r} from {project}")


@immutable_app.command("list")
@_errors
def immutable_list(project: str) -> None:
    """List a project's immutability rules."""
    with _services() as svc:
        rules = svc.tag_rules.list_rules(project)
    for rule in rules:
        typer.echo(rule.pattern)


@retention_app.command("set")
@_errors
def retention_set(
    project: str,
    keep_last: Annotated[int | None, typer.Option(help="Keep the N most recently pushed tags per repository.")] = None,
    keep_days: Annotated[float | None, typer.Option(help="Keep tags pushed or pulled within D days.")] = None,
    keep_pattern: Annotated[list[str] | None, typer.Option(help="Keep tags matching (repeatable).")] = None,
    remove_untagged: bool = False,
    disable: Annotated[bool, typer.Option(help="Keep the policy but do not run it on schedule.")] = False,
) -> None:
    """Set a project's retention policy."""
    from dockyard.services.lifecycle.retention import RetentionPolicy

    policy = RetentionPolicy(keep_last, keep_days, list(keep_pattern or []), remove_untagged)
    with _services() as svc:
        svc.retention.set_policy(project, policy, enabled=not disable)
    typer.echo(f"retention policy of {project} set")


@retention_app.command("run")
@_errors
def retention_run(project: str, dry_run: Annotated[bool, typer.Option(help="List, remove nothing.")] = False) -> None:
    """Apply a project's retention policy now (or list what it would remove)."""
    with _services() as svc:
        removals = svc.retention.run(project, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {len(removals)}")
    for r in removals:
        typer.echo(f"  {r.repository}:{r.tag or '<untagged>'} {r.digest} ({r.reason})")


def register(app: typer.Typer) -> None:
    app.command("gc")(_errors(gc_command))
    app.add_typer(storage_app, name="storage")
    app.add_typer(retention_app, name="retention")
    app.add_typer(users_app, name="user")
    app.add_typer(projects_app, name="project")
    app.add_typer(robots_app, name="robot")
    app.add_typer(tokens_app, name="token")
    app.add_typer(audit_app, name="audit")
