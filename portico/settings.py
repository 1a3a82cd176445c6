"""Server settings: every field can be set by a `PORTICO_*` environment variable or a CLI flag."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PORTICO_", extra="ignore")

    data_dir: Path = Field(default=Path("./data"), description="Where the database, TLS material and local storage live.")
    host: str = Field(default="127.0.0.1", description="Management API bind address.")
    port: int = Field(default=8443, description="Management API HTTPS port.")
    public_url: str | None = Field(
        default=None, description="Externally visible base URL (default https://{host}:{port}); used for Location headers and the token issuer."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default sqlite+aiosqlite:///{data_dir}/portico.db. PostgreSQL: postgresql+asyncpg://..."
    )
    tls_cert: Path | None = Field(default=None, description="Operator-supplied server certificate (PEM). Generated when absent.")
    tls_key: Path | None = Field(default=None, description="Operator-supplied server private key (PEM).")
    insecure_http: bool = Field(default=False, description="Serve plain HTTP (only for reverse-proxy setups; the Azure SDK refuses bearer tokens over HTTP).")
    tenant_id: str = Field(default="portico", description="Tenant of the built-in identity provider.")
    token_lifetime_seconds: int = Field(default=3600, ge=60, le=86400, description="Lifetime of issued access tokens.")
    audience: str = Field(default="https://management.azure.com/", description="Audience the management API accepts.")
    trusted_issuers: str = Field(
        default="", description="Extra OIDC issuers to trust, comma-separated `issuer|audience` pairs; keys are found by discovery."
    )
    gateway_domain: str = Field(default="gateway.localhost", description="Services get gatewayUrl https://{service}.{gateway_domain}.")
    max_request_bytes: int = Field(default=4 * 1024 * 1024, description="Largest accepted management request body.")
    backup_validity_days: float = Field(default=30.0, gt=0, description="How long a backup stays restorable.")
    blob_endpoint_template: str = Field(
        default="https://{account}.blob.core.windows.net", description="Azure Blob endpoint of a storage account; {account} is replaced."
    )
    storage_backend: str = Field(default="local", description="`local` (accounts under the data directory) or `azure`.")
    managed_identity_credentials: SecretStr = Field(
        default=SecretStr(""), description="Credentials the service identities use for managed-identity backups: `account=key:BASE64` or `account=sas:TOKEN` or `account=default` pairs, `;`-separated."
    )
    backup_encryption_key: SecretStr | None = Field(
        default=None, description="Base64 of a 32-byte key: backups are encrypted with AES-256-GCM and restores decrypt with it."
    )
    operation_lease_seconds: float = Field(default=15.0, gt=0, description="Lease of a node on a running operation.")
    node_id: str | None = Field(default=None, description="Name of this node in operation leases (default hostname:pid).")
    log_level: str = Field(default="info")

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
    def issuer(self) -> str:
        return f"{self.resolved_public_url}/{self.tenant_id}/v2.0"
