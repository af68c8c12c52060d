"""One settings object for the whole product (code-anchors §11.8).

Nothing else in the code base reads ``os.environ``: every knob is a field here, documented in
``.env.example`` and in the README's configuration table.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("data")


class Settings(BaseSettings):
    """Runtime configuration, read from ``LLM_USAGE_*`` variables and an optional ``.env`` file."""

    model_config = SettingsConfigDict(
        env_prefix="LLM_USAGE_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
    )

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where the SQLite file, secret key and spool live.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means the embedded SQLite file <data_dir>/usage.db."
    )
    secret_keys: SecretStr | None = Field(
        None, description="Comma-separated Fernet keys, newest first, that encrypt stored admin keys."
    )
    demo: bool = Field(False, description="Set by `llm-usage demo`: the dashboard labels everything as demo.")
    dashboard_port: int = Field(8501, description="Port the Streamlit dashboard listens on.")
    http_timeout_seconds: float = Field(30.0, description="Per-request timeout for provider APIs.")
    http_max_attempts: int = Field(6, description="Attempts per request on 429/5xx/timeouts before giving up.")
    http_max_backoff_seconds: float = Field(60.0, description="Cap on one retry wait, Retry-After included.")
    upsert_batch_size: int = Field(5000, description="Records per executemany batch in the store.")
    # -- budgets, alerts, forecasts, anomalies, chargeback and currency (issue 7) --
    alert_urls: SecretStr | None = Field(
        None,
        description="Apprise notification URLs, separated by spaces or commas (Slack, mailto, Teams, json/webhook).",
    )
    dashboard_base_url: str = Field(
        "http://localhost:8501", description="Dashboard address used in alert links (no trailing slash needed)."
    )
    display_currency: str = Field(
        "", description="ISO code the dashboard converts money into with the fx_rates table; empty = billing currency."
    )
    budget_thresholds: str = Field("50,80,100", description="Default alert thresholds (percent) of a new budget.")
    anomaly_threshold: float = Field(6.0, description="Robust z-score (median/MAD) a day must reach to be an anomaly.")
    anomaly_min_ratio: float = Field(0.5, description="An anomaly is at least this much above expected (0.5 = +50%).")
    anomaly_min_amount: float = Field(5.0, description="An anomaly exceeds its expected spend by at least this much.")
    anomaly_window_days: int = Field(28, description="Days of trailing baseline for anomaly detection.")
    anomaly_scopes: str = Field("all,provider,project", description="Scopes checked for anomalies (comma-separated).")
    anomaly_alerts: bool = Field(True, description="Send a notification for each new anomaly (once per scope and day).")

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the embedded SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'usage.db').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
