from pathlib import Path

import pytest

from dockyard.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("DOCKYARD_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = load_settings()
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 5000, 1)
    assert s.resolved_database_url.startswith("sqlite:///") and s.resolved_database_url.endswith("dockyard.db")


def test_environment_overrides_file_and_flags_override_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "dockyard.toml"
    cfg.write_text('port = 6000\ntoken_service = "from-file"\n')
    monkeypatch.setenv("DOCKYARD_CONFIG", str(cfg))
    assert load_settings().port == 6000
    assert load_settings().token_service == "from-file"
    monkeypatch.setenv("DOCKYARD_PORT", "7000")
    assert load_settings().port == 7000
    assert load_settings(port=8000).port == 8000


@pytest.mark.parametrize(
    ("env", "value", "mentions"),
    [
        ("DOCKYARD_PORT", "seventy", "DOCKYARD_PORT"),
        ("DOCKYARD_PORT", "70000", "less than or equal to 65535"),
        ("DOCKYARD_WORKERS", "0", "DOCKYARD_WORKERS"),
        ("DOCKYARD_DATABASE_URL", "mysql://x", "sqlite:// or postgresql"),
        ("DOCKYARD_LOG_LEVEL", "loud", "DOCKYARD_LOG_LEVEL"),
        ("DOCKYARD_TOKEN_TTL_SECONDS", "5", "greater than or equal to 30"),
    ],
)
def test_bad_values_give_a_clear_message(monkeypatch: pytest.MonkeyPatch, env: str, value: str, mentions: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert mentions in str(err.value)


def test_bad_config_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    monkeypatch.setenv("DOCKYARD_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 5000")
    monkeypatch.setenv("DOCKYARD_CONFIG", str(unknown))
    with pytest.raises(ConfigError, match="prot"):
        load_settings()
