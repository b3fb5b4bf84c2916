"""Settings, read once at start-up and passed in; never a global."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

DEFAULT_DATABASE_URL = "sqlite:///./coupons.db"
TEN_YEARS = 10 * 365 * 24 * 3600  # seconds: the longest a token or sign-in may be set to last


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # Token signing key; when unset, one is generated on first use and kept in the database.
    token_secret: str | None = None
    token_ttl_seconds: int = 3600
    max_body_bytes: int = 1024 * 1024
    # Failed logins per username or address within the window before 429.
    auth_failure_limit: int = 10
    auth_failure_window_seconds: int = 60
    log_level: str = "INFO"
    db_pool_size: int = 10
    # Seconds a 503 (9023, database unreachable) tells clients to wait before retrying.
    db_retry_after_seconds: int = 2
    # How long a console sign-in lasts (spec §9: the session cookie expires).
    console_session_seconds: int = 8 * 3600

    def __post_init__(self) -> None:
        # HS256 keys shorter than the hash output are guessable; refuse them at start-up.
        if self.token_secret is not None and len(self.token_secret.encode()) < 32:
            raise ValueError("COUPONS_TOKEN_SECRET must be at least 32 bytes long")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from `COUPONS_*` environment variables, then explicit overrides."""
        env = os.environ if env is None else env
        settings = cls(
            database_url=env.get("COUPONS_DATABASE_URL", DEFAULT_DATABASE_URL),
            token_secret=env.get("COUPONS_TOKEN_SECRET") or None,
            token_ttl_seconds=_positive(env, "COUPONS_TOKEN_TTL_SECONDS", 3600, TEN_YEARS),
            auth_failure_limit=_positive(env, "COUPONS_AUTH_FAILURE_LIMIT", 10, 1_000_000),
            log_level=log_level_from(env),
            db_pool_size=_positive(env, "COUPONS_DB_POOL_SIZE", 10, 1_000),
            db_retry_after_seconds=_positive(env, "COUPONS_DB_RETRY_AFTER_SECONDS", 2, 86_400),
            console_session_seconds=_positive(
                env, "COUPONS_CONSOLE_SESSION_SECONDS", 28800, TEN_YEARS
            ),
        )
        check_metrics_dir(env)
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **clean)  # type: ignore[arg-type]


def check_metrics_dir(env: Mapping[str, str]) -> None:
    """PROMETHEUS_MULTIPROC_DIR, when set, must be a directory this process can write in:
    otherwise the metrics library fails at the first count, a traceback after start-up."""
    raw = env.get("PROMETHEUS_MULTIPROC_DIR")
    if raw and not (os.path.isdir(raw) and os.access(raw, os.W_OK | os.X_OK)):
        raise ValueError(
            f"PROMETHEUS_MULTIPROC_DIR must be a directory this user can write in, not {raw!r}"
        )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level_from(env: Mapping[str, str]) -> str:
    """One of the standard level names, any case: a typo had logged at INFO without a word."""
    raw = env.get("COUPONS_LOG_LEVEL", "").strip()
    if not raw:
        return "INFO"
    if raw.upper() not in LOG_LEVELS:
        raise ValueError(f"COUPONS_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {raw!r}")
    return raw.upper()


def _positive(env: Mapping[str, str], name: str, default: int, most: int) -> int:
    """A whole number from 1 to `most` from the environment, or a start-up error naming the
    variable: a token that expires at once, a pool of no connections or a lifetime past the
    calendar's end is a typo, not a setting."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
    if not 1 <= value <= most:
        raise ValueError(f"{name} must be from 1 to {most:,}, not {value}")
    return value
