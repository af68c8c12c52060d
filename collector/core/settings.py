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
    dashboard_host: str = Field(
        "127.0.0.1",
        description="Address the dashboard listens on; 0.0.0.0 exposes it to the network (put TLS in front).",
    )
    dashboard_port: int = Field(8501, description="Port the Streamlit dashboard listens on.")
    signin_failures_per_minute: int = Field(
        30, ge=1, description="Failed password sign-ins a minute the dashboard accepts from everyone together."
    )
    signin_max_concurrent_verifications: int = Field(
        2, ge=1, description="Password checks (argon2, 64 MiB each) the dashboard runs at once; more wait, then 'busy'."
    )
    dashboard_session_idle_hours: float = Field(
        8.0, gt=0, description="A dashboard sign-in ends after this many hours without a click."
    )
    dashboard_session_max_days: float = Field(
        7.0, gt=0, description="A dashboard sign-in ends this many days after it started, however active."
    )
    http_timeout_seconds: float = Field(30.0, description="Per-request timeout for provider APIs.")
    http_max_attempts: int = Field(6, description="Attempts per request on 429/5xx/timeouts before giving up.")
    http_max_backoff_seconds: float = Field(60.0, description="Cap on one retry wait, Retry-After included.")
    upsert_batch_size: int = Field(5000, description="Records per executemany batch in the store.")
    import_ai_services: str = Field(
        "Vertex AI,Gemini API,Generative Language API,Amazon Bedrock,Azure OpenAI,Azure OpenAI Service,"
        "Azure AI Services,Cognitive Services,Foundry Models",
        description="Comma-separated service names whose rows CSV imports keep (besides FOCUS ServiceCategory "
        "'AI and Machine Learning'); matched case-insensitively.",
    )
    import_keep_all_services: bool = Field(
        False, description="CSV imports keep rows of every service, not only AI ones (like --all-services)."
    )
    import_max_bytes: int = Field(
        2 * 1024**3, ge=0, description="Largest file CSV imports read, in bytes once decompressed (0 = no limit)."
    )
    import_max_line_length: int = Field(
        1024 * 1024, ge=0, description="Longest line (characters) a CSV import reads before refusing the file."
    )
    import_max_rows: int = Field(5_000_000, ge=0, description="Most data rows one CSV import reads (0 = no limit).")
    backfill_days: int = Field(30, ge=1, description="Days of history the first sync of a connection fetches.")
    usage_lookback_hours: int = Field(
        48, ge=1, description="Hourly usage buckets re-fetched on every sync (providers revise recent data)."
    )
    cost_lookback_days: int = Field(3, ge=1, description="Daily cost buckets re-fetched on every sync.")
    openai_base_url: str = Field(
        "https://api.openai.com/v1", description="OpenAI Administration API base URL (a connection may override it)."
    )
    anthropic_base_url: str = Field(
        "https://api.anthropic.com/v1", description="Anthropic Admin API base URL (a connection may override it)."
    )
    openrouter_base_url: str = Field(
        "https://openrouter.ai/api/v1", description="OpenRouter API base URL (a connection may override it)."
    )
    xai_base_url: str = Field(
        "https://management-api.x.ai", description="xAI Management API base URL (a connection may override it)."
    )
    aws_cost_explorer_url: str = Field(
        "", description="Cost Explorer endpoint for boto3; empty = the SDK's own (ce.us-east-1.amazonaws.com)."
    )
    aws_cost_explorer_min_hours: int = Field(
        8,
        ge=1,
        description="Scheduled syncs call Cost Explorer at most this often per connection (each call is charged).",
    )
    azure_management_url: str = Field(
        "https://management.azure.com", description="Azure Resource Manager endpoint for the Cost Management API."
    )
    azure_authority_url: str = Field(
        "https://login.microsoftonline.com", description="Microsoft Entra ID authority that issues Azure tokens."
    )
    google_bigquery_url: str = Field(
        "", description="BigQuery API endpoint for the billing export query; empty = the SDK's own."
    )
    sync_interval_minutes: int = Field(60, ge=1, description="How often the scheduler syncs each connection.")
    sync_jitter_seconds: int = Field(
        300, ge=0, description="Random delay added to each scheduled sync so connections do not fire together."
    )
    sync_misfire_grace_seconds: int = Field(
        900, ge=1, description="A sync that could not start on time still runs if at most this late."
    )
    scheduler_refresh_seconds: int = Field(
        60, ge=1, description="How often the scheduler re-reads connections (added, disabled, removed)."
    )

    # -- proxy sidecar (collector/proxy) ---------------------------------------------------
    proxy_host: str = Field("127.0.0.1", description="Address the proxy sidecar listens on.")
    proxy_port: int = Field(8787, description="Port the proxy sidecar listens on.")
    proxy_workers: int = Field(
        1,
        ge=1,
        description="Worker processes of the proxy sharing its port, each with its own journal folder "
        "(<spool>/w<k>); rate-limit counters are per worker unless LLM_USAGE_REDIS_URL is set.",
    )
    proxy_openai_url: str = Field(
        "https://api.openai.com/v1", description="Upstream for /openai/v1/* (OpenAI API base URL, with /v1)."
    )
    proxy_anthropic_url: str = Field(
        "https://api.anthropic.com/v1", description="Upstream for /anthropic/v1/* (Anthropic API base URL, with /v1)."
    )
    proxy_google_url: str = Field(
        "https://generativelanguage.googleapis.com",
        description="Upstream for /google/v1beta/* and /google/v1/* (Gemini API host, without a version).",
    )
    proxy_vertex_url: str = Field(
        "https://aiplatform.googleapis.com",
        description="Upstream for /vertex/v1/* and /vertex/v1beta1/* (Vertex AI host, e.g. https://us-central1-aiplatform.googleapis.com).",
    )
    proxy_upstreams: dict[str, str] = Field(
        default_factory=dict,
        description='OpenAI-compatible upstreams served as /u/<name>/v1/*, as JSON: {"groq": "https://api.groq.com/openai/v1"}.',
    )
    redis_url: SecretStr | None = Field(
        None,
        description="Redis for the proxy's rate-limit counters shared by every replica (redis://host:6379/0); "
        "unset = counters per replica.",
    )
    redis_key_prefix: str = Field("llm-usage:", description="Prefix of every Redis key the proxy writes.")
    proxy_budget_refresh_seconds: float = Field(
        30.0, gt=0, description="How often the proxy re-reads enforced budgets and their spend."
    )
    proxy_include_usage: bool = Field(
        True,
        description="Add stream_options.include_usage to OpenAI streams that lack it (and hide the extra chunk).",
    )
    proxy_fast_transport: bool = Field(
        True,
        description="Forward over the sidecar's asyncio + httptools transport (false: httpx's default transport).",
    )
    proxy_writer_process: bool = Field(
        True,
        description="Commit the journal to the database from a child process at the lowest CPU priority, so "
        "pricing and inserts never hold the interpreter lock that requests need (false: a thread of the sidecar).",
    )
    proxy_upstream_timeout_seconds: float = Field(
        600.0, description="Read timeout towards the upstream (long completions stream slowly)."
    )
    proxy_require_monitor_token: bool = Field(
        False, description="Refuse (403, nothing forwarded) calls without a valid X-Monitor-Token."
    )
    proxy_max_connections: int = Field(
        1000, ge=1, description="Concurrent connections (and requests) the proxy serves; more get a 503."
    )
    proxy_header_timeout_seconds: float = Field(
        10.0, gt=0, description="Longest time a client may take to send a request's headers before it is dropped."
    )
    proxy_body_timeout_seconds: float = Field(
        30.0, ge=0, description="Longest wait for the next part of a request body (408 after it; 0 = none)."
    )
    proxy_idle_timeout_seconds: int = Field(
        5, ge=1, description="How long an idle keep-alive connection from a client stays open."
    )
    proxy_max_buffered_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Request-body bytes all requests together may hold in memory; past it bodies are streamed.",
    )
    proxy_queue_size: int = Field(
        10_000,
        description="Events held in memory when the spool cannot be written (disk full); beyond it they are lost.",
    )
    proxy_batch_size: int = Field(500, description="Events per database write.")
    proxy_batch_interval_seconds: float = Field(
        0.5,
        description="How often the writer moves spooled events into the database (their longest wait when it is up).",
    )
    proxy_retention_days: int = Field(30, description="Days raw proxy events are kept (rolled-up usage stays).")
    proxy_rollup_interval_seconds: float = Field(
        300.0, description="How often the proxy rolls its events up into hourly usage rows and purges old ones."
    )
    proxy_spool_dir: Path | None = Field(
        None,
        description="Folder of the JSONL journal every event is written to before its response completes; "
        "one per replica; empty = <data_dir>/proxy-spool.",
    )
    proxy_spool_fsync_seconds: float = Field(
        0.0,
        ge=0,
        description="Fsync the journal this often so a power cut loses at most this window (0 = never: "
        "a killed process loses nothing, a power cut what the kernel had not written back).",
    )
    proxy_fingerprint_salt: SecretStr | None = Field(
        None, description="Secret salt of API-key fingerprints; empty = generated once into <data_dir>/proxy-salt."
    )
    proxy_token_refresh_seconds: float = Field(
        30.0, description="How often the proxy reloads monitor tokens (a revocation takes effect within this)."
    )
    proxy_otel: bool = Field(
        False, description="Also serve the OTLP/HTTP receiver (/v1/traces, /v1/metrics) on the proxy sidecar."
    )
    proxy_spend_metrics: bool = Field(
        False, description="Add the spend metrics of `llm-usage metrics` to the sidecar's /metrics (read in a thread)."
    )
    # -- OpenTelemetry GenAI receiver (collector/otel) -----------------------------------------
    otel_host: str = Field("127.0.0.1", description="Address `llm-usage otel` listens on.")
    otel_port: int = Field(4318, description="Port `llm-usage otel` listens on (4318 is the OTLP/HTTP port).")
    otel_bearer_token: SecretStr | None = Field(
        None, description="If set, OTLP requests must send `Authorization: Bearer <token>`."
    )
    otel_max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest OTLP request body, before and after gzip (413 above it)."
    )
    otel_team_attributes: str = Field(
        "team,service.namespace",
        description="Span or resource attributes (comma-separated, first present wins) giving an OTLP row's team.",
    )
    otel_project_attributes: str = Field(
        "project,service.name",
        description="Span or resource attributes (comma-separated, first present wins) giving an OTLP row's project.",
    )
    otel_deny_attributes: str = Field(
        "*api_key*,*apikey*,*authorization*,*password*,*secret*,*cookie*,*credential*,enduser.*,user.*",
        description="Attribute name patterns (fnmatch, comma-separated) never read or kept, besides message content.",
    )
    otel_prefer: str = Field(
        "spans",
        pattern="^(spans|metrics)$",
        description="When a service sends both spans and gen_ai.client.token.usage for the same calls: which counts.",
    )
    otel_settle_seconds: int = Field(
        600, ge=0, description="How long the other signal waits for the preferred one before it is counted."
    )
    otel_retention_days: int = Field(30, description="Days raw OTLP events are kept (rolled-up usage stays).")
    otel_rollup_interval_seconds: float = Field(
        300.0, description="How often `llm-usage otel` rolls its events up into hourly usage rows."
    )
    # -- Prometheus spend metrics (collector/metrics) -----------------------------------------
    metrics_host: str = Field("127.0.0.1", description="Address `llm-usage metrics` listens on.")
    metrics_port: int = Field(9464, description="Port `llm-usage metrics` listens on.")
    metrics_bearer_token: SecretStr | None = Field(
        None, description="If set, scrapes must send `Authorization: Bearer <token>`."
    )
    metrics_top_models: int = Field(10, ge=1, description="Models per provider exported by name; the rest are 'other'.")
    metrics_top_projects: int = Field(
        10, ge=1, description="Projects per provider exported by name; the rest are 'other'."
    )
    metrics_cache_seconds: float = Field(
        30.0, ge=0, description="How long one computed scrape is served again (reports are not re-run per scrape)."
    )
    # -- budgets, alerts, forecasts, anomalies, chargeback and currency --
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
    # -- pricing and reconciliation (collector/core/price_table.py, collector/query/reconcile.py) --
    price_table_file: Path | None = Field(
        None,
        description="JSON price file (the shape of collector/core/prices.json) whose entries are used before "
        "the shipped table's; empty = the shipped table only.",
    )
    reconcile_residual_percent: float = Field(
        2.0,
        ge=0,
        le=100,
        description="A reconciled day whose unexplained residual exceeds this share of its bill (percent) is flagged.",
    )

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the embedded SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'usage.db').as_posix()}"

    def resolved_spool_dir(self) -> Path:
        """The proxy's JSONL journal folder, defaulting to ``<data_dir>/proxy-spool``."""
        return self.proxy_spool_dir or self.data_dir / "proxy-spool"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
