"""`dockyard keys`: cosign-compatible signing keys (no server, no database)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dockyard.commands.common import usage_error
from dockyard.services.trust import keyfile

app = typer.Typer(help="Signing keys, in cosign's formats.", no_args_is_help=True)
PASSWORD_ENV = "COSIGN_PASSWORD"


def password(confirm: bool) -> bytes:
    """The key password: $COSIGN_PASSWORD (set, even empty, as cosign reads it), else asked for."""
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV].encode()
    text: str = typer.prompt(
        "Password for the private key", hide_input=True, confirmation_prompt=confirm, default="", show_default=False
    )
    return text.encode()


@app.command("generate")
def generate(
    output_key_prefix: Annotated[str, typer.Option(help="Write PREFIX.key and PREFIX.pub.")] = "cosign",
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
) -> None:
    """Generate an ECDSA P-256 key pair as `cosign generate-key-pair` does: PREFIX.key (encrypted with
    the password from $COSIGN_PASSWORD or a prompt) and PREFIX.pub (PEM)."""
    private, public = Path(f"{output_key_prefix}.key"), Path(f"{output_key_prefix}.pub")
    for path in (private, public):
        if path.exists() and not force:
            raise usage_error(f"{path} exists (--force overwrites it)")
    pair = keyfile.generate(password(confirm=True))
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pair.private_pem)
    public.write_bytes(pair.public_pem)
    typer.echo(f"Private key written to {private}")
    typer.echo(f"Public key written to {public}")
