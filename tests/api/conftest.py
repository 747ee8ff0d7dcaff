"""An in-process registry (the real ASGI app, services, database and filesystem storage) per test,
on SQLite and on PostgreSQL, driven over HTTP semantics by Starlette's TestClient."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.config import Settings
from dockyard.db.engine import Database
from dockyard.oci import mediatypes as mt
from dockyard.wiring import Services, build_services, prepare

ADMIN_PASSWORD = "s3cret-admin"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ADMIN = basic("admin", ADMIN_PASSWORD)


class Registry:
    """Small client helpers; every call goes through the real HTTP API."""

    def __init__(self, client: TestClient, services: Services) -> None:
        self.http = client
        self.services = services

    def request(self, method: str, url: str, auth: bool = True, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if auth:
            headers = {**ADMIN, **headers}
        return self.http.request(method, url, headers=headers, **kw)

    def push_blob(self, name: str, data: bytes) -> str:
        d = sha256(data)
        r = self.request("POST", f"/v2/{name}/blobs/uploads/", params={"digest": d}, content=data)
        assert r.status_code == 201, r.text
        return d

    def image(
        self,
        name: str,
        layers: list[bytes],
        config: bytes = b'{"architecture":"amd64","os":"linux"}',
        media_type: str = mt.OCI_MANIFEST,
        **extra: Any,
    ) -> bytes:
        cfg = self.push_blob(name, config)
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": mt.OCI_CONFIG
                if media_type == mt.OCI_MANIFEST
                else "application/vnd.docker.container.image.v1+json",
                "digest": cfg,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": self.push_blob(name, layer),
                    "size": len(layer),
                }
                for layer in layers
            ],
        }
        doc.update(extra)
        return json.dumps(doc).encode()

    def put_manifest(self, name: str, ref: str, body: bytes, media_type: str = mt.OCI_MANIFEST) -> httpx.Response:
        return self.request("PUT", f"/v2/{name}/manifests/{ref}", content=body, headers={"Content-Type": media_type})


def make_settings(tmp_path: Path, database: Database) -> Settings:
    # No background scanning and no scheduled database update (tests that want them run the scanner or
    # the update themselves: an app's loop would otherwise update the empty database at its start, on
    # its own thread, in the middle of what a test checks), no background signature verification, and no
    # feeds to download. An unpaced collector: the default pacer starts at a 5% duty, sleeping 19 times
    # as long as each transaction took (seconds per collection on a busy PostgreSQL); pacing is tested
    # with an injected clock and sleep (lifecycle/test_gc_pacing.py) and in its default form by the e2e
    # servers.
    return Settings(
        data_dir=tmp_path,
        database_url=database.url,
        admin_password=ADMIN_PASSWORD,
        fsync=False,
        vulndb_sources=[],
        vulndb_update_interval_seconds=0,
        scanner_enabled=False,
        signature_interval_seconds=0,  # signatures are verified when a test runs the queue
        gc_pace=1.0,
    )


# DOCKYARD_TEST_STORAGE=s3 runs every API test on the S3 driver (a moto_server bucket per test).
STORAGE = os.environ.get("DOCKYARD_TEST_STORAGE", "filesystem")


@pytest.fixture
def services(request: pytest.FixtureRequest, tmp_path: Path, database: Database) -> Iterator[Services]:
    settings = make_settings(tmp_path, database)
    if STORAGE == "s3":
        s3 = request.getfixturevalue("s3_server")
        env = s3.env(s3.new_bucket(), "registry")
        settings = settings.model_copy(
            update={"storage_url": env["DOCKYARD_STORAGE_URL"], "s3_endpoint_url": s3.endpoint_url}
        )
        mp = request.getfixturevalue("monkeypatch")
        for key, value in env.items():  # the credentials, for boto3's standard chain
            mp.setenv(key, value)
    svc = build_services(settings, db=database)
    prepare(svc)
    yield svc


@pytest.fixture
def registry(services: Services) -> Iterator[Registry]:
    with TestClient(create_app(services), base_url="http://registry.test") as client:
        yield Registry(client, services)
