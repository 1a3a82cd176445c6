"""Server settings: every field can be set by a `PORTICO_*` environment variable or a CLI flag."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PORTICO_", extra="ignore")

    data_dir: Path = Field(
        default=Path("./data"), description="Where the database, TLS material and local storage live."
    )
    host: str = Field(default="127.0.0.1", description="Management API bind address.")
    port: int = Field(default=8443, description="Management API HTTPS port.")
    public_url: str | None = Field(
        default=None,
        description="Externally visible base URL (default https://{host}:{port}); used for Location headers and the token issuer.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default sqlite+aiosqlite:///{data_dir}/portico.db. PostgreSQL: postgresql+asyncpg://...",
    )
    tls_cert: Path | None = Field(
        default=None, description="Operator-supplied server certificate (PEM). Generated when absent."
    )
    tls_key: Path | None = Field(default=None, description="Operator-supplied server private key (PEM).")
    insecure_http: bool = Field(
        default=False,
        description="Serve plain HTTP (only for reverse-proxy setups; the Azure SDK refuses bearer tokens over HTTP).",
    )
    tenant_id: str = Field(default="portico", description="Tenant of the built-in identity provider.")
    token_lifetime_seconds: int = Field(
        default=3600, ge=60, le=86400, description="Lifetime of issued access tokens."
    )
    # --- people sign-in (portico.identity.users / flows) ---
    refresh_token_lifetime_seconds: int = Field(
        default=90 * 86400,
        ge=300,
        description="A person's refresh token stays usable this long after its last use (Entra: 90 days).",
    )
    device_code_interval_seconds: int = Field(
        default=5, ge=1, le=60, description="Polling interval the device-code flow asks of clients."
    )
    audience: str = Field(
        default="https://management.azure.com/", description="Audience the management API accepts."
    )
    trusted_issuers: str = Field(
        default="",
        description="Extra OIDC issuers to trust, comma-separated `issuer|audience` pairs; keys are found by discovery.",
    )
    subscriptions: str = Field(
        default="00000000-0000-0000-0000-000000000001",
        description="Subscriptions this instance offers (GET /subscriptions, az login): comma-separated "
        "`id` or `id=Display name` entries; a caller sees those its role assignments reach. When set, "
        "management requests under any other subscription id answer 404 SubscriptionNotFound.",
    )
    gateway_domain: str = Field(
        default="gateway.localhost", description="Services get gatewayUrl https://{service}.{gateway_domain}."
    )
    max_request_bytes: int = Field(
        default=4 * 1024 * 1024, description="Largest accepted management request body."
    )
    backup_validity_days: float = Field(default=30.0, gt=0, description="How long a backup stays restorable.")
    blob_endpoint_template: str = Field(
        default="https://{account}.blob.core.windows.net",
        description="Azure Blob endpoint of a storage account; {account} is replaced.",
    )
    storage_backend: str = Field(
        default="local", description="`local` (accounts under the data directory) or `azure`."
    )
    managed_identity_credentials: SecretStr = Field(
        default=SecretStr(""),
        description="Credentials the service identities use for managed-identity backups: `account=key:BASE64` or `account=sas:TOKEN` or `account=default` pairs, `;`-separated.",
    )
    backup_encryption_key: SecretStr | None = Field(
        default=None,
        description="Base64 of a 32-byte key: backups are encrypted with AES-256-GCM and restores decrypt with it.",
    )
    operation_lease_seconds: float = Field(
        default=15.0, gt=0, description="Lease of a node on a running operation."
    )
    node_id: str | None = Field(
        default=None, description="Name of this node in operation leases (default hostname:pid)."
    )
    log_level: str = Field(default="info")

    # --- gateway (issue 4) ---------------------------------------------------------------------
    gateway_host: str | None = Field(
        default=None, description="Gateway bind address (default: the management `host`)."
    )
    gateway_port: int = Field(
        default=8080, ge=0, le=65535, description="Gateway HTTP port; 0 turns the HTTP listener off."
    )
    gateway_https_port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description="Gateway HTTPS port (same TLS material as the management API); 0 = off.",
    )
    gateway_backend_timeout: float = Field(
        default=300.0,
        gt=0,
        description="Seconds to wait for backend response headers (forward-request timeout default).",
    )
    gateway_connect_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to open a backend connection."
    )
    gateway_max_body_bytes: int = Field(
        default=64 * 1024 * 1024, ge=0, description="Largest request body the gateway forwards (413 above)."
    )
    gateway_max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, description="Largest total size of request headers (431 above)."
    )
    gateway_config_poll_seconds: float = Field(
        default=0.25, gt=0, le=5, description="How often a gateway node checks for configuration changes."
    )
    gateway_quota_flush_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often each gateway process adds what it counted to the shared quota counters "
        "(and sees others' counts and resets); bounds how far several processes can overshoot a quota.",
    )
    gateway_workers: int = Field(
        default=-1,
        ge=-1,
        le=64,
        description="Gateway worker processes sharing the gateway ports (-1: one per CPU; 0: inside the "
        "management process, one event loop).",
    )
    gateway_analytics: bool = Field(
        default=True, description="Record every gateway request in the usage table (reports API)."
    )
    gateway_name: str | None = Field(
        default=None,
        description="Serve only the APIs of this self-hosted gateway entity (with gateway_token).",
    )
    gateway_token: SecretStr | None = Field(
        default=None, description="A token of the gateway entity's generateToken action."
    )
    gateway_log_dir: Path | None = Field(
        default=None,
        description="Where loggers write (JSON lines per service and logger; docs/gateway.md, "
        "Diagnostics); default data_dir/gateway-logs.",
    )
    gateway_fast_path: bool = Field(
        default=True,
        description="Serve whole small requests whose policies are all synchronous from callbacks "
        "(docs/gateway.md); false: every request through the ASGI path.",
    )
    gateway_websocket_max_message_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest WebSocket message the gateway relays, either way (larger: both sides are "
        "closed with 1009).",
    )
    gateway_websocket_idle_seconds: float = Field(
        default=600.0,
        gt=0,
        description="A relayed WebSocket connection with no message either way for this long is closed "
        "(1001) on both sides.",
    )
    gateway_websocket_max_connections: int = Field(
        default=5000,
        ge=0,
        description="WebSocket connections each gateway worker process relays at once (API Management's "
        "figure per unit); a handshake beyond it gets 503.",
    )
    gateway_analytics_queue: int = Field(
        default=100_000,
        ge=100,
        description="Usage records buffered in memory; beyond it records are dropped and counted.",
    )

    # --- API import from links -------------------------------------------------------------------
    import_fetch_timeout: float = Field(
        default=10.0, gt=0, le=300, description="Seconds to fetch a linked API definition (openapi-link...)."
    )
    import_max_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, description="Largest linked API definition fetched (400 above)."
    )
    import_allow_private_networks: bool = Field(
        default=False,
        description="Allow definition links to private-network addresses (loopback is always allowed).",
    )
    export_link_seconds: int = Field(
        default=300, ge=10, le=86400, description="Lifetime of an API export link (signed, no token needed)."
    )

    # --- backup schedules, recovery-point visibility (issue 5) ------------------------------------
    secret_key: SecretStr | None = Field(
        default=None,
        description="Base64 of a 32-byte key that encrypts stored secrets (schedule access keys); default: "
        "data_dir/secret.key, generated on first start. Multi-node: the same key on every node.",
    )
    scheduler_tick_seconds: float = Field(
        default=5.0, gt=0, le=60, description="How often each node checks for due backup schedules."
    )
    scheduler_clock_file: Path | None = Field(
        default=None,
        description="Tests only: a file holding a number of seconds added to the scheduler's clock.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token /metrics requires; unset: /metrics answers loopback clients only.",
    )

    # --- Key Vault references (certificates, named values: portico/resources/keyvault.py) ---------
    keyvault_tenant_id: str | None = Field(
        default=None,
        description="Tenant of the credential Portico reads Key Vault secrets with (with client id and "
        "secret: a client-secret credential); unset: DefaultAzureCredential (managed identity, "
        "workload identity, environment, Azure CLI).",
    )
    keyvault_client_id: str | None = Field(
        default=None, description="Client id of the Key Vault credential (with tenant id and secret)."
    )
    keyvault_client_secret: SecretStr | None = Field(
        default=None, description="Client secret of the Key Vault credential."
    )
    keyvault_authority_host: str | None = Field(
        default=None,
        description="Authority the client-secret credential gets tokens from (default Entra's "
        "https://login.microsoftonline.com); any Entra-compatible issuer, such as Portico's own.",
    )
    keyvault_ca_bundle: Path | None = Field(
        default=None,
        description="PEM bundle of the CAs trusted for the vault and the authority (default: the system's).",
    )
    keyvault_verify_challenge_resource: bool = Field(
        default=True,
        description="Require the vault's authentication challenge to name a resource of the vault's own "
        "domain (Azure Key Vault always does); false for a vault endpoint outside *.vault.azure.net.",
    )
    keyvault_refresh_seconds: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="How often Key Vault secrets are fetched again (Azure: every 4 hours).",
    )
    keyvault_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Seconds to read one secret from Key Vault."
    )

    @field_validator("subscriptions")
    @classmethod
    def _check_subscriptions(cls, value: str) -> str:
        for entry in value.split(","):
            sub_id = entry.partition("=")[0].strip()
            if sub_id and not is_subscription_id(sub_id):
                raise ValueError(f"subscription id {sub_id[:70]!r} must be 1-64 letters, digits or '-'")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'portico.db').resolve()}"

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "http" if self.insecure_http else "https"
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::1", "::") else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def subscription_list(self) -> list[tuple[str, str]]:
        """(subscription id, display name) of each configured subscription, in the order given."""
        out: list[tuple[str, str]] = []
        for entry in self.subscriptions.split(","):
            sub_id, _, name = entry.partition("=")
            if sub_id.strip():
                out.append((sub_id.strip(), name.strip() or f"Portico subscription {sub_id.strip()}"))
        return out

    @property
    def subscriptions_enforced(self) -> bool:
        """Whether management requests are held to the configured subscriptions: only when
        PORTICO_SUBSCRIPTIONS is set. Left unset, the default subscription is the one offered to
        `az login` and listings, and requests under any well-formed id are served, as Portico always
        served them (clients and databases set up before may use other ids)."""
        return "subscriptions" in self.model_fields_set

    def offers_subscription(self, subscription_id: str) -> bool:
        """Whether the subscription is configured (ids compare ignoring case, as ARM's GUIDs do)."""
        key = subscription_id.casefold()
        return any(sub_id.casefold() == key for sub_id, _ in self.subscription_list)

    @property
    def issuer(self) -> str:
        return f"{self.resolved_public_url}/{self.tenant_id}/v2.0"


def is_subscription_id(value: str) -> bool:
    """ARM's form of a subscription id: 1-64 ASCII letters, digits or '-'."""
    return 1 <= len(value) <= 64 and all((c.isascii() and c.isalnum()) or c == "-" for c in value)


def settings_from_options(**options: object) -> Settings:
    """Settings from CLI flags: a flag left unset (None) falls back to `PORTICO_*` or the default."""
    return Settings.model_validate({k: v for k, v in options.items() if v is not None})


def configure_logging(settings: Settings) -> None:
    """One log format for every Portico process. The Azure SDK's per-request HTTP logging is kept
    at WARNING: it is noise at INFO, and request URLs can carry SAS tokens."""
    import logging

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("azure").setLevel(max(logging.WARNING, logging.getLogger().level))
