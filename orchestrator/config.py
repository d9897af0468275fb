"""Settings: one typed object, read from the environment only at the edge (CLI) or built in code.

Secrets are ``SecretStr`` so that printing or logging a ``Settings`` never reveals them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from orchestrator.database_url import parse_url
from orchestrator.errors import ConfigError

DEFAULT_VIOLET_BASE_URL = "https://sandbox-api.violet.io/v1"

#: The web console's roles: a viewer reads, an operator also acts (cancel, run now).
CONSOLE_ROLES: Final = ("viewer", "operator")
_CONSOLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_MAX_CONSOLE_LOGINS: Final = 100
#: Shortest secret per kind of login: a token is typed by no one, a password by a person.
_MIN_CONSOLE_SECRET: Final = {"console_tokens": 16, "console_users": 8}


class ConsoleLogin(BaseModel):
    """One login of the web console: its name (the actor its actions are recorded under), its
    role, and its secret (a bearer token or a basic-auth password; never logged or shown)."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: Literal["viewer", "operator"]
    secret: SecretStr


def _console_logins(value: Any, field: str) -> tuple[ConsoleLogin, ...]:
    """`NAME:ROLE:SECRET` entries, comma-separated, checked one by one. A message names the
    entry by its position and never quotes it: it holds a secret."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise ValueError("NAME:ROLE:SECRET entries, comma-separated")
    if len(value) > _MAX_CONSOLE_LOGINS:
        raise ValueError(f"at most {_MAX_CONSOLE_LOGINS} entries")
    logins: list[ConsoleLogin] = []
    for position, entry in enumerate(value, start=1):
        if isinstance(entry, str):
            parts = entry.split(":", 2)
            if len(parts) != 3:
                raise ValueError(f"entry {position}: expected NAME:ROLE:SECRET")
            entry = {"name": parts[0].strip(), "role": parts[1].strip(), "secret": parts[2]}
        login = entry if isinstance(entry, ConsoleLogin) else None
        if login is None:
            if not isinstance(entry, dict):
                raise ValueError(f"entry {position}: expected NAME:ROLE:SECRET")
            if entry.get("role") not in CONSOLE_ROLES:
                raise ValueError(
                    f"entry {position}: role must be one of {', '.join(CONSOLE_ROLES)}"
                )
            login = ConsoleLogin(
                name=str(entry.get("name", "")), role=entry["role"], secret=entry.get("secret", "")
            )
        if not _CONSOLE_NAME.fullmatch(login.name):
            raise ValueError(
                f"entry {position}: the name must be 1-64 letters, digits or . _ @ - "
                "(it names the actor in the audit trail)"
            )
        secret = login.secret.get_secret_value()
        if len(secret) < _MIN_CONSOLE_SECRET[field] or len(secret) > 1024:
            raise ValueError(
                f"entry {position}: the secret must be {_MIN_CONSOLE_SECRET[field]} to 1024 "
                "characters"
            )
        if secret != secret.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in secret):
            raise ValueError(
                f"entry {position}: the secret must not hold control characters or spaces at its "
                "ends"
            )
        if any(known.name == login.name for known in logins):
            raise ValueError(f"entry {position}: the name is listed twice")
        logins.append(login)
    return tuple(logins)


def _env(name: str, field: str) -> Any:
    """Accept both the documented environment name and the field name (for code)."""
    return AliasChoices(name, field)


def _number(
    name: str,
    field: str,
    default: float,
    *,
    le: float,
    ge: float | None = None,
    gt: float | None = None,
    doc: str | None = None,
) -> Any:
    """A numeric setting: bounded above as well as below (see `Settings.model_config`), read
    from its documented environment name or its field name."""
    return Field(
        default=default, ge=ge, gt=gt, le=le, validation_alias=_env(name, field), description=doc
    )


class Settings(BaseSettings):
    """Everything the orchestrator needs to know about its surroundings."""

    # Every number has an upper bound and NaN/infinity are refused: an absurd value (1e308 s)
    # would otherwise pass as "positive" and overflow a datetime deep inside a write.
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, frozen=True, allow_inf_nan=False
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=_env("ORCHESTRATOR_DATABASE_URL", "database_url"),
        description="postgresql+psycopg:// URL; unset means an embedded PostgreSQL in data_dir.",
    )
    data_dir: Path = Field(
        default_factory=lambda: Path.home() / ".local" / "share" / "orchestrator",
        validation_alias=_env("ORCHESTRATOR_DATA_DIR", "data_dir"),
    )
    violet_base_url: str = Field(
        default=DEFAULT_VIOLET_BASE_URL,
        validation_alias=_env("VIOLET_BASE_URL", "violet_base_url"),
    )
    violet_app_id: int | None = Field(
        default=None, ge=1, le=2**63 - 1, validation_alias=_env("VIOLET_APP_ID", "violet_app_id")
    )
    violet_app_secret: SecretStr | None = Field(
        default=None, validation_alias=_env("VIOLET_APP_SECRET", "violet_app_secret")
    )
    violet_username: str | None = Field(
        default=None, validation_alias=_env("VIOLET_USERNAME", "violet_username")
    )
    violet_password: SecretStr | None = Field(
        default=None, validation_alias=_env("VIOLET_PASSWORD", "violet_password")
    )
    connect_timeout: float = _number("VIOLET_CONNECT_TIMEOUT", "connect_timeout", 5.0, gt=0, le=300)
    read_timeout: float = _number("VIOLET_READ_TIMEOUT", "read_timeout", 30.0, gt=0, le=3600)
    total_timeout: float = _number("VIOLET_TOTAL_TIMEOUT", "total_timeout", 60.0, gt=0, le=3600)
    db_pool_size: int = _number(
        "ORCHESTRATOR_DB_POOL_SIZE",
        "db_pool_size",
        10,
        ge=1,
        le=1000,
        doc="Connections one orchestrator keeps for its step writes.",
    )
    db_write_slots: int = _number(
        "ORCHESTRATOR_DB_WRITE_SLOTS",
        "db_write_slots",
        1,
        ge=1,
        le=1000,
        doc="Step-write statements one orchestrator has in flight at once.",
    )
    db_lock_timeout: float = _number(
        "ORCHESTRATOR_DB_LOCK_TIMEOUT",
        "db_lock_timeout",
        10.0,
        ge=0.1,
        le=600,
        doc="Longest wait of one statement for a lock (PostgreSQL lock_timeout): a row lock held"
        " elsewhere fails the write, which keeps the checkout for recovery.",
    )
    db_statement_timeout: float = _number(
        "ORCHESTRATOR_DB_STATEMENT_TIMEOUT",
        "db_statement_timeout",
        60.0,
        ge=1,
        le=3600,
        doc="Longest run of one statement (PostgreSQL statement_timeout).",
    )
    lease_seconds: float = _number(
        "ORCHESTRATOR_LEASE_SECONDS", "lease_seconds", 30.0, gt=0, le=86400
    )
    max_attempts: int = _number("ORCHESTRATOR_MAX_ATTEMPTS", "max_attempts", 8, ge=1, le=1000)
    backoff_base: float = _number("ORCHESTRATOR_BACKOFF_BASE", "backoff_base", 1.0, ge=0, le=3600)
    backoff_cap: float = _number("ORCHESTRATOR_BACKOFF_CAP", "backoff_cap", 300.0, ge=0, le=86400)
    submit_settle_seconds: float = _number(
        "ORCHESTRATOR_SUBMIT_SETTLE_SECONDS",
        "submit_settle_seconds",
        10.0,
        ge=0,
        le=3600,
        doc="How long an unanswered submit may still run at Violet after the client gave up on"
        " it (total timeout): no new submit before both have passed.",
    )
    submit_outcome_wait: float = _number(
        "ORCHESTRATOR_SUBMIT_OUTCOME_WAIT",
        "submit_outcome_wait",
        30.0,
        ge=0,
        le=600,
        doc="How long a drive keeps reading an order Violet took but has not settled"
        " (PROCESSING, bags SUBMITTED) before recording it submitted with the bags as last seen.",
    )
    action_settle_seconds: float = _number(
        "ORCHESTRATOR_ACTION_SETTLE_SECONDS",
        "action_settle_seconds",
        900.0,
        ge=0,
        le=7 * 86400,
        doc="How long a bag's cancel or refund that Violet answered 202 may take to show on the"
        " bag before recovery reads the order and records it failed when nothing moved.",
    )
    max_recoveries: int = _number(
        "ORCHESTRATOR_MAX_RECOVERIES",
        "max_recoveries",
        5,
        ge=1,
        le=1000,
        doc="Lease takeovers after which a checkout is parked as failed (poison).",
    )

    max_request_bytes: int = _number(
        "ORCHESTRATOR_MAX_REQUEST_BYTES",
        "max_request_bytes",
        1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        doc="Largest request or card file the CLI reads (a request holds at most 100 SKUs and"
        " short fields: a few KiB).",
    )

    overlap_writes: bool = Field(
        default=True,
        validation_alias=_env("ORCHESTRATOR_OVERLAP_WRITES", "overlap_writes"),
        description="Commit an overwrite step's outcome while the next overwrite call runs.",
    )
    max_retry_after: float = _number(
        "ORCHESTRATOR_MAX_RETRY_AFTER",
        "max_retry_after",
        300.0,
        ge=1,
        le=86400,
        doc="Longest Retry-After honoured, seconds: a longer wait asked by a 429 is logged and"
        " shortened to this (it closes the shared budget for every worker).",
    )
    merchant_budgets: bool = Field(
        default=True,
        validation_alias=_env("ORCHESTRATOR_MERCHANT_BUDGETS", "merchant_budgets"),
        description="Pace each merchant's calls on a rate budget learned from its 429s and"
        " shared through the database; off: one 429 closes the global throttle alone.",
    )
    merchant_budget_wait: float = _number(
        "ORCHESTRATOR_MERCHANT_BUDGET_WAIT",
        "merchant_budget_wait",
        2.0,
        ge=0,
        le=300,
        doc="Longest a call waits in-process for its turn on a merchant's budget, seconds; a"
        " longer wait defers the checkout (durably, no attempt used) and frees the worker.",
    )
    violet_max_response_bytes: int = _number(
        "VIOLET_MAX_RESPONSE_BYTES",
        "violet_max_response_bytes",
        4 * 1024 * 1024,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        doc="Largest Violet answer read, bytes; a longer one is cut off (a cart or an order page"
        " is a few kB).",
    )
    violet_webhook_secrets: Annotated[tuple[SecretStr, ...] | None, NoDecode] = Field(
        default=None,
        validation_alias=_env("VIOLET_WEBHOOK_SECRETS", "violet_webhook_secrets"),
        description="Secrets a webhook's X-Violet-Hmac may be signed with, comma-separated (more"
        " than one while the app secret rotates); unset means the app secret alone.",
    )
    webhook_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        validation_alias=_env("ORCHESTRATOR_WEBHOOK_MAX_BODY_BYTES", "webhook_max_body_bytes"),
        description="Largest webhook body the receiver reads, bytes (an order event is a few kB);"
        " a longer one is refused with 413 and not stored.",
    )
    readback_after: float = _number(
        "ORCHESTRATOR_READBACK_AFTER",
        "readback_after",
        3600.0,
        ge=0,
        le=30 * 86400,
        doc="Seconds without news of a submitted order with a bag not final after which"
        " `orchestrator readback` reads it from Violet (webhooks are best-effort).",
    )

    console_users: Annotated[tuple[ConsoleLogin, ...] | None, NoDecode] = Field(
        default=None,
        validation_alias=_env("ORCHESTRATOR_CONSOLE_USERS", "console_users"),
        description="The web console's HTTP basic auth users: NAME:ROLE:PASSWORD, comma-separated"
        " (ROLE viewer or operator).",
    )
    console_tokens: Annotated[tuple[ConsoleLogin, ...] | None, NoDecode] = Field(
        default=None,
        validation_alias=_env("ORCHESTRATOR_CONSOLE_TOKENS", "console_tokens"),
        description="The web console's bearer tokens: NAME:ROLE:TOKEN, comma-separated.",
    )
    console_secret: SecretStr | None = Field(
        default=None,
        min_length=16,
        max_length=1024,
        validation_alias=_env("ORCHESTRATOR_CONSOLE_SECRET", "console_secret"),
        description="Key of the console's CSRF tokens, shared by its replicas; unset: a random"
        " key per process.",
    )
    console_bulk_limit: int = _number(
        "ORCHESTRATOR_CONSOLE_BULK_LIMIT",
        "console_bulk_limit",
        200,
        ge=1,
        le=5000,
        doc="Most checkouts one bulk action of the console touches.",
    )

    @field_validator("console_users", "console_tokens", mode="before")
    @classmethod
    def _parse_console_logins(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or value == "":
            return None
        return _console_logins(value, str(info.field_name))

    @property
    def console_auth_configured(self) -> bool:
        """Whether the console asks who is there (users or tokens are configured)."""
        return bool(self.console_users or self.console_tokens)

    audit_retention_days: int = _number(
        "ORCHESTRATOR_AUDIT_RETENTION_DAYS",
        "audit_retention_days",
        90,
        ge=1,
        le=36500,
        doc="Days an audit event keeps its bulky parts (Violet request/response summaries, large"
        " detail values, settled webhook bodies); `orchestrator prune` strips older ones and keeps"
        " their skeleton forever.",
    )

    @field_validator("violet_webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("violet_base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        if not value.startswith("postgresql+psycopg://"):
            raise ValueError("must be a postgresql+psycopg:// (or postgresql://) URL")
        try:
            port = parse_url(value).port  # parsing the port is where a malformed one shows
        except ValueError:
            raise ValueError("not a valid URL (check the host, port and database)") from None
        if port is not None and not 0 < port < 65536:
            raise ValueError("port must be 1-65535")
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (masked_url(value) if name == "database_url" and value else value)

    def public_values(self) -> dict[str, Any]:
        """Every setting as printable values: secrets masked, the database password too."""
        values = self.model_dump()
        if values["database_url"]:
            values["database_url"] = masked_url(values["database_url"])
        return values

    def require_violet_credentials(self) -> None:
        """Fail at start-up, naming the setting, rather than deep inside an HTTP call."""
        missing = [
            env
            for env, value in (
                ("VIOLET_APP_ID", self.violet_app_id),
                ("VIOLET_APP_SECRET", self.violet_app_secret),
                ("VIOLET_USERNAME", self.violet_username),
                ("VIOLET_PASSWORD", self.violet_password),
            )
            if value is None or value == ""
        ]
        if missing:
            raise ConfigError(f"missing Violet credentials: set {', '.join(missing)}")


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, turning validation errors into one clear ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err["loc"][0] if err["loc"] else "?"
            name = _ENV_NAMES.get(str(loc), str(loc))
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


def _env_name(field: str) -> str:
    choices = getattr(Settings.model_fields[field].validation_alias, "choices", [])
    return next((c for c in choices if isinstance(c, str) and c.isupper()), field)


_ENV_NAMES = {name: _env_name(name) for name in Settings.model_fields}


def masked_url(url: str) -> str:
    """A database URL with its password replaced by ***, for printing."""
    from sqlalchemy.engine import make_url  # printing settings only: not on every start
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ValueError, ArgumentError):
        return "(unparseable URL)"
    secret_keys = [k for k in parsed.query if k.lower() in ("password", "passfile", "sslpassword")]
    if secret_keys:  # libpq also takes the password as a query parameter
        parsed = parsed.update_query_dict({k: "***" for k in secret_keys})
    return parsed.render_as_string(hide_password=True)
