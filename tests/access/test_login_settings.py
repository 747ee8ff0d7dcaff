"""The login thresholds an operator sets are the ones the guard applies (each `login_*` setting,
per address as well as per account; DOCKYARD_LOGIN_* in the environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config import load_settings
from dockyard.db.engine import Database
from dockyard.services.auth.guard import keys_for
from dockyard.wiring import build_services, prepare


def test_the_per_address_slow_down_threshold_is_a_setting(
    tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_LOGIN_IP_SLOW_AFTER", "3")
    settings = load_settings(data_dir=tmp_path, database_url=database.url, vulndb_sources=[], scanner_enabled=False)
    services = build_services(settings, db=database)
    prepare(services)
    guard = services.authenticator.guard
    cfg = guard.settings
    assert (cfg.slow_after, cfg.lock_after, cfg.ip_slow_after, cfg.ip_lock_after) == (5, 10, 3, 50)
    # Each failure names another account, so only the address's counter passes a threshold.
    delays = [guard.failed(keys_for("192.0.2.7", f"guess{i}"))[0] for i in range(5)]
    assert delays[:3] == [0.0, 0.0, 0.0] and 0 < delays[3] < delays[4]


def test_the_per_address_threshold_defaults_to_half_the_address_lock() -> None:
    settings = load_settings()
    assert settings.login_ip_slow_after == 25 == settings.login_ip_lock_after // 2
