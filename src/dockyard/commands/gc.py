"""`dockyard gc`: collect garbage now."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from dockyard.services.lifecycle import leases
from dockyard.wiring import Services


def gc_command(
    svc: Services,
    dry_run: Annotated[bool, typer.Option(help="Report what would be removed, remove nothing.")] = False,
    everything: Annotated[
        bool, typer.Option("--all", help="First queue every manifest and blob (registries from before the queue).")
    ] = False,
) -> str:
    """Collect garbage now: untagged manifests, unreferenced links and blobs past the grace period."""
    if everything:
        typer.echo(f"queued {svc.collector.enqueue_everything()} candidates")
    # A real run waits for no one: while the server's collector (or another `dockyard gc`) holds
    # the lease, this one refuses and says who has it.
    report = svc.collector.run_now(leases.holder_name(f"cli:{getpass.getuser()}"), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    return "\n".join(
        [
            f"{verb} {len(report.manifests)} manifests, {len(report.links)} blob links and {len(report.blobs)} "
            f"blobs ({report.bytes} bytes); {report.kept} candidates still in use, {report.deferred} within the "
            "grace period",
            *(f"  manifest {repo}@{digest}" for repo, digest in report.manifests),
            *(f"  blob {digest}" for digest in report.blobs),
        ]
    )
