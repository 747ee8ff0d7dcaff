"""`dockyard sign` and `dockyard verify`: cosign key-based signatures (tag scheme) on images in any
registry, for teams without cosign. The signatures are what `cosign sign --key` writes (without a
transparency-log entry), so `cosign verify --key` reads them (with `--insecure-ignore-tlog`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from dockyard.clients import cosign
from dockyard.clients.registry import Connection, Reference, RegistryClient, RegistryError
from dockyard.commands.common import usage_error
from dockyard.commands.keys import password
from dockyard.services.trust import keyfile
from dockyard.services.trust.formats.keys import UnsupportedKey, load_public_key
from dockyard.services.trust.model import SignatureState, TrustedKey, TrustMaterial

Username = Annotated[str | None, typer.Option(envvar="REGISTRY_USERNAME", help="Registry username.")]
RegistryPassword = Annotated[
    str | None,
    typer.Option(
        "--password",
        envvar="REGISTRY_PASSWORD",
        help="Registry password or token.",
        show_default=False,
    ),
]
CertDir = Annotated[
    Path | None, typer.Option(help="CA certificates (*.crt) and a client certificate (*.cert, *.key), as skopeo.")
]
Insecure = Annotated[bool, typer.Option(help="Do not check the registry's TLS certificate.")]
PlainHttp = Annotated[bool, typer.Option(help="Talk HTTP, not HTTPS, to the registry.")]


def _client(
    ref: Reference, username: str | None, pw: str | None, cert_dir: Path | None, insecure: bool, plain_http: bool
) -> RegistryClient:
    return RegistryClient(ref.registry, Connection(username, pw, plain_http, insecure, cert_dir))


def _reference(image: str) -> Reference:
    try:
        return Reference.parse(image)
    except ValueError as exc:
        raise usage_error(str(exc)) from None


def sign_command(
    image: Annotated[str, typer.Argument(help="The image: registry/repository:tag, or registry/repository@digest.")],
    key: Annotated[Path, typer.Option(help="The private key (cosign.key, or a PEM private key).")],
    username: Username = None,
    password_: RegistryPassword = None,
    cert_dir: CertDir = None,
    insecure: Insecure = False,
    plain_http: PlainHttp = False,
) -> None:
    """Sign an image with a key: push the cosign signature (`sha256-<digest>.sig`) next to it."""
    ref = _reference(image)
    try:
        private = keyfile.load_private_key(key.read_bytes(), password(confirm=False))
    except OSError as exc:
        raise usage_error(f"cannot read {key}: {exc.strerror}") from None
    except keyfile.KeyFileError as exc:
        raise usage_error(f"{key}: {exc}") from None
    try:
        with _client(ref, username, password_, cert_dir, insecure, plain_http) as client:
            result = cosign.sign(client, ref, private)
    except RegistryError as exc:
        typer.echo(f"dockyard: {exc}", err=True)
        raise typer.Exit(1) from None
    state = "signed" if result.added else "already signed with this key"
    typer.echo(f"{result.image}: {state}; signatures at :{result.signature_tag} ({result.signatures} in all)")


def verify_command(
    image: Annotated[str, typer.Argument(help="The image: registry/repository:tag, or registry/repository@digest.")],
    key: Annotated[Path, typer.Option(help="The public key (cosign.pub, PEM).")],
    username: Username = None,
    password_: RegistryPassword = None,
    cert_dir: CertDir = None,
    insecure: Insecure = False,
    plain_http: PlainHttp = False,
) -> None:
    """Verify an image's cosign signatures against a public key. Exit status 0 when at least one
    signature verifies, 1 otherwise; one line per signature either way."""
    ref = _reference(image)
    try:
        pem = key.read_text()
        load_public_key(pem)
    except OSError as exc:
        raise usage_error(f"cannot read {key}: {exc.strerror}") from None
    except (UnsupportedKey, UnicodeDecodeError) as exc:
        raise usage_error(f"{key}: {exc}") from None
    trust = TrustMaterial(keys=(TrustedKey(key.name, pem),))
    try:
        with _client(ref, username, password_, cert_dir, insecure, plain_http) as client:
            digest, verdicts = cosign.verify(client, ref, trust, time.time())
    except RegistryError as exc:
        typer.echo(f"dockyard: {exc}", err=True)
        raise typer.Exit(1) from None
    if not verdicts:
        typer.echo(f"{ref.name}@{digest}: no cosign signatures", err=True)
        raise typer.Exit(1)
    for verdict in verdicts:
        typer.echo(f"{ref.name}@{digest}: signature {verdict.layer_index}: {verdict.state.value}: {verdict.message}")
    if not any(v.state is SignatureState.VERIFIED for v in verdicts):
        raise typer.Exit(1)
