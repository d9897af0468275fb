"""Settings come from the environment, and bad ones are reported by their environment name."""

import pytest

from orchestrator.config import Settings, load_settings
from orchestrator.errors import ConfigError
from orchestrator.store.database import session_options


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


def _numeric_settings() -> list[tuple[str, str]]:
    """(field, environment name) of every int or float setting."""
    numeric = []
    for name, field in Settings.model_fields.items():
        kinds = set(getattr(field.annotation, "__args__", (field.annotation,)))
        if kinds & {int, float} and bool not in kinds:
            choices = getattr(field.validation_alias, "choices", [])
            numeric.append((name, next(c for c in choices if c.isupper())))
    return numeric


@pytest.mark.parametrize(("field", "env"), _numeric_settings())
@pytest.mark.parametrize("value", ["1e308", "nan", "inf", "-inf", str(10**30)])
def test_every_numeric_setting_refuses_absurd_values_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, field: str, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=env):
        load_settings()


@pytest.mark.parametrize(("field", "env"), _numeric_settings())
def test_every_numeric_setting_has_an_upper_bound(field: str, env: str) -> None:
    bounds = [
        m for m in Settings.model_fields[field].metadata if hasattr(m, "le") or hasattr(m, "lt")
    ]
    assert bounds, f"{env} has no upper bound"


def test_session_options_set_both_timeouts_and_keep_options_given_in_the_url() -> None:
    url = "postgresql+psycopg://u@h/db?options=-c%20search_path%3Dapp"
    assert session_options(url, lock_timeout=0.5, statement_timeout=60) == {
        "options": "-c search_path=app -c lock_timeout=500 -c statement_timeout=60000"
    }
    assert (
        session_options("postgresql+psycopg://u@h/db", lock_timeout=None, statement_timeout=None)
        == {}
    )


def test_a_database_password_given_as_a_query_parameter_is_masked_too() -> None:
    """libpq (and psycopg) also take the password as `?password=...`, the form many secret
    managers emit: it is masked like the userinfo password wherever settings are shown
    (`repr`, `str`, `public_values` and so `orchestrator config`)."""
    secret = "hunter2-s3cret"
    settings = Settings(
        database_url=f"postgresql://app@db.internal/orders?sslmode=require&password={secret}"
    )
    shown = {
        "repr": repr(settings),
        "str": str(settings),
        "public_values": str(settings.public_values()["database_url"]),
    }
    leaked = {where: text for where, text in shown.items() if secret in text}
    assert leaked == {}, leaked
