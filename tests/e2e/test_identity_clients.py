"""Real clients logging in as a user, a robot and with a personal access token; anonymous pulls of a
public project; refusals on a private one. Set up through the management API, checked in the audit log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PATIENCE, Server, require_tool, run
from tests.e2e.layouts import build_image
from tests.support.http import TIMEOUT

pytestmark = pytest.mark.e2e
oras_client = pytest.importorskip("oras.client")


@pytest.fixture(scope="session")
def small_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("id-layouts") / "images"
    build_image(path, "app", [{"etc/motd": b"hello from acme\n"}])
    return path


def skopeo(*args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return run(require_tool("skopeo"), "--insecure-policy", *args, check=check)


class Api:
    def __init__(self, server: Server) -> None:
        self.http = httpx.Client(
            base_url=f"{server.url}/api/v1", auth=(server.username, server.password), timeout=TIMEOUT
        )

    def __call__(self, method: str, url: str, **kw: object) -> dict:  # type: ignore[type-arg]
        r = self.http.request(method, url, **kw)  # type: ignore[arg-type]
        assert r.status_code < 300, f"{method} {url}: {r.status_code} {r.text}"
        return r.json() if r.content else {}


@pytest.fixture(scope="session")
def people(server: Server) -> dict[str, str]:
    """Credentials (user:secret) of everyone the tests log in as."""
    api = Api(server)
    api("POST", "/projects", json={"name": "acme"})
    api("POST", "/projects", json={"name": "pub", "public": True})
    for name, role in (("dev", "developer"), ("viewer", "guest")):
        api("POST", "/users", json={"username": name, "password": f"{name}-password"})
        api("PUT", f"/projects/acme/members/user/{name}", json={"role": role})
    robot = api("POST", "/robots", json={"name": "builder", "permissions": {"acme": ["pull", "push"]}})
    pat = httpx.post(
        f"{server.url}/api/v1/me/tokens", json={"name": "ci"}, auth=("dev", "dev-password"), timeout=TIMEOUT
    ).json()["secret"]
    return {
        "dev": "dev:dev-password",
        "viewer": "viewer:viewer-password",
        "robot": f"{robot['name']}:{robot['secret']}",
        "pat": f"dev:{pat}",
    }


def push(server: Server, layout: Path, creds: str, repo: str, check: bool = True):  # type: ignore[no-untyped-def]
    return skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", creds, f"oci:{layout}:app", f"docker://{server.host}/{repo}",
        check=check,
    )  # fmt: skip


def inspect(server: Server, repo: str, *creds: str, check: bool = True):  # type: ignore[no-untyped-def]
    return skopeo("inspect", "--tls-verify=false", *creds, f"docker://{server.host}/{repo}", check=check)


def test_skopeo_as_user_robot_and_access_token(server: Server, small_layout: Path, people: dict[str, str]) -> None:
    push(server, small_layout, people["dev"], "acme/app:v1")
    push(server, small_layout, people["robot"], "acme/app:robot")
    push(server, small_layout, people["pat"], "acme/app:pat")
    for who in ("dev", "viewer", "robot", "pat"):
        assert json.loads(inspect(server, "acme/app:v1", "--creds", people[who]).stdout)["Digest"].startswith("sha256:")
    # A guest may pull but not push; the robot only where it is scoped.
    refused = push(server, small_layout, people["viewer"], "acme/app:nope", check=False)
    assert refused.returncode != 0 and ("denied" in refused.stderr.lower() or "unauthorized" in refused.stderr.lower())
    refused = push(server, small_layout, people["robot"], "pub/app:nope", check=False)
    assert refused.returncode != 0


def test_anonymous_pull_of_public_project_and_refusal_on_private(
    server: Server, small_layout: Path, people: dict[str, str]
) -> None:
    push(server, small_layout, server.creds, "pub/app:v1")
    push(server, small_layout, people["dev"], "acme/app:private")
    public = json.loads(inspect(server, "pub/app:v1", "--no-creds").stdout)
    assert public["Digest"].startswith("sha256:")
    private = inspect(server, "acme/app:private", "--no-creds", check=False)
    assert private.returncode != 0 and ("unauthorized" in private.stderr.lower() or "denied" in private.stderr.lower())
    anon_push = skopeo(
        "copy", "--dest-tls-verify=false", "--dest-no-creds", f"oci:{small_layout}:app", f"docker://{server.host}/pub/app:anon",
        check=False,
    )  # fmt: skip
    assert anon_push.returncode != 0


def test_oras_logs_in_as_robot_and_with_access_token(
    server: Server, people: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("release notes\n" * 20)

    def client(creds: str):  # type: ignore[no-untyped-def]
        user, secret = creds.split(":", 1)
        c = oras_client.OrasClient(hostname=server.host, insecure=True)
        c.login(username=user, password=secret, hostname=server.host, config_path=str(tmp_path / "cfg.json"))
        return c

    r = client(people["robot"]).push(target=f"{server.host}/acme/notes:v1", files=["notes.txt"], quiet=True)
    assert r.status_code == 201
    out = tmp_path / "out"
    files = client(people["pat"]).pull(target=f"{server.host}/acme/notes:v1", outdir=str(out))
    assert Path(files[0]).read_text() == "release notes\n" * 20


def test_audit_names_each_identity(server: Server, small_layout: Path, people: dict[str, str]) -> None:
    push(server, small_layout, people["robot"], "acme/audited:v1")
    inspect(server, "acme/audited:v1", "--creds", people["pat"])
    # Pull events are written in batches, within a second, by whichever worker served the pull.
    deadline = time.monotonic() + PATIENCE
    while True:
        events = Api(server)("GET", "/audit", params={"repository": "acme/audited"})["events"]
        seen = {(e["action"], e["actor"], e["actor_kind"]) for e in events}
        if ("pull", "dev", "user") in seen or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ("push", "robot$builder", "robot") in seen
    assert ("pull", "dev", "user") in seen
    assert all(e["source_ip"] == "127.0.0.1" and e["user_agent"] for e in events)
