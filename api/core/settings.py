"""Configuration from environment variables, one small class per concern."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Literal
from urllib.parse import urlsplit

from croniter import croniter
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from geo.travel import DEFAULT_SPEEDS_KMH
from validation import Thresholds

DEVELOPMENT_SECRET = "terrain-development-secret-change-me"


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TERRAIN_DB_")

    url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/terrain"
    pool_size: int = Field(10, ge=1, le=200)
    max_overflow: int = Field(20, ge=0, le=500)
    statement_timeout_ms: int = Field(5_000, ge=100)
    # How long a statement may wait for a row lock before it gives up (0: only the statement
    # timeout bounds the wait). Either way the request answers 503 with Retry-After.
    lock_timeout_ms: int = Field(0, ge=0)
    pool_pre_ping: bool = False
    pool_recycle_s: int = Field(1800, ge=10)
    # How the API's sessions name themselves to PostgreSQL (pg_stat_activity), per deployment.
    application_name: str = Field("terrain-api", min_length=1, max_length=63)


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TERRAIN_AUTH_")

    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    # Access tokens are short-lived: a revoked session's token is refused when it expires, at
    # the latest (it is not looked up on every request). Refresh tokens rotate on every use; a
    # session left unused this many days ends.
    token_minutes: int = Field(15, ge=1, le=60 * 24 * 30)
    refresh_token_days: int = Field(30, ge=1, le=365)
    # Sign-in throttling. Per account: after this many failures in a row, each failure makes
    # the next attempt wait, doubling from the first wait up to the cap (short, so that whoever
    # guesses cannot keep the owner out for long). Per client address: failures a minute.
    sign_in_free_failures: int = Field(5, ge=1, le=100)
    sign_in_backoff_s: int = Field(15, ge=1, le=3600)
    sign_in_backoff_cap_s: int = Field(300, ge=1, le=3600)
    sign_in_failures_per_address_per_minute: int = Field(20, ge=1, le=100_000)
    # A password reset link works once, for this long.
    password_reset_minutes: int = Field(60, ge=5, le=24 * 60)
    # An address verification link, sent on registration, works once, for this long.
    email_verification_hours: int = Field(72, ge=1, le=24 * 30)


class MailSettings(BaseSettings):
    """Account e-mail (password reset), sent over SMTP by the job worker from the outbox; an
    attempt that fails is retried, waiting ``backoff_base_s`` doubling up to ``backoff_cap_s``."""

    model_config = SettingsConfigDict(env_prefix="TERRAIN_MAIL_")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # Implicit TLS (usually port 465), or STARTTLS on a plain connection (usually 587).
    smtp_tls: bool = False
    smtp_starttls: bool = False
    timeout_s: float = Field(10.0, gt=0, le=120)
    from_address: str = "Terrain <no-reply@terrain.invalid>"
    # The page of the app that takes a reset token: the token is appended.
    password_reset_url: str = "http://localhost:8000/reset-password?token="
    verify_email_url: str = "http://localhost:8000/verify-email?token="
    backoff_base_s: float = Field(30.0, gt=0)
    backoff_cap_s: float = Field(3600.0, gt=0)


class WorkSettings(BaseSettings):
    """Rules of the work itself: caps, pay floor, expiry sweep, nearby search bounds."""

    model_config = SettingsConfigDict(env_prefix="TERRAIN_WORK_")

    reservation_cap: int = Field(3, ge=1, le=100)
    sweep_interval_s: float = Field(30.0, gt=0)
    # Minimum hourly rate on on-site time, in cents per hour, per accepted currency.
    pay_floor_cents_per_hour: dict[str, int] = {"EUR": 1200, "USD": 1500, "GBP": 1200}
    # Speeds of the travel modes, in km/h: nearby's walking time and hourly rate, route legs and
    # assignments' travel all read these, so they never disagree.
    walking_speed_kmh: float = Field(DEFAULT_SPEEDS_KMH["walk"], gt=0, le=40)
    running_speed_kmh: float = Field(DEFAULT_SPEEDS_KMH["run"], gt=0, le=40)
    cycling_speed_kmh: float = Field(DEFAULT_SPEEDS_KMH["bike"], gt=0, le=40)
    nearby_default_radius_m: int = Field(2_000, ge=1)
    nearby_max_radius_m: int = Field(50_000, ge=1)
    nearby_max_limit: int = Field(100, ge=1)
    # Routes: how many candidates the solver weighs, its time limit, and the hold past a
    # planned departure. A route's tasks count against ``reservation_cap`` like any other.
    route_max_candidates: int = Field(300, ge=1, le=1000)
    route_deadline_s: float = Field(1.0, gt=0, le=10)
    route_reservation_margin_minutes: int = Field(20, ge=0, le=240)
    # Alerts: areas per worker, alerts per worker and hour, how often the stream looks.
    alert_areas_max: int = Field(5, ge=1, le=50)
    alerts_per_hour: int = Field(20, ge=1, le=1000)
    alerts_poll_s: float = Field(1.0, gt=0, le=30)
    # Per-worker rate limits (requests a minute): taking work, and photo grants and checks.
    reservations_per_minute: int = Field(30, ge=1, le=100_000)
    uploads_per_minute: int = Field(60, ge=1, le=100_000)

    @property
    def speeds_kmh(self) -> dict[str, float]:
        """Each travel mode's speed."""
        return {
            "walk": self.walking_speed_kmh,
            "run": self.running_speed_kmh,
            "bike": self.cycling_speed_kmh,
        }


class ReviewSettings(BaseSettings):
    """The promises to workers: how long anything may wait, and what may be contested when."""

    model_config = SettingsConfigDict(env_prefix="TERRAIN_REVIEW_")

    # The client may dispute accepted work this long after submission; earnings become
    # available for payout when it closes.
    acceptance_window_hours: int = Field(72, ge=1, le=24 * 30)
    # Anything undecided this long after submission is approved automatically.
    auto_approval_hours: int = Field(72, ge=1, le=24 * 30)
    # An appeal or a dispute undecided this long is settled in the worker's favour.
    decision_hours: int = Field(72, ge=1, le=24 * 30)
    appeal_window_days: int = Field(14, ge=1, le=365)
    claim_minutes: int = Field(15, ge=1, le=240)
    # Independent reports that hide a task until an admin decides.
    task_report_threshold: int = Field(3, ge=1, le=100)
    # Device and photo positions are erased after this many days (the checks keep the
    # distances measured from them).
    position_retention_days: int = Field(90, ge=1, le=3650)


class StorageSettings(BaseSettings):
    """Where photos go: an S3 API (AWS, MinIO, ...) or the local filesystem (the default)."""

    model_config = SettingsConfigDict(env_prefix="TERRAIN_STORAGE_")

    backend: Literal["local", "s3"] = "local"
    # Local backend: files under this folder, uploaded through the API's own signed URLs.
    local_root: str = "var/objects"
    public_base_url: str = "http://127.0.0.1:8000"
    # S3 backend. The endpoint is where the API and the job worker reach the store.
    s3_endpoint_url: str | None = None
    # Where phones and browsers reach it, when that differs (MinIO is http://minio:9000 on a
    # compose network, a public name outside): upload grants and download links are presigned
    # for this base, since the signature covers the host. Unset: the endpoint above.
    s3_public_url: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str = "terrain-photos"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_addressing_style: Literal["path", "virtual", "auto"] = "path"
    s3_connect_timeout_s: float = Field(3.0, gt=0)
    s3_read_timeout_s: float = Field(10.0, gt=0)
    s3_max_attempts: int = Field(3, ge=1, le=10)
    # Grants and links.
    upload_ttl_s: int = Field(600, ge=30, le=900)
    download_ttl_s: int = Field(300, ge=30, le=3600)
    max_photo_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    # The reconciler: how long an unfinished upload or an unreferenced object may stay, and how
    # often it looks.
    orphan_grace_s: int = Field(3600, ge=60)
    reconcile_interval_s: float = Field(3600.0, gt=0)

    @field_validator("s3_public_url")
    @classmethod
    def _a_base_url(cls, value: str | None) -> str | None:
        if not value:  # unset, or set empty (a compose variable left blank)
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {value!r}")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError(f"a scheme, host and port only, without a path: {value!r}")
        return value


class CheckSettings(BaseSettings):
    """Photo-check thresholds: the defaults of ``validation.Thresholds``, overridable by name,
    e.g. TERRAIN_CHECKS_THRESHOLDS='{"freshness_s": 3600, "min_short_side_px": 800}'."""

    model_config = SettingsConfigDict(env_prefix="TERRAIN_CHECKS_")

    thresholds_overrides: dict[str, float] = Field(
        default_factory=dict, validation_alias="TERRAIN_CHECKS_THRESHOLDS"
    )

    @model_validator(mode="after")
    def _known_names(self) -> CheckSettings:
        known = {f.name for f in fields(Thresholds)}
        if unknown := set(self.thresholds_overrides) - known:
            raise ValueError(f"unknown check thresholds {sorted(unknown)}; known: {sorted(known)}")
        self.thresholds()  # the dataclass validates the values
        return self

    def thresholds(self) -> Thresholds:
        return replace(Thresholds(), **self.thresholds_overrides)  # type: ignore[arg-type]


class WebhookSettings(BaseSettings):
    """Calls to client endpoints: how long one may take, how often and how far apart retries
    go, and whether endpoints on private networks are allowed (local development and tests)."""

    model_config = SettingsConfigDict(env_prefix="TERRAIN_WEBHOOKS_")

    timeout_s: float = Field(10.0, gt=0, le=60)
    max_attempts: int = Field(8, ge=1, le=50)
    # After failed attempt n the next waits base * 2**(n-1) seconds, at most cap, less a random
    # part of at most ``jitter`` of it, so endpoints that come back are not stampeded.
    backoff_base_s: float = Field(30.0, gt=0)
    backoff_cap_s: float = Field(6 * 3600.0, gt=0)
    backoff_jitter: float = Field(0.1, ge=0, le=1)
    allow_private_hosts: bool = False
    endpoints_per_organization: int = Field(10, ge=1, le=100)
    # Sent or abandoned events (and their delivery logs) are kept this long, then forgotten.
    retention_days: int = Field(30, ge=1, le=3650)


class ObservabilitySettings(BaseSettings):
    """Logs and metrics. Logs are one JSON object per line by default (what log shippers read);
    ``text`` is for reading a terminal. ``/metrics`` is open on the bind address unless a token
    is set, then it needs ``Authorization: Bearer <token>``."""

    model_config = SettingsConfigDict(env_prefix="TERRAIN_")

    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Lines below WARNING written by an event loop (the access lines) are written together, at
    # most this long after the first of them; 0 writes each line at once.
    log_flush_ms: int = Field(default=100, ge=0, le=10_000)
    metrics_token: SecretStr | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class JobSettings(BaseSettings):
    """The job worker (``python -m api.background.jobs worker``): how many jobs it runs at once,
    and when
    each periodic job is due, as cron expressions (a sixth field counts seconds)."""

    model_config = SettingsConfigDict(env_prefix="TERRAIN_JOBS_")

    concurrency: int = Field(4, ge=1, le=64)
    expire_reservations_cron: str = "* * * * * */30"
    settle_overdue_cron: str = "* * * * *"
    purge_positions_cron: str = "17 * * * *"
    reconcile_uploads_cron: str = "47 * * * *"
    sanitize_photos_cron: str = "* * * * *"
    deliver_webhooks_cron: str = "* * * * * */5"
    send_mail_cron: str = "* * * * * */5"
    # Succeeded jobs are kept this long (for an operator to look at), then forgotten.
    history_hours: int = Field(24, ge=1, le=24 * 90)
    # The worker's own Prometheus endpoint (its process and what its jobs did); 0 turns it off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9101, ge=0, le=65535)

    @model_validator(mode="after")
    def _valid_crons(self) -> JobSettings:
        for name, value in self:
            if name.endswith("_cron") and not croniter.is_valid(value):
                raise ValueError(f"{name}: {value!r} is not a cron expression")
        return self


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TERRAIN_")

    env: Literal["development", "test", "production"] = "development"
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    # The periodic work runs in the job worker (api.background.jobs); this runs it in the API
    # process too.
    run_sweeper: bool = False


class Settings(BaseSettings):
    app: AppSettings = Field(default_factory=AppSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    work: WorkSettings = Field(default_factory=WorkSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    checks: CheckSettings = Field(default_factory=CheckSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    mail: MailSettings = Field(default_factory=MailSettings)

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
