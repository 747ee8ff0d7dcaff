"""`dockyard serve` over HTTPS with a CA the test makes: real clients verify the certificate (no
--tls-verify=false anywhere), a renewed certificate is served after SIGHUP or a file change without
cutting a download begun before, and client certificates are required when a client CA is set."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PATIENCE, Server, require_tool, run, running_server
from tests.e2e.layouts import build_image, descriptor
from tests.support.http import TIMEOUT
from tests.support.tls import issue, make_tls_files, serial

pytestmark = pytest.mark.e2e


def tls_env(folder: Path, client_ca: Path | None = None, interval: float = 0) -> dict[str, str]:
    env = {
        "DOCKYARD_TLS_CERT_FILE": str(folder / "server.pem"),
        "DOCKYARD_TLS_KEY_FILE": str(folder / "server.key"),
        "DOCKYARD_TLS_RELOAD_INTERVAL_SECONDS": str(interval),
    }
    if client_ca:
        env["DOCKYARD_TLS_CLIENT_CA_FILE"] = str(client_ca)
    return env


def trusting(ca: Path, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client:
        ctx.load_cert_chain(*client)
    return ctx


@contextlib.contextmanager
def https_server(
    tmp: Path, engine: str = "sqlite", interval: float = 0, client_ca: bool = False, server: str = "granian"
) -> Iterator[tuple[Server, Path]]:
    """A TLS server and the folder of its CA (ca.pem) and files; with `client_ca`, clients need client.pem."""
    certs = tmp / "certs"
    certs.mkdir()
    ca, _, _ = make_tls_files(certs)
    client = issue(certs, "client", ["tester"], client=True) if client_ca else None
    env = {**tls_env(certs, ca if client_ca else None, interval), "DOCKYARD_SERVER": server}
    with running_server(tmp / "data", engine, env, verify=trusting(ca, client)) as srv:
        yield srv, certs


def served_serial(host: str, ca: Path) -> int:
    """The serial number of the certificate a new TLS connection to `host` is shown (verified)."""
    address, port = host.rsplit(":", 1)
    with (
        socket.create_connection((address, int(port)), timeout=10) as raw,
        trusting(ca).wrap_socket(raw, server_hostname=address) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return serial(der)


def wait_for_serial(host: str, ca: Path, wanted: int) -> None:
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            if served_serial(host, ca) == wanted:
                return
        except OSError:  # refused, or reset/EOF from a retiring worker's backlog (granian, see below)
            REFUSED.append(host)
        assert time.monotonic() < deadline, "the new certificate was never served"
        time.sleep(0.2)


REFUSED: list[str] = []


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    with https_server(tmp_path_factory.mktemp("tls-server")) as pair:
        yield pair


@pytest.fixture(scope="module")
def cert_dir(tls_server: tuple[Server, Path]) -> Path:
    """The folder skopeo's --*-cert-dir and podman's --cert-dir read: CA certificates as *.crt."""
    folder = tls_server[1] / "client-dir"
    folder.mkdir(exist_ok=True)
    shutil.copy(tls_server[1] / "ca.pem", folder / "ca.crt")
    return folder


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls-layout") / "images"
    build_image(path, "app", [{"etc/app.conf": b"tls=1\n"}, {"usr/bin/tool": b"#!/bin/sh\necho tls\n" * 50}])
    return path


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(require_tool("skopeo"), "--insecure-policy", *args, check=check)


def test_plain_http_and_unknown_ca_are_refused(tls_server: tuple[Server, Path], tmp_path: Path) -> None:
    srv, _ = tls_server
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{srv.host}/v2/", timeout=10)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{srv.host}/v2/", timeout=10)  # the system's CAs do not know the test CA
    r = httpx.get(f"https://{srv.host}/v2/", verify=srv.verify or True, timeout=TIMEOUT)
    assert r.status_code == 401
    # Served directly over TLS, the token realm is https as well.
    assert f'realm="https://{srv.host}/token"' in r.headers["www-authenticate"]


def test_skopeo_push_and_pull_verifying_the_certificate(
    tls_server: tuple[Server, Path], cert_dir: Path, layout: Path, tmp_path: Path
) -> None:
    srv, _ = tls_server
    ref = f"docker://{srv.host}/team/tls:v1"
    skopeo("copy", "--dest-cert-dir", str(cert_dir), "--dest-creds", srv.creds, f"oci:{layout}:app", ref)
    out = tmp_path / "out"
    skopeo("copy", "--src-cert-dir", str(cert_dir), "--src-creds", srv.creds, ref, f"oci:{out}:v1")
    assert descriptor(out, "v1")["digest"] == descriptor(layout, "app")["digest"]
    # Without the CA, skopeo verifies against the system's and refuses.
    refused = skopeo("copy", "--src-creds", srv.creds, ref, f"oci:{tmp_path / 'no'}:v1", check=False)
    assert refused.returncode != 0 and "certificate" in refused.stderr.lower()


@pytest.fixture
def podman_stores() -> Iterator[list[Path]]:
    made = [Path(tempfile.mkdtemp(prefix="dy-tls-", dir="/tmp")) for _ in range(2)]  # podman: short runroot
    yield made
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def podman(store: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(
        require_tool("podman"),
        "--storage-driver",
        "vfs",
        "--root",
        str(store / "root"),
        "--runroot",
        str(store / "run"),
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
        *args,
        check=check,
    )


def test_podman_push_and_pull_verifying_the_certificate(
    tls_server: tuple[Server, Path], cert_dir: Path, layout: Path, podman_stores: list[Path]
) -> None:
    srv, _ = tls_server
    a, b = podman_stores
    podman(a, "pull", f"oci:{layout}:app")
    image_id = podman(a, "images", "--format", "{{.ID}}", "--no-trunc").stdout.split()[0]
    ref = f"{srv.host}/team/podman-tls:v1"
    podman(a, "push", "--cert-dir", str(cert_dir), "--creds", srv.creds, image_id, ref)
    podman(b, "pull", "--cert-dir", str(cert_dir), "--creds", srv.creds, ref)
    pulled = podman(b, "image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    assert pulled.removeprefix("sha256:") == image_id.removeprefix("sha256:")


@pytest.fixture
def containerd() -> Iterator[str]:
    """A containerd daemon of the test's own (root, state and socket in a temporary folder): its address."""
    binary = require_tool("containerd")
    folder = Path(tempfile.mkdtemp(prefix="dy-ctr-", dir="/tmp"))  # a unix socket path must stay short
    address = str(folder / "c.sock")
    config = folder / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{folder / "root"}"\n'
        f'state = "{folder / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{address}"\n'
        f'[ttrpc]\n  address = "{address}.ttrpc"\n'
        # No metrics or debug listeners: nothing on a TCP port.
    )
    log = open(folder / "containerd.log", "wb")  # noqa: SIM115 -- closed below, after the daemon
    proc = subprocess.Popen([binary, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + PATIENCE
        ctr = require_tool("ctr")
        while subprocess.run([ctr, "--address", address, "version"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"containerd did not start:\n{(folder / 'containerd.log').read_text()}")
            time.sleep(0.2)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_containerd_pull_and_push_with_hosts_toml(
    tls_server: tuple[Server, Path], cert_dir: Path, layout: Path, containerd: str, tmp_path: Path
) -> None:
    srv, certs = tls_server
    skopeo(
        "copy",
        "--dest-cert-dir",
        str(cert_dir),
        "--dest-creds",
        srv.creds,
        f"oci:{layout}:app",
        f"docker://{srv.host}/team/ctr:v1",
    )
    hosts_dir = tmp_path / "certs.d"
    (hosts_dir / srv.host).mkdir(parents=True)
    (hosts_dir / srv.host / "hosts.toml").write_text(
        f'server = "https://{srv.host}"\n\n'
        f'[host."https://{srv.host}"]\n'
        '  capabilities = ["pull", "resolve", "push"]\n'
        f'  ca = "{certs / "ca.pem"}"\n'
    )
    ctr = [require_tool("ctr"), "--address", containerd]
    common = ["--hosts-dir", str(hosts_dir), "--user", srv.creds]
    ref = f"{srv.host}/team/ctr:v1"
    run(*ctr, "images", "pull", *common, "--snapshotter", "native", ref)
    listed = run(*ctr, "images", "ls", "--quiet").stdout.split()
    assert ref in listed
    run(*ctr, "images", "push", *common, f"{srv.host}/team/ctr-pushed:v1", ref)
    r = httpx.get(
        f"{srv.url}/v2/team/ctr-pushed/manifests/v1",
        headers={
            "Authorization": f"Bearer {srv.token('repository:team/ctr-pushed:pull')}",
            "Accept": "application/vnd.oci.image.manifest.v1+json",
        },
        verify=srv.verify or True,
        timeout=TIMEOUT,
    )
    assert r.status_code == 200
    assert r.headers["docker-content-digest"] == descriptor(layout, "app")["digest"]
    # With a hosts.toml that does not name the CA, containerd refuses the certificate. (Without any
    # hosts.toml it would fall back to plain HTTP for a loopback address, which the server refuses too.)
    strict_dir = tmp_path / "strict.d"
    (strict_dir / srv.host).mkdir(parents=True)
    (strict_dir / srv.host / "hosts.toml").write_text(
        f'server = "https://{srv.host}"\n\n[host."https://{srv.host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    refused = run(
        *ctr,
        "images",
        "pull",
        "--hosts-dir",
        str(strict_dir),
        "--user",
        srv.creds,
        f"{srv.host}/team/ctr-pushed:v1",
        check=False,
    )
    assert refused.returncode != 0 and "certificate" in (refused.stdout + refused.stderr).lower()


def push_blob(srv: Server, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    auth = {"Authorization": f"Bearer {srv.token(f'repository:{repo}:pull,push')}"}
    r = httpx.post(
        f"{srv.url}/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers=auth,
        verify=srv.verify or True,
        timeout=120,
    )
    assert r.status_code == 201, r.text
    return digest


@pytest.mark.parametrize(
    ("server", "trigger"), [("granian", "file-change"), ("granian", "sighup"), ("uvicorn", "file-change")]
)
def test_renewed_certificate_is_served_without_cutting_a_download(tmp_path: Path, trigger: str, server: str) -> None:
    interval = 0.2 if trigger == "file-change" else 0
    with https_server(tmp_path, interval=interval, server=server) as (srv, certs):
        data = os.urandom(48 * 1024 * 1024)  # far more than socket buffers: the download stays in flight
        digest = push_blob(srv, "team/big", data)
        old = served_serial(srv.host, certs / "ca.pem")
        auth = {"Authorization": f"Bearer {srv.token('repository:team/big:pull')}"}
        with (
            httpx.Client(verify=srv.verify or True, timeout=120) as client,
            client.stream("GET", f"{srv.url}/v2/team/big/blobs/{digest}", headers=auth) as download,
        ):
            assert download.status_code == 200
            chunks = download.iter_bytes()
            received = [next(chunks)]
            new_cert, _ = issue(certs, "server")
            assert serial(new_cert) != old
            if trigger == "sighup":
                os.kill(srv.pid, signal.SIGHUP)
            wait_for_serial(srv.host, certs / "ca.pem", serial(new_cert))
            received.extend(chunks)  # the connection begun before the reload carries on to the end
        assert hashlib.sha256(b"".join(received)).hexdigest() == digest.removeprefix("sha256:")
        # And new requests work on the new certificate.
        assert httpx.get(f"{srv.url}/readyz", verify=srv.verify or True, timeout=TIMEOUT).status_code == 200
        if server == "uvicorn":
            # Its workers share one listening socket and the old one retires only once the new one is
            # ready: no connection is refused during the reload. (granian's workers listen each on their
            # own socket and the old one retires after a fixed interval: README, TLS.)
            assert srv.host not in REFUSED


def test_files_that_do_not_load_keep_the_old_certificate(tmp_path: Path) -> None:
    with https_server(tmp_path, interval=0.2) as (srv, certs):
        old = served_serial(srv.host, certs / "ca.pem")
        (certs / "server.key").write_bytes(b"not a key\n")
        os.kill(srv.pid, signal.SIGHUP)
        # Refused with an error in the log; the workers still serve the old certificate.
        deadline = time.monotonic() + PATIENCE
        while "reload refused" not in srv.log.read_text():
            assert time.monotonic() < deadline, srv.log.read_text()
            time.sleep(0.2)
        assert served_serial(srv.host, certs / "ca.pem") == old
        # Once the files are right again, the watcher picks them up.
        new_cert, _ = issue(certs, "server")
        wait_for_serial(srv.host, certs / "ca.pem", serial(new_cert))


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_client_certificate_is_required_when_a_client_ca_is_set(tmp_path: Path, server: str) -> None:
    with https_server(tmp_path, client_ca=True, server=server) as (srv, certs):
        ca = certs / "ca.pem"
        with_cert = httpx.get(
            f"{srv.url}/v2/", verify=trusting(ca, (certs / "client.pem", certs / "client.key")), timeout=TIMEOUT
        )
        assert with_cert.status_code == 401  # TLS admitted the client; registry authentication still applies
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{srv.url}/v2/", verify=trusting(ca), timeout=10)
        # A certificate from another CA is refused as well.
        other = tmp_path / "other"
        other.mkdir()
        make_tls_files(other)
        stranger = issue(other, "client", ["stranger"], client=True)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{srv.url}/v2/", verify=trusting(ca, stranger), timeout=10)
        # skopeo with the client certificate in its cert dir (client.cert/client.key) gets through.
        cert_dir = tmp_path / "skopeo-certs"
        cert_dir.mkdir()
        shutil.copy(ca, cert_dir / "ca.crt")
        shutil.copy(certs / "client.pem", cert_dir / "client.cert")
        shutil.copy(certs / "client.key", cert_dir / "client.key")
        tags = skopeo(
            "list-tags", "--cert-dir", str(cert_dir), "--creds", srv.creds, f"docker://{srv.host}/x/y", check=False
        )
        assert "certificate" not in tags.stderr.lower(), tags.stderr  # past TLS: the registry answers (unknown repo)
        assert "unknown" in tags.stderr.lower() or "not found" in tags.stderr.lower(), tags.stderr
