"""The relational schema. Alembic migrations under `store/migrations` create exactly this.

Design notes (see docs/architecture.md):
- Every entity of a service (api, operation, policy, user, subscription, link, ...) is a row of
  `entities`, addressed by (store_id, kind, parent, name). Its body is the JSON of its ARM
  `properties` with references kept relative to the service (`/users/u1`, `/products/p1`).
- No foreign keys: retired stores outlive their service until garbage collection.
- A service reads and writes through `services.active_store_id`. A restore loads a fresh store in
  the background and flips that pointer in one short transaction: all-or-nothing by construction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine.default import DefaultExecutionContext

from portico.names import fold_name


def _name_key(context: DefaultExecutionContext) -> str:
    params: dict[str, Any] = context.get_current_parameters()  # type: ignore[no-untyped-call]
    return fold_name(params["name"])


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

resource_groups = Table(
    "resource_groups",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    # fold_name(name): ARM names are case-insensitive; folding may lengthen a name (migration 0009)
    Column("name_key", String(270), primary_key=True),
    Column("name", String(90), nullable=False),
    Column("location", String(64), nullable=False),
    Column("tags", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

services = Table(
    "services",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscription_id", String(64), nullable=False),
    Column("resource_group_key", String(270), nullable=False),
    Column("name_key", String(50), nullable=False, unique=True),  # names are global, like DNS names
    Column("name", String(50), nullable=False),
    Column("location", String(64), nullable=False),
    Column("sku_name", String(32), nullable=False),
    Column("sku_capacity", Integer, nullable=False),
    Column("properties", JSON, nullable=False),
    Column("identity", JSON, nullable=True),
    Column("tags", JSON, nullable=False),
    Column("etag", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("active_store_id", Integer, nullable=False),
    # Set while a backup or restore runs: "backup:<operation id>" or "restore:<operation id>".
    Column("busy", String(80), nullable=True),
)

# A soft-deleted service (ARM keeps a deleted service 48 hours, restorable with `restore: true`):
# its service row moves here and its active store stays, in state "deleted", until the purge.
deleted_services = Table(
    "deleted_services",
    metadata,
    Column("name_key", String(50), primary_key=True),  # service names are global
    Column("name", String(50), nullable=False),
    Column("subscription_id", String(64), nullable=False),
    Column("resource_group", String(90), nullable=False),  # as the group spelled its name
    Column("location", String(64), nullable=False),
    Column("sku_name", String(32), nullable=False),
    Column("sku_capacity", Integer, nullable=False),
    Column("properties", JSON, nullable=False),
    Column("identity", JSON, nullable=True),
    Column("tags", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True), nullable=False),
    Column("purge_at", DateTime(timezone=True), nullable=False),
    Column("store_id", Integer, nullable=False),
)
Index("ix_deleted_services_subscription", deleted_services.c.subscription_id)

stores = Table(
    "stores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", Integer, nullable=True),  # NULL once the service is gone
    Column("state", String(16), nullable=False),  # active | staging | retired
    Column("operation_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Bumped by a trigger on every change to the store's entities while it is active (migration
    # 0002): the gateway's cheap "did the configuration change" marker. Never written by code.
    Column("config_version", BigInteger, nullable=False, server_default="0"),
)

entities = Table(
    "entities",
    metadata,
    Column("store_id", Integer, primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("parent", String(600), primary_key=True),  # "" or a relative path such as "apis/echo"
    Column("name", String(256), primary_key=True),
    Column("display_name", String(300), nullable=True),  # copied out of data for $filter and ordering
    Column("etag", String(32), nullable=False),
    Column("data", Text, nullable=False),  # JSON of the ARM properties, references relative
    # fold_name(name) (migration 0009): names ignore case, look-ups by name go through it. Filled
    # by Python (the default below covers every SQLAlchemy insert; bulk_insert adds it itself).
    # Case folding may lengthen a name (up to 3 characters for one).
    Column("name_key", String(768), nullable=False, default=_name_key),
    sqlite_with_rowid=False,  # clustered by key: backups read a store sequentially
)
Index("ix_entities_kind_name_key", entities.c.store_id, entities.c.kind, entities.c.name_key)

# Which entity keys of an active store changed at which `stores.config_version` (written only by
# the triggers of migration 0002, bounded there): gateway nodes apply changes incrementally.
config_changes = Table(
    "config_changes",
    metadata,
    Column("store_id", Integer, primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("parent", String(600), nullable=False),
    Column("name", String(256), nullable=False),
)

apps = Table(
    "apps",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("secret_hash", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Migration 0009: public (native) clients have no secret (secret_hash "") and sign people in
    # through their registered redirect URIs.
    Column("public_client", Boolean, nullable=False, server_default="0", default=False),
    Column("redirect_uris", JSON, nullable=True),
)

role_assignments = Table(
    "role_assignments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("principal_id", String(200), nullable=False, index=True),
    # "local" = Portico's own token issuer; otherwise a trusted issuer's `iss`, exactly as spelled.
    Column("issuer", String(600), nullable=False, server_default="local"),
    Column("role", String(100), nullable=False),
    Column("scope", String(600), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint(
        "principal_id", "issuer", "role", "scope", name="uq_role_assignments_principal_issuer_role_scope"
    ),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_pem", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("active", Boolean, nullable=False),
)

operations = Table(
    "operations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),  # backup | restore
    Column("service_id", Integer, nullable=False, index=True),
    Column("service_path", String(600), nullable=False),  # ARM id of the service it runs on
    Column("status", String(16), nullable=False),  # InProgress | Succeeded | Failed
    Column("phase", String(32), nullable=False),
    Column("percent", Float, nullable=False),
    Column("counters", JSON, nullable=False),
    Column("params", JSON, nullable=False),  # never holds a key: see portico.jobs
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires", DateTime(timezone=True), nullable=True),
    Column("staging_store_id", Integer, nullable=True),
    Column("bytes", BigInteger, nullable=False, default=0),
)

# Gateway usage records live beside, never inside, the configuration: backups leave them out.
usage = Table(
    "usage",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("service_id", Integer, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("api_id", String(256), nullable=True),
    Column("operation_id", String(80), nullable=True),
    Column("product_id", String(256), nullable=True),
    Column("subscription_id", String(256), nullable=True),
    Column("user_id", String(80), nullable=True),
    Column("method", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("backend_ms", Float, nullable=True),
    Column("total_ms", Float, nullable=False),
    Column("bytes_in", BigInteger, nullable=False),
    Column("bytes_out", BigInteger, nullable=False),
    Column("client_ip", String(64), nullable=True),
    # Added by migration 0002 for the reports API: epoch seconds of `ts` (portable byTime buckets),
    # the gateway's request id, the URL as received (subscription key removed), backend status.
    Column("ts_epoch", BigInteger, nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("url", String(2048), nullable=True),
    Column("backend_status", Integer, nullable=True),
)
Index("ix_usage_service_ts", usage.c.service_id, usage.c.ts)

# --- quota counters (migration 0010) -----------------------------------------------------------
# What the gateway's `quota` and `quota-by-key` policies counted, per store (so a soft-deleted and
# restored service keeps them; a backup restore moves them to the new store), counter key and period.
# Runtime data like `usage`: backups never read it. Written only by `portico/store/quotas.py`.
quota_counters = Table(
    "quota_counters",
    metadata,
    Column("store_id", Integer, primary_key=True),
    Column("counter_key", String(400), primary_key=True),  # quotas.storage_key(): at most 400 characters
    Column("period_key", String(200), primary_key=True),  # "{index}_{ISO 8601 duration}[_{api}[_{op}]]"
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=True),  # NULL: the period never ends
    Column("calls", BigInteger, nullable=False),
    Column("kb", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_quota_counters_period_end", quota_counters.c.period_end)

# --- backup schedules (issue 5; migration 0003) ---------------------------------------------------
# One row per schedule of a service (`.../service/{name}/backupSchedules/{id}`). `sealed_secret`
# holds the storage access key (and encryption key) sealed with the server's secret key
# (portico/secrets_box.py), never in clear. `next_run_at` is the claim: a node fires a run only if its
# conditional UPDATE moves it from the value it read. `running` is the operation id of the run in
# progress (or a short-lived "pending:" marker while it starts): overlapping runs are skipped.
backup_schedules = Table(
    "backup_schedules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", Integer, nullable=False),
    # With service_id, identifies the service instance (SQLite may reuse the id of a deleted one).
    Column("service_created_at", DateTime(timezone=True), nullable=False),
    Column("name_key", String(80), nullable=False),  # lower-cased: ARM names are case-insensitive
    Column("name", String(80), nullable=False),
    Column("properties", JSON, nullable=False),
    Column("sealed_secret", LargeBinary, nullable=True),
    Column("etag", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("next_run_at", DateTime(timezone=True), nullable=True),
    Column("running", String(120), nullable=True),
    Column("last_run", JSON, nullable=True),
    Column("history", JSON, nullable=False),
    UniqueConstraint("service_id", "name_key", name="uq_backup_schedules_service_name"),
)
Index("ix_backup_schedules_next_run_at", backup_schedules.c.next_run_at)

# --- template deployments (Microsoft.Resources/deployments; migration 0006) ------------------------
# One row per deployment name in a resource group. `body` is the rendered deployment properties
# with secure parameter values removed; `template` is kept for exportTemplate and never holds a
# parameter value. `run_id` names the current run (its Azure-AsyncOperation status); `node` the
# process running it, so a restarted node closes its own interrupted runs.
deployments = Table(
    "deployments",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("group_key", String(270), primary_key=True),  # as resource_groups.name_key
    Column("name_key", String(192), primary_key=True),  # fold_name(name) (migration 0009)
    Column("name", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # Accepted | Running | Succeeded | Failed | Canceled
    Column("run_id", String(64), nullable=False),
    Column("node", String(200), nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("body", JSON, nullable=False),
    Column("template", JSON, nullable=False),
    Column("operations", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# --- people of the identity provider (migration 0008) ------------------------------------------
# `upn_key` is the lower-cased sign-in name. `failed_sign_ins` / `locked_until` throttle password
# guessing per user.
users = Table(
    "users",
    metadata,
    Column("oid", String(64), primary_key=True),
    Column("upn_key", String(256), nullable=False, unique=True),
    Column("upn", String(256), nullable=False),
    Column("display_name", String(256), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("failed_sign_ins", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Pending and issued delegated grants: device codes, authorization codes and refresh tokens. `id` is
# the SHA-256 of the secret handed to the client (never the secret itself); `user_code` is the short
# code a person types on the device-code page. `family` ties rotated refresh tokens together so a
# replayed one revokes them all.
auth_grants = Table(
    "auth_grants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # device | code | refresh
    Column("user_code", String(16), nullable=True, unique=True),
    Column("client_id", String(64), nullable=False),
    Column("user_oid", String(64), nullable=True, index=True),
    Column("family", String(64), nullable=True, index=True),
    Column("status", String(16), nullable=False),  # pending | approved | denied | used | active | revoked
    Column("data", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("last_poll_at", DateTime(timezone=True), nullable=True),
)

# Tokens that authorizations of credential providers obtained (access token, refresh token, the
# token response's claims), sealed with the server secret key (`secrets_box`). Runtime state of a
# store's `authorization` entities, never part of their configuration: backups do not read this
# table, and tokens go with their store when it is collected.
credential_tokens = Table(
    "credential_tokens",
    metadata,
    Column("store_id", Integer, primary_key=True),
    Column("provider_key", String(768), primary_key=True),  # fold_name(provider id)
    Column("authorization_key", String(768), primary_key=True),  # fold_name(authorization id)
    Column("sealed", LargeBinary, nullable=False),
    Column("expires_at", Float, nullable=True),  # epoch seconds; NULL: the provider gave no lifetime
    Column("refresh_at", Float, nullable=True),  # epoch seconds after which a new token is fetched
    Column("claimed_until", Float, nullable=True),  # a node refreshing the token holds it until then
    Column("updated_at", Float, nullable=False),
)

__all__ = [
    "apps",
    "auth_grants",
    "backup_schedules",
    "config_changes",
    "credential_tokens",
    "deleted_services",
    "deployments",
    "entities",
    "metadata",
    "operations",
    "quota_counters",
    "resource_groups",
    "role_assignments",
    "services",
    "signing_keys",
    "stores",
    "usage",
    "users",
]
