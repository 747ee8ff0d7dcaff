"""cosign key files (services/trust/keyfile.py) and image references (clients/registry.py)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from dockyard.clients.cosign import sign_payload
from dockyard.clients.registry import Reference
from dockyard.services.trust import keyfile
from dockyard.services.trust.formats.keys import load_public_key, verify_any
from tests.support.signatures import KEY_KINDS, new_key


def test_encrypted_key_round_trips_and_refuses_a_wrong_password() -> None:
    pair = keyfile.generate(b"pw")
    key = keyfile.load_private_key(pair.private_pem, b"pw")
    assert keyfile.public_pem(key) == pair.public_pem
    with pytest.raises(keyfile.KeyFileError, match="wrong password"):
        keyfile.load_private_key(pair.private_pem, b"other")
    # cosign before v2 named the same contents differently.
    legacy = pair.private_pem.replace(b"SIGSTORE", b"COSIGN")
    assert keyfile.public_pem(keyfile.load_private_key(legacy, b"pw")) == pair.public_pem


def test_tampered_or_costly_key_files_are_refused() -> None:
    import base64
    import json

    pair = keyfile.generate(b"pw")
    lines = pair.private_pem.decode().strip().splitlines()
    document = json.loads(base64.b64decode("".join(lines[1:-1])))
    document["kdf"]["params"]["N"] = 1 << 24  # would take gigabytes
    body = base64.b64encode(json.dumps(document).encode()).decode()
    costly = f"{lines[0]}\n{body}\n{lines[-1]}\n".encode()
    with pytest.raises(keyfile.KeyFileError, match="scrypt"):
        keyfile.load_private_key(costly, b"pw")
    with pytest.raises(keyfile.KeyFileError):
        keyfile.load_private_key(b"not a pem", b"pw")


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_plain_pem_keys_sign_what_the_verifier_accepts(kind: str) -> None:
    key = new_key(kind)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    loaded = keyfile.load_private_key(pem, None)
    public = load_public_key(keyfile.public_pem(loaded))
    assert verify_any(public, sign_payload(loaded, b"payload"), b"payload")
    assert not verify_any(public, sign_payload(loaded, b"payload"), b"another payload")


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest", "name"),
    [
        ("127.0.0.1:5000/team/app:v1", "127.0.0.1:5000", "team/app", "v1", None, "127.0.0.1:5000/team/app"),
        ("localhost/app", "localhost", "app", "latest", None, "localhost/app"),
        ("registry.example/a/b/c@sha256:" + "a" * 64, "registry.example", "a/b/c", None, "sha256:" + "a" * 64, None),
        ("busybox", "index.docker.io", "library/busybox", "latest", None, "index.docker.io/library/busybox"),
        ("docker.io/team/app:1.0", "index.docker.io", "team/app", "1.0", None, None),
        ("reg:443/app:v1@sha256:" + "b" * 64, "reg:443", "app", "v1", "sha256:" + "b" * 64, None),
    ],
)
def test_reference_parsing(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None, name: str | None
) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    if name:
        assert ref.name == name


@pytest.mark.parametrize("text", ["Upper/Case", "reg/app@sha256:short", "reg/app:bad tag", "", "reg/"])
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Reference.parse(text)
