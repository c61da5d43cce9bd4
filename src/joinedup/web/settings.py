"""How the dashboard is configured: environment variables (`JOINEDUP_*`) or a settings file.

Two modes. `demo` (the default) runs on a laptop: a missing secret key is made up afresh at
each start and the demo accounts may sign in. `production` refuses to start without a secret
key of at least 32 characters, sends cookies only over HTTPS and refuses the demo accounts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from joinedup.errors import ConfigurationError, describe_validation_error

MIN_SECRET_LENGTH = 32


class WebSettings(BaseSettings):
    """Every setting of `joinedup serve`; each reads `JOINEDUP_<NAME>` from the environment."""

    model_config = SettingsConfigDict(env_prefix="JOINEDUP_", extra="ignore")

    mode: Literal["demo", "production"] = "demo"
    warehouse: Path = Field(Path("data/joinedup.duckdb"), description="The DuckDB warehouse.")
    access_db: Path | None = Field(
        None,
        description="SQLite file of users, sessions and the audit log; by default beside the "
        "warehouse, as <warehouse>.access.sqlite.",
    )
    audit_key_file: Path | None = Field(
        None,
        description="The key of the audit log's HMAC chain (made, mode 0600, at first use); by "
        "default beside the access database, as <access db>.audit-key. Keep it where whoever "
        "can change the access database cannot.",
    )
    secret_key: SecretStr | None = Field(
        None, description="Signs form tokens. Required in production mode."
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    session_hours: float = Field(8.0, gt=0, description="How long a sign-in lasts.")
    login_max_failures: int = Field(5, ge=1, description="Failed sign-ins allowed in a window.")
    login_window_minutes: float = Field(15.0, gt=0)
    audit_sync_every_write: bool = Field(
        False,
        description="Sync the access database to disk at every audit entry (SQLite "
        "synchronous=FULL) rather than at checkpoints; safe against power cuts, slower.",
    )
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="Reverse proxies whose X-Forwarded-For is believed (addresses or networks, "
        "comma-separated); by default none, so the header is ignored and the client is the "
        "address that connected.",
    )
    cookie_secure: bool | None = Field(
        None, description="Send the session cookie over HTTPS only (default: on in production)."
    )
    boundaries: Path | None = Field(
        None,
        description="ONS local authority boundaries (GeoJSON) for the places map of a real "
        "footprint; without it, or for a synthetic one, the map is a schematic.",
    )
    static_dir: Path | None = Field(
        None, description="Where the NHS.UK frontend assets are (default: inside the package)."
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> WebSettings:
        if self.mode == "production":
            key = self.secret_key.get_secret_value() if self.secret_key else ""
            if len(key) < MIN_SECRET_LENGTH:
                raise ValueError(
                    "production mode needs JOINEDUP_SECRET_KEY of at least "
                    f"{MIN_SECRET_LENGTH} characters; none is made up for you"
                )
        return self

    @property
    def access_path(self) -> Path:
        if self.access_db is not None:
            return self.access_db
        return self.warehouse.with_name(self.warehouse.name + ".access.sqlite")

    @property
    def audit_key_path(self) -> Path:
        if self.audit_key_file is not None:
            return self.audit_key_file
        return self.access_path.with_name(self.access_path.name + ".audit-key")

    @property
    def secure_cookies(self) -> bool:
        return self.mode == "production" if self.cookie_secure is None else self.cookie_secure


def load_settings(env_file: Path | None = None, **overrides: object) -> WebSettings:
    """Settings from the environment, then `env_file` (KEY=value lines), then `overrides`;
    raises ConfigurationError naming what is wrong."""
    if env_file is not None and not env_file.is_file():
        raise ConfigurationError(f"settings file {env_file} does not exist")
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    try:
        return WebSettings(_env_file=env_file, **given)
    except ValidationError as err:
        problems = describe_validation_error(err, _option_or_variable(set(given)))
        raise ConfigurationError(f"dashboard settings: {problems}") from None
    except ValueError as err:
        raise ConfigurationError(f"dashboard settings: {err}") from err


def _option_or_variable(given: set[str]) -> Callable[[tuple[int | str, ...]], str]:
    """A setting's name as it was given: the option (`--port`) when it came as one, else its
    variable (`JOINEDUP_PORT`, from the environment or the settings file). Messages never
    repeat the value: it may be a secret."""

    def name(loc: tuple[int | str, ...]) -> str:
        field = str(loc[0])
        return f"--{field.replace('_', '-')}" if field in given else f"JOINEDUP_{field.upper()}"

    return name
