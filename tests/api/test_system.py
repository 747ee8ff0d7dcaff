"""The settings overview and storage usage (GET /api/v1/system/settings, /system/storage, and the
Administration page): every setting is listed, no secret's value is ever in the answer (a secret
says only whether it is set; a password inside any URL is masked), and the usage counts what is
stored. The page's part: tests/ui/test_permissions.py; who may call them, with which credential:
tests/access/test_decisions.py."""

from __future__ import annotations

from dockyard.config import SECRET_SETTINGS, Settings, overview
from tests.api.conftest import ADMIN, Registry, registry

__all__ = ["registry"]
SECRETS = ("db-pass-hunter2", "admin-pass-hunter2", "ldap-pass-hunter2", "oidc-secret-hunter2", "tok-hunter2")


def test_the_overview_never_holds_a_secret() -> None:
    settings = Settings(
        database_url=f"postgresql+psycopg://dockyard:{SECRETS[0]}@db.internal/dockyard",
        admin_password=SECRETS[1],
        ldap_url="ldap://ldap.internal",
        ldap_bind_dn="cn=reader,dc=example",
        ldap_user_base="ou=people,dc=example",
        ldap_bind_password=SECRETS[2],
        oidc_issuer="https://sso.example",
        oidc_client_id="dockyard",
        oidc_client_secret=SECRETS[3],
        vulndb_sources=[f"https://mirror:{SECRETS[4]}@osv.internal/all.zip"],
    )
    items = {item["name"]: item for item in overview(settings)}
    assert set(items) == set(Settings.model_fields)
    assert not any(secret in repr(items) for secret in SECRETS)
    assert items["database_url"]["value"] == "postgresql+psycopg://dockyard:***@db.internal/dockyard"
    assert items["vulndb_sources"]["value"] == ["https://mirror:***@osv.internal/all.zip"]
    for name in SECRET_SETTINGS - {"database_url"}:
        assert items[name]["secret"] and items[name]["value"] in ("set", None), name
    assert items["admin_password"]["value"] == "set" and items["admission_token"]["value"] is None
    assert items["ldap_url"]["value"] == "ldap://ldap.internal" and not items["ldap_url"]["secret"]
    assert all(item["description"] for item in items.values())


def test_the_api_lists_every_setting_and_counts_what_is_stored(registry: Registry) -> None:
    before = registry.http.get("/api/v1/system/storage", headers=ADMIN)
    assert before.status_code == 200, before.text
    layers = [b"a layer of twenty-two", b"another"]
    assert registry.put_manifest("team/app", "v1", registry.image("team/app", layers)).status_code == 201
    registry.image("other/app", layers[:1])  # the same layer again, in another repository: stored once
    after = registry.http.get("/api/v1/system/storage", headers=ADMIN).json()
    config = len(b'{"architecture":"amd64","os":"linux"}')
    assert after["blobs"] - before.json()["blobs"] == 3
    assert after["bytes"] - before.json()["bytes"] == sum(map(len, layers)) + config
    assert after["repositories"] - before.json()["repositories"] == 2
    assert after["manifests"] - before.json()["manifests"] == 1
    assert after["storage"].startswith("file://")
    listed = registry.http.get("/api/v1/system/settings", headers=ADMIN)
    assert listed.status_code == 200
    assert {item["name"] for item in listed.json()} == set(Settings.model_fields)
    admin_password = registry.services.settings.admin_password
    assert admin_password is not None and admin_password.get_secret_value() not in listed.text
