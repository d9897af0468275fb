"""Settings come from the environment, and bad ones are reported by their environment name."""

import pytest

from orchestrator.config import Settings, load_settings
from orchestrator.errors import ConfigError


def test_reads_documented_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("VIOLET_APP_ID", "42")
    monkeypatch.setenv("VIOLET_APP_SECRET", "s3cr3t")
    settings = load_settings()
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.violet_app_id == 42
    assert "s3cr3t" not in repr(settings)


def test_bad_url_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIOLET_BASE_URL", "ftp://nope")
    with pytest.raises(ConfigError, match="VIOLET_BASE_URL"):
        load_settings()


def test_missing_credentials_are_named() -> None:
    settings = Settings(violet_app_id=1)
    with pytest.raises(ConfigError, match="VIOLET_APP_SECRET, VIOLET_USERNAME, VIOLET_PASSWORD"):
        settings.require_violet_credentials()
