"""Behind a TLS-terminating proxy: X-Forwarded-Proto/Host name the token realm only from a trusted proxy;
Location headers stay paths, which clients resolve against the URL they used (behind any proxy)."""

from __future__ import annotations

import hashlib

import pytest
from starlette.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.wiring import Services
from tests.api.conftest import ADMIN

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com"}


def client(services: Services, peer: str, **settings: object) -> TestClient:
    services.settings = services.settings.model_copy(update={"trusted_proxies": ["10.0.0.0/8"], **settings})
    return TestClient(create_app(services), base_url="http://internal:5000", client=(peer, 1234))


def realm(c: TestClient, headers: dict[str, str]) -> str:
    r = c.get("/v2/", headers=headers)
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    return challenge.split('realm="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("10.0.0.5", FORWARDED, "https://registry.example.com/token"),  # the trusted proxy's view
        ("10.0.0.5", {"X-Forwarded-Proto": "https"}, "https://internal:5000/token"),  # proto only: Host kept
        (
            "10.0.0.5",
            {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "a.example, b"},
            "https://a.example/token",
        ),
        ("10.0.0.5", {}, "http://internal:5000/token"),
        ("192.0.2.50", FORWARDED, "http://internal:5000/token"),  # an untrusted peer's headers are ignored
        # Nonsense from a trusted proxy is ignored rather than put into the challenge.
        ("10.0.0.5", {"X-Forwarded-Proto": "gopher", "X-Forwarded-Host": 'evil"/x'}, "http://internal:5000/token"),
    ],
)
def test_token_realm_follows_forwarded_headers_from_trusted_proxies_only(
    services: Services, peer: str, headers: dict[str, str], expected: str
) -> None:
    with client(services, peer) as c:
        assert realm(c, headers) == expected


def test_public_url_wins_over_forwarded_headers(services: Services) -> None:
    with client(services, "10.0.0.5", public_url="https://public.example/") as c:
        assert realm(c, FORWARDED) == "https://public.example/token"


@pytest.mark.parametrize("peer", ["10.0.0.5", "192.0.2.50"])
def test_location_headers_are_paths_whoever_forwards(services: Services, peer: str) -> None:
    data = b"layer"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with client(services, peer) as c:
        started = c.post("/v2/p/app/blobs/uploads/", headers={**ADMIN, **FORWARDED})
        assert started.status_code == 202 and started.headers["location"].startswith("/v2/p/app/blobs/uploads/")
        done = c.put(
            started.headers["location"], params={"digest": digest}, content=data, headers={**ADMIN, **FORWARDED}
        )
        assert done.status_code == 201 and done.headers["location"] == f"/v2/p/app/blobs/{digest}"
