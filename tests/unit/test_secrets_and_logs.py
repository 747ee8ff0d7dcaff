"""Secret settings never render, and the log formatter renders an exception without its locals."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from dockyard import logs
from dockyard.config import SECRET_SETTINGS, ConfigError, Settings, load_settings

SECRETS = {
    "admin_password": "admin-pw-S3CRET",
    "ldap_bind_password": "ldap-pw-S3CRET",
    "oidc_client_secret": "oidc-S3CRET",
    "external_scanner_authorization": "Bearer scanner-S3CRET",
    "admission_token": "admission-S3CRET",
}
DB_PASSWORD = "db-pw-S3CRET"


def _settings() -> Settings:
    return Settings(database_url=f"postgresql+psycopg://dockyard:{DB_PASSWORD}@db.example/dockyard", **SECRETS)


def test_secret_settings_never_render() -> None:
    s = _settings()
    assert {*SECRETS, "database_url"} == SECRET_SETTINGS
    renderings = [repr(s), str(s), str(s.model_dump()), s.model_dump_json(), repr(s.__dict__)]
    for text in renderings:
        for value in [*SECRETS.values(), DB_PASSWORD]:
            assert value not in text
    # ... while the code that needs them still gets them, and logs get a masked URL
    assert s.admin_password is not None and s.admin_password.get_secret_value() == SECRETS["admin_password"]
    assert DB_PASSWORD in s.resolved_database_url
    assert DB_PASSWORD not in s.database_url_for_logs and "db.example" in s.database_url_for_logs


def test_a_rejected_secret_setting_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_DATABASE_URL", f"mysql://root:{DB_PASSWORD}@db/x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "database_url" in str(info.value) and DB_PASSWORD not in str(info.value)


def _render(exc_info: object) -> str:
    record = logging.LogRecord("dockyard.test", logging.ERROR, __file__, 1, "unhandled error", None, exc_info)  # type: ignore[arg-type]
    return logs.formatter().format(record)


def test_an_exception_is_one_json_event_with_type_message_and_frames_but_no_locals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: JSON
    settings = _settings()
    authorization = "Basic YWRtaW46c2VjcmV0LXB3"

    def handler(settings: Settings, authorization: str) -> None:
        raise RuntimeError("storage unavailable")

    try:
        handler(settings, authorization)
    except RuntimeError:
        line = _render(sys.exc_info())
    assert "\n" not in line
    event = json.loads(line)
    assert event["event"] == "unhandled error" and event["level"] == "error"
    [exc] = event["exception"]
    assert exc["exc_type"] == "RuntimeError" and exc["exc_value"] == "storage unavailable"
    assert exc["frames"] and exc["frames"][-1]["name"] == "handler"
    assert all("locals" not in frame for frame in exc["frames"])
    for value in [*SECRETS.values(), DB_PASSWORD, authorization]:
        assert value not in line


def test_on_a_terminal_the_traceback_is_plain_and_without_locals(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    secret = SECRETS["admin_password"]
    try:
        password = secret
        raise ValueError("bad " + str(len(password)))
    except ValueError:
        text = _render(sys.exc_info())
    assert "ValueError: bad" in text and secret not in text


def test_server_loggers_propagate_to_the_one_handler() -> None:
    config = logs.logging_config("info")
    assert config["root"]["handlers"] == ["stderr"]
    for name in ("_granian", "granian.access", "uvicorn", "uvicorn.error"):
        assert config["loggers"][name] == {"handlers": [], "propagate": True, "level": "INFO"}
    assert config["loggers"]["uvicorn.access"]["propagate"] is False  # request lines are not logged
