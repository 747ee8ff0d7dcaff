"""POST ?digest= (a monolithic upload) is UploadService.monolithic fed the request body: the blob is
stored as the service stores it, and a client that goes away mid-body leaves no session behind."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from dockyard.db import schema as s
from dockyard.services.registry.uploads import UploadService
from tests.api.conftest import ADMIN, Registry, sha256

BIG = b"0123456789abcdef" * (600 * 1024)  # ~9.4 MiB: three of the HTTP layer's 4 MiB batches


def test_the_handler_is_the_service(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, str | None]] = []
    real = UploadService.monolithic

    def spy(self: UploadService, name: str, digest: str, chunks: Any, owner: str | None = None) -> int:
        calls.append((name, digest, owner))
        return real(self, name, digest, chunks, owner)

    monkeypatch.setattr(UploadService, "monolithic", spy)
    r = registry.request("POST", "/v2/a/blobs/uploads/", params={"digest": sha256(BIG)}, content=BIG)
    assert r.status_code == 201, r.text
    assert calls == [("a", sha256(BIG), "admin")]
    assert registry.request("GET", f"/v2/a/blobs/{sha256(BIG)}").content == BIG


def test_a_client_gone_mid_body_leaves_no_session(registry: Registry) -> None:
    app = registry.http.app
    sent: list[dict[str, Any]] = []
    body = [
        {"type": "http.request", "body": BIG[: 5 * 1024 * 1024], "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return body.pop(0) if body else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v2/a/blobs/uploads/",
        "raw_path": b"/v2/a/blobs/uploads/",
        "query_string": f"digest={sha256(BIG)}".encode(),
        "root_path": "",
        "headers": [(b"host", b"registry.test"), (b"authorization", ADMIN["Authorization"].encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("registry.test", 80),
        "state": {},
    }

    async def run() -> None:
        with contextlib.suppress(Exception):  # the server's business: what matters is what stays behind
            await app(scope, receive, send)  # type: ignore[arg-type]

    anyio.run(run)
    with registry.services.db.read() as conn:
        assert conn.execute(sa.select(s.upload_sessions)).first() is None
    assert registry.services.store.stat(sha256(BIG)) is None
