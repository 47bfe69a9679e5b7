"""Configuration, one BaseSettings per concern, all under the VIGIL_ prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.contracts import Severity

DATA_DIR = Path(".data")


class CoreSettings(BaseSettings):
    """Process-wide settings: database, data directory, logging, incident timing."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; postgresql+psycopg://... in real deployments. Default: SQLite in data_dir.",
    )
    data_dir: Path = Field(default=DATA_DIR, description="Where keys, the SQLite DB and the outbox live.")
    log_format: str = Field(default="auto", description="auto (pretty on a TTY, JSON otherwise), json or console.")
    log_level: str = Field(default="INFO")
    reopen_window_seconds: int = Field(
        default=300, ge=0, description="A resolved incident reopens if an alert re-fires within this window."
    )
    public_url: str = Field(
        default="",
        description="Base URL of the API, used in links. Unset: http://<VIGIL_API_HOST>:<VIGIL_API_PORT> "
        "(a wildcard host becomes loopback), so moving the API's port moves the links with it.",
    )
    database_lock_timeout_seconds: float = Field(
        default=5.0, gt=0,
        description="API: how long a query waits for a database lock (SQLite busy timeout, PostgreSQL lock_timeout) "
        "before the request answers 503 with Retry-After.",
    )
    database_statement_timeout_seconds: float = Field(
        default=30.0, gt=0, description="API, PostgreSQL: longest statement (statement_timeout); past it, 503."
    )
    database_pool_timeout_seconds: float = Field(
        default=5.0, gt=0, description="API: how long a request waits for a free pooled connection; past it, 503."
    )
    secrets_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s) encrypting stored secrets (webhook secrets), comma-separated, the first encrypts; "
        "unset: generated in data_dir/secrets-key. API and worker must share it.",
    )
    private_url_allowlist: list[IPvAnyNetwork] = Field(
        default=[],
        description="Networks (JSON list of CIDRs) that webhook and provider URLs may resolve to although they are "
        "loopback, link-local or private; empty: only public addresses. `make run` allows 127.0.0.0/8 and ::1.",
    )

    @model_validator(mode="after")
    def _default_database(self) -> CoreSettings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir}/vigil.db"
        return self

    @model_validator(mode="after")
    def _default_public_url(self) -> CoreSettings:
        if not self.public_url:
            self.public_url = ApiSettings().local_url()
        return self


class TemporalSettings(BaseSettings):
    """Where the Temporal frontend is and which task queue Vigil uses."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_TEMPORAL_", extra="ignore")

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "vigil"
    ui_url: str = Field(default="http://127.0.0.1:8233", description="Base URL of the Temporal Web UI, for links.")
    update_timeout_seconds: float = Field(
        default=15.0, gt=0, description="How long the API waits for a workflow to answer before replying 503."
    )


class SmtpSettings(BaseSettings):
    """Outgoing email. Defaults point at the local catcher that `make run` starts."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_SMTP_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 1025
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    ssl: bool = False
    ca_file: Path | None = Field(
        default=None, description="PEM bundle of CAs to trust instead of the system store."
    )
    timeout_seconds: float = 10.0
    from_addr: str = "Vigil <vigil@localhost>"

    @field_validator("ca_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `VIGIL_SMTP_CA_FILE=` in an .env file would otherwise become Path("."), the current directory.
        return None if value == "" else value

    @model_validator(mode="after")
    def _one_tls_mode(self) -> SmtpSettings:
        if self.ssl and self.starttls:
            raise ValueError(
                "VIGIL_SMTP_SSL (implicit TLS, usually port 465) and VIGIL_SMTP_STARTTLS (upgrade a plain "
                "connection, usually port 587) exclude each other: set only the one your server speaks "
                "on this port"
            )
        return self


E164 = r"^\+[1-9]\d{6,14}$"


class EscalationSettings(BaseSettings):
    """The default ladder (email now, SMS +5m, IVR +10m, manager +15m) and its targets."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_ESCALATION_", extra="ignore")

    oncall_email: str = "oncall@localhost"
    oncall_phone: str = Field(default="+15550100100", pattern=E164, description="E.164.")
    manager_email: str = "manager@localhost"
    manager_phone: str = Field(default="+15550100199", pattern=E164, description="E.164.")
    step_wait_seconds: int = Field(default=300, gt=0, description="Wait between ladder steps.")
    ack_timeout_seconds: int = Field(
        default=1800, ge=0, description="Default ladder: an acknowledged, unresolved incident re-triggers after this; 0 never."
    )


class ApiSettings(BaseSettings):
    """The HTTP API server."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0, description="Larger request bodies get 413.")
    max_alerts_per_request: int = Field(
        default=1000, gt=0, description="More alerts in one webhook get 413 (set Alertmanager's max_alerts below it)."
    )
    auth_failure_limit: str = Field(
        default="20/minute",
        description="Failed authentications allowed per client address (`limits` notation, e.g. 20/minute); past "
        "it the client gets 429 with Retry-After.",
    )
    workers: int = Field(
        default=1, ge=1,
        description="API processes `python -m api.serve` (make api, the image, docker-compose) runs under one "
        "uvicorn; /metrics sums their counters.",
    )
    key_cache_seconds: float = Field(
        default=1.0, ge=0,
        description="How long an integration key found in memory is trusted without reading the database's change "
        "token again (PagerDuty acknowledge/resolve, change events); alerts are always checked against the current "
        "token in the transaction that stores them. 0: read the token on every request.",
    )

    def local_url(self) -> str:
        """Where this machine reaches the API: a wildcard bind (0.0.0.0, ::) is reached on loopback."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


class LocalPrometheusSettings(BaseSettings):
    """The Prometheus `make run` starts for postmortem charts (devtools/devrun.py); nothing else reads it."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_PROMETHEUS_", extra="ignore")

    port: int = Field(
        default=9090, ge=0, le=65535,
        description="make run: port of the local Prometheus on 127.0.0.1, scraping the API and the worker; 0: none.",
    )


class IngestSettings(BaseSettings):
    """Alert storms: backpressure."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_INGEST_", extra="ignore")

    backlog_limit: int = Field(
        default=1000, ge=0,
        description="Past this many undelivered alerts, new `info` alerts are stored as suppressed (never critical).",
    )
    dead_letter_after: int = Field(
        default=5, ge=1,
        description="An alert Temporal refuses this many times (outages not counted) is dead-lettered and the "
        "operator paged.",
    )


class WorkerSettings(BaseSettings):
    """The Temporal worker process."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_WORKER_", extra="ignore")

    graceful_shutdown_seconds: int = 30
    metrics_port: int = Field(default=9464, description="Prometheus metrics of the worker; 0 disables.")
    metrics_host: str = "127.0.0.1"
    max_concurrent_activities: int = 50
    max_concurrent_local_activities: int = Field(
        default=20, ge=1,
        description="Short database writes of incidents (projections) run inside workflow tasks at once; the "
        "activity thread pool holds this many threads beside max_concurrent_activities.",
    )
    max_concurrent_workflow_tasks: int = Field(
        default=10, ge=2,
        description="Workflow tasks one worker holds at once. Python runs them one at a time; a task held but not "
        "run yet waits in the worker, late against the time it started, unordered by Temporal's priorities.",
    )
    max_cached_workflows: int = Field(
        default=10_000, ge=1,
        description="Incidents kept in the worker's memory; set it above the peak of open incidents.",
    )
    outbox_reconcile_seconds: int = Field(
        default=10, gt=0, description="How often the reconciler runs a pass (outbox redelivery, ended workflows, lost attempts)."
    )
    versioning: bool = Field(
        default=False,
        description="Run as a version of the Worker Deployment `deployment_name` (docs/deploy.md); off: unversioned.",
    )
    deployment_name: str = Field(
        default="vigil", min_length=1, max_length=200, pattern=r"^[^./]+$",
        description="The Worker Deployment this worker is a version of (with `versioning`).",
    )
    build_id: str | None = Field(
        default=None, max_length=200,
        description="This build's id in the deployment; unset: the package version plus the git commit, if any.",
    )


class JiraSettings(BaseSettings):
    """Jira sync (docs/jira.md). Off unless `url` is set."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_JIRA_", extra="ignore")

    url: str | None = Field(default=None, description="Jira base URL; unset: Jira sync is off.")
    email: str | None = Field(default=None, description="Jira Cloud: the integration account's email (with api_token).")
    api_token: SecretStr | None = Field(default=None, description="Jira Cloud API token.")
    pat: SecretStr | None = Field(default=None, description="Jira Data Center personal access token (instead of email + api_token).")
    project_key: str = Field(default="OPS", description="Project of the issues Vigil creates.")
    issue_type: str = Field(default="Task", description="Issue type of the issues Vigil creates.")
    min_severity: Severity = Field(default=Severity.high, description="Create an issue for incidents at or above this severity.")
    priorities: dict[str, str] = Field(
        default={"critical": "Highest", "high": "High", "warning": "Medium", "info": "Low"},
        description="Vigil severity -> Jira priority name (JSON).",
    )
    # Both defaults follow Jira's simplified workflow (To Do, In Progress, Done; each transition named after
    # its target status), so the two directions agree; docs/jira.md has the classic workflow's mapping.
    transitions: dict[str, str] = Field(
        default={"acknowledged": "In Progress", "resolved": "Done", "triggered": "To Do"},
        description="Vigil status -> the Jira transition to apply (JSON).",
    )
    statuses: dict[str, str] = Field(
        default={"In Progress": "acknowledge", "Done": "resolve", "To Do": "reopen"},
        description="Jira status -> what it does to the incident (acknowledge, resolve, reopen) (JSON).",
    )
    webhook_secret: SecretStr | None = Field(default=None, description="Secret of the Jira webhook (X-Hub-Signature).")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per Jira request.")

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @model_validator(mode="after")
    def _credentials(self) -> JiraSettings:
        if self.url is None:
            return self
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("VIGIL_JIRA_URL must be an http:// or https:// URL")
        if self.pat is None and not (self.email and self.api_token):
            raise ValueError("Jira sync needs VIGIL_JIRA_PAT, or VIGIL_JIRA_EMAIL and VIGIL_JIRA_API_TOKEN")
        unknown = set(self.statuses.values()) - {"acknowledge", "resolve", "reopen"}
        if unknown:
            raise ValueError(f"VIGIL_JIRA_STATUSES actions must be acknowledge, resolve or reopen, not {sorted(unknown)}")
        return self


class ProviderSettings(BaseSettings):
    """The operator's SMS/IVR middleware (docs/providers.md). A channel without a URL uses the console adapter."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_PROVIDER_", extra="ignore")

    sms_url: str | None = Field(default=None, description="Where SMS messages are POSTed; unset: console adapter.")
    ivr_url: str | None = Field(default=None, description="Where IVR calls are POSTed; unset: console adapter.")
    secret: SecretStr | None = Field(
        default=None, description="HMAC key signing requests both ways; required once a URL is set."
    )
    name: str = Field(
        default="middleware", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Provider name in logs and in the callback path /api/v1/providers/{name}/callbacks.",
    )
    connect_timeout_seconds: float = Field(default=3.0, gt=0)
    read_timeout_seconds: float = Field(default=10.0, gt=0)
    callback_base_url: str | None = Field(
        default=None, description="Public base URL the middleware calls back; unset: VIGIL_PUBLIC_URL."
    )

    @model_validator(mode="after")
    def _check(self) -> ProviderSettings:
        for field in ("sms_url", "ivr_url", "callback_base_url"):
            url = getattr(self, field)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError(f"{field} must be an http:// or https:// URL")
        if (self.sms_url or self.ivr_url) and (self.secret is None or not self.secret.get_secret_value()):
            raise ValueError("VIGIL_PROVIDER_SECRET is required when VIGIL_PROVIDER_SMS_URL or _IVR_URL is set")
        return self


class AckLinkSettings(BaseSettings):
    """The signed one-click acknowledge links in emails."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_ACK_LINK_", extra="ignore")

    secret: SecretStr | None = Field(default=None, description="HMAC key of the links; unset: generated in data_dir.")
    ttl_seconds: int = Field(default=86400, gt=0, description="How long a link stays valid.")


# What responders may attach by default: logs and text, screenshots, PDFs, JSON.
ATTACHMENT_TYPES = (
    "text/plain,text/x-log,text/csv,text/markdown,application/json,application/pdf,"
    "image/png,image/jpeg,image/gif,image/webp"
)


class RcaSettings(BaseSettings):
    """The RCA stage (docs/rca.md): who needs a postmortem, Prometheus evidence, reminders, attachments."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_RCA_", extra="ignore")

    required_severities: str = Field(
        default="critical,high", description="Comma-separated severities whose incidents need a postmortem."
    )
    prometheus_url: str = Field(
        default="", description="Prometheus base URL for metric evidence; empty: none (recorded as a gap)."
    )
    prometheus_timeout_seconds: float = Field(default=10.0, gt=0, description="Per Prometheus query.")
    remind_after_hours: float = Field(default=24.0, gt=0, description="First reminder after resolve.")
    remind_every_hours: float = Field(default=24.0, gt=0, description="Then a reminder this often.")
    manager_after_reminders: int = Field(
        default=3, ge=0, description="After this many reminders, the manager is reminded too; 0 never."
    )
    attachments_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="Largest attachment.")
    attachments_allowed_types: str = Field(
        default=ATTACHMENT_TYPES, description="Comma-separated content types responders may attach."
    )
    artifact_store: str = Field(
        default="local",
        description="`local` (files under artifacts_dir) or `module:factory`, a callable taking these settings "
        "and returning an ArtifactStore (e.g. S3-compatible).",
    )
    artifacts_dir: Path | None = Field(
        default=None, description="Charts and attachments of the local store; unset: <data_dir>/artifacts."
    )

    @field_validator("artifacts_dir", mode="before")
    @classmethod
    def _empty_dir_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # `VIGIL_RCA_ARTIFACTS_DIR=` must not mean the working directory

    @field_validator("required_severities")
    @classmethod
    def _known_severities(cls, value: str) -> str:
        unknown = sorted(set(_items(value)) - {s.value for s in Severity})
        if unknown:
            raise ValueError(f"unknown severities {unknown}; use {', '.join(s.value for s in Severity)}")
        return value

    @field_validator("prometheus_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("VIGIL_RCA_PROMETHEUS_URL must be an http:// or https:// URL")
        return value.rstrip("/")

    @property
    def severities(self) -> frozenset[Severity]:
        return frozenset(Severity(s) for s in _items(self.required_severities))

    @property
    def allowed_types(self) -> frozenset[str]:
        return frozenset(_items(self.attachments_allowed_types.lower()))

    def artifacts_path(self, core: CoreSettings) -> Path:
        return self.artifacts_dir or core.data_dir / "artifacts"


def _items(csv: str) -> list[str]:
    return [item.strip() for item in csv.split(",") if item.strip()]


class Settings(BaseModel):
    """All settings, grouped by concern.

    A plain model, not BaseSettings: as BaseSettings without a prefix it read `API`, `JIRA`, `SMTP`... (any
    program's variables) as JSON for its fields. Each concern reads only its own VIGIL_* variables.
    """

    core: CoreSettings = Field(default_factory=CoreSettings)
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    providers: ProviderSettings = Field(default_factory=ProviderSettings)
    jira: JiraSettings = Field(default_factory=JiraSettings)
    ack_links: AckLinkSettings = Field(default_factory=AckLinkSettings)
    rca: RcaSettings = Field(default_factory=RcaSettings)


SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    CoreSettings,
    TemporalSettings,
    SmtpSettings,
    EscalationSettings,
    ApiSettings,
    IngestSettings,
    WorkerSettings,
    ProviderSettings,
    AckLinkSettings,
    JiraSettings,
    RcaSettings,
    LocalPrometheusSettings,
)


def env_names() -> set[str]:
    """Every environment variable name the settings classes read."""
    names: set[str] = set()
    for cls in SETTINGS_CLASSES:
        prefix = cls.model_config.get("env_prefix", "")
        names.update(f"{prefix}{name}".upper() for name in cls.model_fields)
    return names


@lru_cache
def get_settings() -> Settings:
    """Settings read once per process from the environment."""
    return Settings()
