"""Configuration from environment variables, one small class per concern."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET = "terrain-development-secret-change-me"


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TERRAIN_DB_")

    url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/terrain"
    pool_size: int = Field(10, ge=1, le=200)
    max_overflow: int = Field(20, ge=0, le=500)
    statement_timeout_ms: int = Field(5_000, ge=100)


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TERRAIN_AUTH_")

    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    token_minutes: int = Field(60, ge=1, le=60 * 24 * 30)


class WorkSettings(BaseSettings):
    """Rules of the work itself: caps, pay floor, expiry sweep, nearby search bounds."""

    model_config = SettingsConfigDict(env_prefix="TERRAIN_WORK_")

    reservation_cap: int = Field(3, ge=1, le=100)
    sweep_interval_s: float = Field(30.0, gt=0)
    # Minimum hourly rate on on-site time, in cents per hour, per accepted currency.
    pay_floor_cents_per_hour: dict[str, int] = {"EUR": 1200, "USD": 1500, "GBP": 1200}
    walking_speed_kmh: float = Field(5.0, gt=0)
    nearby_default_radius_m: int = Field(2_000, ge=1)
    nearby_max_radius_m: int = Field(50_000, ge=1)
    nearby_max_limit: int = Field(100, ge=1)


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TERRAIN_")

    env: Literal["development", "test", "production"] = "development"
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    run_sweeper: bool = True


class Settings(BaseSettings):
    app: AppSettings = Field(default_factory=AppSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    work: WorkSettings = Field(default_factory=WorkSettings)

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> Settings:
        if (
            self.app.env == "production"
            and self.auth.secret_key.get_secret_value() == DEVELOPMENT_SECRET
        ):
            raise ValueError("TERRAIN_AUTH_SECRET_KEY must be set outside development")
        if self.app.env == "production" and len(self.auth.secret_key.get_secret_value()) < 32:
            raise ValueError("TERRAIN_AUTH_SECRET_KEY must be at least 32 characters")
        return self
