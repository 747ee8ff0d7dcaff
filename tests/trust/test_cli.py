"""`dockyard keys generate`, `dockyard sign` and `dockyard verify` against a real Dockyard server (the
`dockyard serve` process, reached over HTTP with its token dance). The pushed signature is checked
three ways: by `dockyard verify`, by the verifier library, and against an independent reconstruction of
the bytes cosign writes (payload, config, manifest) and a direct ECDSA check with `cryptography`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.services.trust import formats, keyfile
from dockyard.services.trust.model import (
    SignatureArtifact,
    SignatureFormat,
    SignatureState,
    TrustedKey,
    TrustMaterial,
)
from tests.e2e.conftest import DOCKYARD, Server, running_server
from tests.support.signatures import cosign_config, cosign_payload, sha256_digest
from tests.support.tls import make_tls_files

pytestmark = pytest.mark.e2e
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("sign-server"), "sqlite") as srv:
        yield srv


def _tls(server: Server) -> ssl.SSLContext | bool:
    return server.verify or True


def _auth(server: Server, repo: str, actions: str = "pull,push") -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(f'repository:{repo}:{actions}')}"}


def push_image(server: Server, repo: str, tag: str, content: bytes) -> str:
    """An image (one layer, a config) pushed with plain HTTP calls; its manifest digest."""
    headers = _auth(server, repo)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    for blob in (config, content):
        started = httpx.post(f"{server.url}/v2/{repo}/blobs/uploads/", headers=headers, verify=_tls(server))
        assert started.status_code == 202, started.text
        location = httpx.URL(server.url).join(started.headers["location"])
        done = httpx.put(
            location, params={"digest": sha256_digest(blob)}, content=blob, headers=headers, verify=_tls(server)
        )
        assert done.status_code == 201, done.text
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256_digest(content),
                    "size": len(content),
                }
            ],
        }
    ).encode()
    r = httpx.put(
        f"{server.url}/v2/{repo}/manifests/{tag}",
        content=manifest,
        headers={**headers, "Content-Type": OCI_MANIFEST},
        verify=_tls(server),
    )
    assert r.status_code == 201, r.text
    return sha256_digest(manifest)


def fetch(server: Server, repo: str, path: str) -> httpx.Response:
    r = httpx.get(f"{server.url}/v2/{repo}/{path}", headers={**_auth(server, repo, "pull"), "Accept": OCI_MANIFEST})
    r.raise_for_status()
    return r


def dockyard(server: Server | None, *args: str, password: str = "secret") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COSIGN_PASSWORD": password}
    if server is not None:
        env["REGISTRY_USERNAME"], env["REGISTRY_PASSWORD"] = server.username, server.password
    return subprocess.run([str(DOCKYARD), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def key_pair(tmp_path: Path) -> tuple[Path, Path]:
    done = dockyard(None, "keys", "generate", "--output-key-prefix", str(tmp_path / "cosign"))
    assert done.returncode == 0, done.stderr
    return tmp_path / "cosign.key", tmp_path / "cosign.pub"


def test_keys_generate_writes_cosigns_formats(key_pair: tuple[Path, Path], server: Server) -> None:
    private, public = key_pair
    assert private.read_text().startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert private.stat().st_mode & 0o777 == 0o600
    # Read back independently: PEM body → JSON (scrypt, nacl/secretbox) as go-securesystemslib writes it.
    body = json.loads(base64.b64decode("".join(private.read_text().strip().splitlines()[1:-1])))
    assert body["kdf"]["name"] == "scrypt" and body["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert body["cipher"]["name"] == "nacl/secretbox" and len(base64.b64decode(body["cipher"]["nonce"])) == 24
    import nacl.secret
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    derived = Scrypt(salt=base64.b64decode(body["kdf"]["salt"]), length=32, n=65536, r=8, p=1).derive(b"secret")
    der = nacl.secret.SecretBox(derived).decrypt(
        base64.b64decode(body["ciphertext"]), base64.b64decode(body["cipher"]["nonce"])
    )
    key = serialization.load_der_private_key(der, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    pub = serialization.load_pem_public_key(public.read_bytes())
    assert pub.public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    with pytest.raises(keyfile.KeyFileError):
        keyfile.load_private_key(private.read_bytes(), b"wrong")
    # Existing files are not overwritten.
    again = dockyard(server, "keys", "generate", "--output-key-prefix", str(private.with_suffix("")))
    assert again.returncode == 2 and "exists" in again.stderr


def test_sign_then_verify_round_trip(server: Server, key_pair: tuple[Path, Path], tmp_path: Path) -> None:
    private, public = key_pair
    repo = "team/signed"
    digest = push_image(server, repo, "v1", b"layer one")
    image = f"{server.host}/{repo}:v1"

    unsigned = dockyard(server, "verify", image, "--key", str(public), "--plain-http")
    assert unsigned.returncode == 1 and "no cosign signatures" in unsigned.stderr

    signed = dockyard(server, "sign", image, "--key", str(private), "--plain-http")
    assert signed.returncode == 0, signed.stderr
    assert digest in signed.stdout

    verified = dockyard(server, "verify", image, "--key", str(public), "--plain-http")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "verified" in verified.stdout

    # The stored objects, rebuilt independently from the cosign spec and go-containerregistry's encoding.
    tag = "sha256-" + digest.split(":")[1] + ".sig"
    sig_response = fetch(server, repo, f"manifests/{tag}")
    stored = sig_response.content
    document = json.loads(stored)
    [layer] = document["layers"]
    payload = fetch(server, repo, f"blobs/{layer['digest']}").content
    assert payload == cosign_payload(digest, docker_reference=f"{server.host}/{repo}")
    config = fetch(server, repo, f"blobs/{document['config']['digest']}").content
    assert config == cosign_config([sha256_digest(payload)])
    signature = layer["annotations"]["dev.cosignproject.cosign/signature"]
    expected = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        f'"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{len(config)},'
        f'"digest":"{sha256_digest(config)}"}},'
        f'"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":{len(payload)},'
        f'"digest":"{sha256_digest(payload)}","annotations":{{"dev.cosignproject.cosign/signature":"{signature}"}}}}]}}'
    ).encode()
    assert stored == expected
    pub = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(base64.b64decode(signature), payload, ec.ECDSA(hashes.SHA256()))  # raises if it does not verify

    # And by the verifier library, as the registry's own discovery will see it.
    assert formats.classify(OCI_MANIFEST, stored, tag) is SignatureFormat.COSIGN
    assert formats.signed_digest(SignatureFormat.COSIGN, stored, tag) == digest
    artifact = SignatureArtifact(SignatureFormat.COSIGN, sha256_digest(stored), stored, {layer["digest"]: payload})
    trust = TrustMaterial(keys=(TrustedKey("ci", public.read_text()),))
    [verdict] = formats.verify(artifact, digest, trust, time.time())
    assert (verdict.state, verdict.signer) == (SignatureState.VERIFIED, "ci")


def test_second_key_appends_and_same_key_does_not(server: Server, tmp_path: Path) -> None:
    repo = "team/twice"
    digest = push_image(server, repo, "v1", b"layer two")
    keys = []
    for name in ("first", "second"):
        done = dockyard(server, "keys", "generate", "--output-key-prefix", str(tmp_path / name), password="")
        assert done.returncode == 0, done.stderr
        keys.append((tmp_path / f"{name}.key", tmp_path / f"{name}.pub"))
    image = f"{server.host}/{repo}@{digest}"
    for private, _ in [*keys, keys[0]]:
        done = dockyard(server, "sign", image, "--key", str(private), "--plain-http", password="")
        assert done.returncode == 0, done.stderr
    assert "already signed" in done.stdout
    tag = "sha256-" + digest.split(":")[1] + ".sig"
    stored = json.loads(fetch(server, repo, f"manifests/{tag}").content)
    assert len(stored["layers"]) == 2
    config = json.loads(fetch(server, repo, f"blobs/{stored['config']['digest']}").content)
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in stored["layers"]]
    for _, public in keys:
        out = dockyard(server, "verify", image, "--key", str(public), "--plain-http")
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.count("verified") == 1 and out.stdout.count("untrusted") == 1


def test_verify_with_another_key_fails(server: Server, key_pair: tuple[Path, Path], tmp_path: Path) -> None:
    private, _ = key_pair
    repo = "team/other-key"
    push_image(server, repo, "v1", b"layer three")
    image = f"{server.host}/{repo}:v1"
    assert dockyard(server, "sign", image, "--key", str(private), "--plain-http").returncode == 0
    other = dockyard(server, "keys", "generate", "--output-key-prefix", str(tmp_path / "other"))
    assert other.returncode == 0
    out = dockyard(server, "verify", image, "--key", str(tmp_path / "other.pub"), "--plain-http")
    assert out.returncode == 1
    assert "untrusted" in out.stdout


def test_bad_input_is_refused_clearly(server: Server, key_pair: tuple[Path, Path]) -> None:
    private, public = key_pair
    wrong_password = dockyard(
        server, "sign", f"{server.host}/team/x:v1", "--key", str(private), "--plain-http", password="nope"
    )
    assert wrong_password.returncode == 2 and "wrong password" in wrong_password.stderr
    missing_image = dockyard(server, "verify", f"{server.host}/team/absent:v1", "--key", str(public), "--plain-http")
    assert missing_image.returncode == 1 and "does not exist" in missing_image.stderr
    bad_ref = dockyard(server, "verify", "Not A Reference", "--key", str(public))
    assert bad_ref.returncode == 2
    env = {**os.environ, "COSIGN_PASSWORD": "secret"}
    env.pop("REGISTRY_USERNAME", None)
    env.pop("REGISTRY_PASSWORD", None)
    anonymous = subprocess.run(
        [str(DOCKYARD), "sign", f"{server.host}/team/signed:v1", "--key", str(private), "--plain-http"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert anonymous.returncode == 1


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A TLS-serving Dockyard and a skopeo-style cert dir (ca.crt) that trusts it."""
    folder = tmp_path_factory.mktemp("sign-tls")
    ca, cert, key = make_tls_files(folder)
    env = {"DOCKYARD_TLS_CERT_FILE": str(cert), "DOCKYARD_TLS_KEY_FILE": str(key)}
    cert_dir = folder / "cert-dir"
    cert_dir.mkdir()
    shutil.copy(ca, cert_dir / "ca.crt")
    with running_server(folder / "data", "sqlite", env, verify=ssl.create_default_context(cafile=str(ca))) as srv:
        yield srv, cert_dir


def test_sign_and_verify_over_tls_with_a_cert_dir(
    https_server: tuple[Server, Path], key_pair: tuple[Path, Path]
) -> None:
    server, cert_dir = https_server
    private, public = key_pair
    push_image(server, "team/tls", "v1", b"layer over tls")
    image = f"{server.host}/team/tls:v1"
    unknown_ca = dockyard(server, "sign", image, "--key", str(private))
    assert unknown_ca.returncode == 1 and "cannot reach" in unknown_ca.stderr
    signed = dockyard(server, "sign", image, "--key", str(private), "--cert-dir", str(cert_dir))
    assert signed.returncode == 0, signed.stderr
    for options in (["--cert-dir", str(cert_dir)], ["--insecure"]):
        verified = dockyard(server, "verify", image, "--key", str(public), *options)
        assert verified.returncode == 0, verified.stdout + verified.stderr
