"""The scanner adapter's protections, in process: it refuses to start unprotected, contacts only the
registries on its allow-list, and bounds and expires its job table and layer cache."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from dockyard.api import scanner_adapter as sa
from dockyard.api.scanner_adapter import AdapterConfigError, Job, JobTable, LayerCache, RegistryAllowList
from dockyard.scan.inventory import LayerInventory
from dockyard.scan.vulndb import VulnDB

SECRET = "Bearer s3cret"
DIGEST = "sha256:" + "0" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(sa.time, "monotonic", c)
    return c


@pytest.fixture
def db(tmp_path: Path) -> Iterator[VulnDB]:
    vdb = VulnDB(tmp_path / "vulndb")
    yield vdb
    vdb.close()


class FakeRemote:
    """Stands in for RemoteImage: records whom it would contact; blocks until released."""

    contacted: list[str] = []
    release = threading.Event()

    def __init__(
        self, url: str, repository: str, reference: str, authorization: str | None = None, client: Any = None
    ) -> None:
        FakeRemote.contacted.append(url)

    def images(self, platform: str | None = None) -> list[Any]:
        FakeRemote.release.wait(30)
        raise ValueError("no image here")

    def close(self) -> None:
        pass


@pytest.fixture
def fake_remote(monkeypatch: pytest.MonkeyPatch) -> type[FakeRemote]:
    FakeRemote.contacted = []
    FakeRemote.release = threading.Event()
    monkeypatch.setattr(sa, "RemoteImage", FakeRemote)
    yield FakeRemote
    FakeRemote.release.set()


def scan_body(url: str) -> dict[str, Any]:
    return {"registry": {"url": url}, "artifact": {"repository": "team/app", "digest": DIGEST}}


def test_refuses_to_start_without_authorization_or_allow_list(db: VulnDB) -> None:
    with pytest.raises(AdapterConfigError, match="authorization"):
        sa.create_adapter_app(db, None, allowed_registries=["registry.example.com"])
    with pytest.raises(AdapterConfigError, match="allow-list"):
        sa.create_adapter_app(db, SECRET, allowed_registries=[])
    with pytest.raises(AdapterConfigError, match="not a registry"):
        sa.create_adapter_app(db, SECRET, allowed_registries=["ftp://x"])
    # Without a check only when asked for explicitly.
    sa.create_adapter_app(db, None, allowed_registries=["registry.example.com"], allow_anonymous=True)


def test_the_cli_refuses_to_start_without_authorization(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dockyard.cli import app

    result = CliRunner().invoke(
        app, ["scanner-adapter", "--vulndb", str(tmp_path), "--allow-registry", "r.example"], env={}
    )
    assert result.exit_code == 2 and "--authorization" in result.output


def test_registries_off_the_allow_list_are_refused_and_never_contacted(
    db: VulnDB, fake_remote: type[FakeRemote]
) -> None:
    app = sa.create_adapter_app(db, SECRET, allowed_registries=["registry.example.com:5000", "https://harbor.example"])
    with TestClient(app) as client:
        headers = {"Authorization": SECRET}
        assert (
            client.post("/api/v1/scan", json=scan_body("http://registry.example.com:5000"), headers={}).status_code
            == 401
        )
        assert client.post("/api/v1/scan", json=scan_body("http://registry.example.com:5000")).status_code == 401
        for url in (
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.1:5000",
            "http://registry.example.com:5001",  # another port of an allowed host
            "http://harbor.example",  # the allowed URL is https only
            "https://harbor.example.evil.test",
            "http://user:pw@registry.example.com:5000",
            "file:///etc/passwd",
        ):
            refused = client.post("/api/v1/scan", json=scan_body(url), headers=headers)
            assert refused.status_code == 403, url
            assert refused.headers["content-type"].startswith(sa.harbor.ERROR) and refused.json()["error"]["message"]
        for url in ("http://REGISTRY.example.com:5000", "https://harbor.example/", "https://harbor.example:443"):
            assert client.post("/api/v1/scan", json=scan_body(url), headers=headers).status_code == 202, url
    assert all("example.com:5000" in u.lower() or "harbor.example" in u for u in fake_remote.contacted)
    assert not any("169.254" in u or "127.0.0.1" in u for u in fake_remote.contacted)


def test_allow_list_entries() -> None:
    allow = RegistryAllowList(["Registry.Example", "10.0.0.5:5000", "https://harbor.example/reg"])
    assert allow.allows("http://registry.example:1234") and allow.allows("https://registry.example")
    assert allow.allows("http://10.0.0.5:5000") and not allow.allows("http://10.0.0.5")
    assert allow.allows("https://harbor.example/reg") and allow.allows("https://harbor.example/reg/sub")
    assert not allow.allows("https://harbor.example/regx") and not allow.allows("https://harbor.example")
    assert not allow.allows("http://registry.example:notaport") and not allow.allows("registry.example")


def test_a_full_job_table_answers_503_and_finished_jobs_make_room(
    db: VulnDB, fake_remote: type[FakeRemote], clock: Clock
) -> None:
    table = JobTable(max_jobs=1, ttl=60)
    app = sa.create_adapter_app(db, SECRET, allowed_registries=["r.example"], jobs=table)
    headers = {"Authorization": SECRET}
    with TestClient(app) as client:
        first = client.post("/api/v1/scan", json=scan_body("http://r.example"), headers=headers)
        assert first.status_code == 202
        busy = client.post("/api/v1/scan", json=scan_body("http://r.example"), headers=headers)
        assert busy.status_code == 503 and busy.headers["retry-after"]
        fake_remote.release.set()
        job = table.get(first.json()["id"])
        assert job is not None and job.done.wait(30)
        report = client.get(f"/api/v1/scan/{first.json()['id']}/report", headers=headers)
        assert report.status_code == 500  # the (fake) scan failed, and its report says so
        # The finished job gives way to a new one; its report is then gone.
        second = client.post("/api/v1/scan", json=scan_body("http://r.example"), headers=headers)
        assert second.status_code == 202
        assert client.get(f"/api/v1/scan/{first.json()['id']}/report", headers=headers).status_code == 404
        assert len(table) == 1


def test_finished_jobs_expire(clock: Clock) -> None:
    table = JobTable(max_jobs=10, ttl=60)
    running, finished = Job({}), Job({})
    finished.finished_at = clock.now
    finished.done.set()
    ids = table.add(running), table.add(finished)
    assert all(ids) and len(table) == 2
    clock.now += 61
    assert table.get(ids[1]) is None  # expired
    assert table.get(ids[0]) is running  # still running: kept


def test_layer_cache_is_bounded_and_expires(clock: Clock) -> None:
    cache = LayerCache(maxsize=2, ttl=100)
    a, b, c = LayerInventory(), LayerInventory(), LayerInventory()
    cache["a"], cache["b"] = a, b
    assert cache.get("a") is a  # a used: b is now the least recently used
    cache["c"] = c
    assert len(cache) == 2 and cache.get("b") is None and cache.get("c") is c
    clock.now += 101
    assert cache.get("a") is None and cache.get("c") is None


def test_the_registry_side_takes_the_adapter_credential_as_a_secret_setting_too() -> None:
    from pydantic import SecretStr

    from dockyard.services.scanning.external import HarborAdapterScanner

    for value in (SECRET, SecretStr(SECRET)):
        scanner = HarborAdapterScanner("http://adapter.test", "http://r.test", lambda repo: "", value)
        assert scanner.headers == {"Authorization": SECRET}
    assert HarborAdapterScanner("http://adapter.test", "http://r.test", lambda repo: "").headers == {}


def test_bad_scan_bodies_are_400_not_500(db: VulnDB, fake_remote: type[FakeRemote]) -> None:
    """A body nested far beyond Python's recursion limit, a huge integer, garbage: 400, nothing queued."""
    app = sa.create_adapter_app(db, SECRET, allowed_registries=["registry.example.com:5000"])
    with TestClient(app) as client:
        headers = {"Authorization": SECRET, "Content-Type": "application/json"}
        for body in (b"[" * 100_000 + b"]" * 100_000, b'{"registry": ' + b"9" * 5000 + b"}", b"\xff{", b""):
            answer = client.post("/api/v1/scan", content=body, headers=headers)
            assert answer.status_code == 400, body[:20]
    assert fake_remote.contacted == []
