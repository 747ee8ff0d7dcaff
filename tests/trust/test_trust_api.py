"""The trust material API: what is accepted, what is refused (and changes nothing), and that every
change is audited; on SQLite and PostgreSQL. Who may call each endpoint is walked in
tests/access/test_matrix.py (project) and tests/access/test_decisions.py (system-wide)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.services.auth.permissions import Role
from tests.api.conftest import Registry, basic
from tests.support.trust_material import ca_pem, dsa_pem, ec_pem, ed25519_pem, rsa_pem

PROJECT = "team"
KEYS = f"/api/v1/projects/{PROJECT}/trust/keys"
CERTS = f"/api/v1/projects/{PROJECT}/trust/certificates"


@pytest.fixture(autouse=True)
def project(registry: Registry) -> None:
    registry.services.projects.create(PROJECT, creator="admin")


@pytest.mark.parametrize(
    ("make", "algorithm"),
    [
        (lambda: ec_pem(ec.SECP256R1()), "ecdsa-p256"),
        (lambda: ec_pem(ec.SECP384R1()), "ecdsa-p384"),
        (lambda: rsa_pem(2048), "rsa-2048"),
        (ed25519_pem, "ed25519"),
    ],
)
def test_accepted_keys(registry: Registry, make, algorithm: str) -> None:  # type: ignore[no-untyped-def]
    pem = make()
    r = registry.request("POST", KEYS, json={"name": "ci", "public_key": pem})
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["name"], out["scope"], out["algorithm"]) == ("ci", PROJECT, algorithm)
    assert out["fingerprint"].startswith("sha256:") and out["created_by"] == "admin"
    assert registry.request("GET", f"{KEYS}/ci").json() == out
    assert [k["name"] for k in registry.request("GET", KEYS).json()] == ["ci"]


def _keys(reg: Registry) -> list[str]:
    return [k["name"] for k in reg.request("GET", KEYS).json()]


@pytest.mark.parametrize(
    "public_key",
    [
        "not a key",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "",
        "A" * 20_000,  # over the size limit
        "\x00",
    ],
    ids=["text", "bad-der", "empty", "huge", "nul"],
)
def test_malformed_keys_are_refused_and_change_nothing(registry: Registry, public_key: str) -> None:
    r = registry.request("POST", KEYS, json={"name": "ci", "public_key": public_key})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _keys(registry) == []


def test_weak_or_unsupported_keys_are_refused_naming_what_is_accepted(registry: Registry) -> None:
    for pem, says in (
        (rsa_pem(1024), "at least 2048"),
        (ec_pem(ec.SECP521R1()), "P-256 or P-384"),
        (dsa_pem(), "ECDSA P-256/P-384, RSA"),
    ):
        r = registry.request("POST", KEYS, json={"name": "k", "public_key": pem})
        assert r.status_code == 422 and says in r.text, r.text
    assert _keys(registry) == []


def test_names_bodies_and_duplicates(registry: Registry) -> None:
    pem = ec_pem()
    for body in (
        {"name": "Bad Name", "public_key": pem},
        {"name": "x" * 129, "public_key": pem},
        {"name": "ci"},
        {"name": "ci", "public_key": pem, "extra": 1},
        {"name": "ci", "public_key": 5},
    ):
        assert registry.request("POST", KEYS, json=body).status_code == 422, body
    assert registry.request(
        "POST", KEYS, content=b"{not json", headers={"Content-Type": "application/json"}
    ).status_code in (400, 422)
    assert registry.request("POST", KEYS, json={"name": "ci", "public_key": pem}).status_code == 201
    assert registry.request("POST", KEYS, json={"name": "ci", "public_key": ec_pem()}).status_code == 409
    assert registry.request("GET", f"{KEYS}/missing").status_code == 404
    assert registry.request("DELETE", f"{KEYS}/missing").status_code == 404
    assert (
        registry.request("POST", "/api/v1/projects/nope/trust/keys", json={"name": "ci", "public_key": pem}).status_code
        == 404
    )
    assert registry.request("DELETE", f"{KEYS}/ci").status_code == 204
    assert _keys(registry) == []


def test_certificates(registry: Registry) -> None:
    pem = ca_pem("Acme Root")
    body = {"name": "acme", "certificate": pem, "identities": ["x509.subject: C=US, O=Acme, CN=ci", "CN=other"]}
    r = registry.request("POST", CERTS, json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["subject"] == "CN=Acme Root" and out["identities"] == body["identities"] and out["not_after"] > 0
    assert registry.request("GET", CERTS).json() == [out]
    for bad in (
        {"name": "b", "certificate": ec_pem()},  # a key, not a certificate
        {"name": "b", "certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
        {"name": "b", "certificate": "C" * 20_000},
        {"name": "b", "certificate": pem, "identities": [""]},
        {"name": "b", "certificate": pem, "identities": ["CN=x"] * 101},
        {"name": "b", "certificate": pem, "identities": ["x" * 2000]},
        {"name": "b", "certificate": pem, "identities": ["not a subject"]},
        {"name": "b", "certificate": ca_pem(ca=False)},  # a leaf cannot anchor a trust store
    ):
        assert registry.request("POST", CERTS, json=bad).status_code == 422, bad
    assert registry.request("POST", CERTS, json=body).status_code == 409
    assert [c["name"] for c in registry.request("GET", CERTS).json()] == ["acme"]
    assert registry.request("DELETE", f"{CERTS}/acme").status_code == 204
    assert registry.request("GET", CERTS).json() == []


def test_system_wide_material(registry: Registry) -> None:
    svc = registry.services
    svc.users.create("someone", "password-123")
    someone = basic("someone", "password-123")
    url = "/api/v1/system/trust/keys"
    r = registry.request("POST", url, json={"name": "org", "public_key": ec_pem()})
    assert r.status_code == 201 and r.json()["scope"] == "system"
    # Any signed-in user sees what every project trusts; anonymous callers do not.
    assert [k["name"] for k in registry.http.get(url, headers=someone).json()] == ["org"]
    assert registry.http.get(url).status_code == 401
    assert registry.http.post(url, json={"name": "x", "public_key": ec_pem()}, headers=someone).status_code == 403
    # Project and system material are apart, and both reach the verifiers.
    assert _keys(registry) == []
    registry.request("POST", KEYS, json={"name": "ci", "public_key": ec_pem()})
    material = svc.trust.material(PROJECT)
    assert sorted(k.name for k in material.keys) == ["ci", "org"]
    assert [k.name for k in svc.trust.material("elsewhere").keys] == ["org"]
    certs = "/api/v1/system/trust/certificates"
    assert registry.request("POST", certs, json={"name": "root", "certificate": ca_pem()}).status_code == 201
    assert [c["name"] for c in registry.request("GET", certs).json()] == ["root"]
    assert registry.request("DELETE", f"{url}/org").status_code == 204
    assert registry.request("DELETE", f"{certs}/root").status_code == 204


def test_changes_are_audited_without_the_key_material(registry: Registry) -> None:
    pem = ec_pem()
    registry.request("POST", KEYS, json={"name": "ci", "public_key": pem})
    registry.request("DELETE", f"{KEYS}/ci")
    registry.request("POST", CERTS, json={"name": "acme", "certificate": ca_pem()})
    registry.request("DELETE", f"{CERTS}/acme")
    registry.request("POST", "/api/v1/system/trust/keys", json={"name": "org", "public_key": ec_pem()})
    registry.services.audit.flush()
    events = registry.request("GET", "/api/v1/audit", params={"limit": 100}).json()["events"]
    trust = [(e["action"], e["project"], e["actor"]) for e in events if e["action"].startswith("trust.")]
    assert sorted(trust, key=str) == sorted(
        [
            ("trust.key.add", PROJECT, "admin"),
            ("trust.key.delete", PROJECT, "admin"),
            ("trust.certificate.add", PROJECT, "admin"),
            ("trust.certificate.delete", PROJECT, "admin"),
            ("trust.key.add", None, "admin"),
        ],
        key=str,
    )
    assert not any("BEGIN" in str(e) for e in events)
    # A refused change leaves no event.
    registry.request("POST", KEYS, json={"name": "ci", "public_key": "junk"})
    after = registry.request("GET", "/api/v1/audit", params={"limit": 100}).json()["events"]
    assert len(after) == len(events)


def test_each_kind_of_credential(registry: Registry) -> None:
    """A maintainer's password and personal access token may change the project's trust material; the
    same with only developer rights, a robot (even one with every registry action) and a registry
    token may not."""
    svc = registry.services
    for name, role in (("maint", Role.MAINTAINER), ("dev", Role.DEVELOPER)):
        svc.users.create(name, "password-123")
        svc.projects.set_member(PROJECT, "user", name, role)
    pat = svc.access_tokens.create("maint", "ci").secret
    bot = svc.robots.create("trustbot", {PROJECT: ["pull", "push", "delete"]})
    token = registry.http.get(
        "/token",
        params={"service": "dockyard", "scope": f"repository:{PROJECT}/app:pull,push"},
        headers=basic("maint", "password-123"),
    ).json()["token"]
    cases = [
        ("maintainer password", basic("maint", "password-123"), 201),
        ("maintainer access token", basic("maint", pat), 201),
        ("developer password", basic("dev", "password-123"), 403),
        ("robot secret", basic(bot.robot.name, bot.secret), 403),
        ("registry token", {"Authorization": f"Bearer {token}"}, 401),
        ("anonymous", {}, 401),
    ]
    for i, (label, headers, expected) in enumerate(cases):
        r = registry.http.post(KEYS, json={"name": f"k{i}", "public_key": ec_pem()}, headers=headers)
        assert r.status_code == expected, (label, r.text)
    assert _keys(registry) == ["k0", "k1"]
