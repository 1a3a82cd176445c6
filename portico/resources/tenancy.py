"""Subscriptions, tenants and the cloud metadata document: what `az login` and `az cloud register` read.

Portico offers the subscriptions of its configuration (`PORTICO_SUBSCRIPTIONS`) in its one tenant. A
caller sees a subscription when one of its role assignments reaches into it: at `/`, at the
subscription, or anywhere below it (as ARM lists a subscription to whoever has access inside it).
"""

from __future__ import annotations

from typing import Any

from portico.identity.roles import scope_covers
from portico.settings import Settings

# The public cloud's subscription policies; clients only display them.
_POLICIES = {
    "locationPlacementId": "Public_2014-09-01",
    "quotaId": "PayAsYouGo_2014-09-01",
    "spendingLimit": "Off",
}


def reaches(assigned_scope: str, subscription_id: str) -> bool:
    """True when an assignment at `assigned_scope` gives access to something in the subscription."""
    sub_scope = f"/subscriptions/{subscription_id}"
    return scope_covers(assigned_scope, sub_scope) or scope_covers(sub_scope, assigned_scope)


def visible_subscriptions(settings: Settings, assigned_scopes: list[str]) -> list[tuple[str, str]]:
    return [
        (sub_id, name)
        for sub_id, name in settings.subscription_list
        if any(reaches(scope, sub_id) for scope in assigned_scopes)
    ]


def find_subscription(settings: Settings, subscription_id: str) -> tuple[str, str] | None:
    key = subscription_id.casefold()
    return next((s for s in settings.subscription_list if s[0].casefold() == key), None)


def render_subscription(settings: Settings, sub_id: str, name: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{sub_id}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": sub_id,
        "tenantId": settings.tenant_id,
        "displayName": name,
        "state": "Enabled",
        "subscriptionPolicies": dict(_POLICIES),
        "tags": {},
    }


def render_tenant(settings: Settings) -> dict[str, Any]:
    return {
        "id": f"/tenants/{settings.tenant_id}",
        "tenantId": settings.tenant_id,
        "tenantCategory": "Home",
        "displayName": f"Portico ({settings.tenant_id})",
        "domains": [],
        "defaultDomain": settings.tenant_id,
        "tenantType": "AAD",
    }


def cloud_metadata(settings: Settings) -> dict[str, Any]:
    """Azure's cloud metadata document (the public cloud's shape) pointing at this instance.

    `az cloud register --endpoint-resource-manager URL` reads it: the login endpoint is Portico's
    token issuer (MSAL appends the tenant), the audiences are the token audience Portico accepts.
    Endpoints Portico does not serve are given public values so clients that require them parse.
    """
    base = settings.resolved_public_url
    audience = settings.audience
    return {
        "name": "Portico",
        "portal": base,
        "resourceManager": base + "/",
        "authentication": {
            "loginEndpoint": base,
            "audiences": [audience, audience.rstrip("/")],
            "tenant": settings.tenant_id,
            "identityProvider": "AAD",
        },
        "media": "https://rest.media.azure.net",
        "graphAudience": "https://graph.windows.net/",
        "graph": "https://graph.windows.net/",
        "batch": "https://batch.core.windows.net/",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "appInsightsResourceId": "https://api.applicationinsights.io",
        "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
        "attestationResourceId": "https://attest.azure.net",
        "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
        "logAnalyticsResourceId": "https://api.loganalytics.io",
        "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net",
        "suffixes": {
            "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
            "acrLoginServer": "azurecr.io",
            "sqlServerHostname": "database.windows.net",
            "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
            "keyVaultDns": "vault.azure.net",
            "storage": "core.windows.net",
            "azureFrontDoorEndpointSuffix": "azurefd.net",
            "storageSyncEndpointSuffix": "afs.azure.net",
            "mhsmDns": "managedhsm.azure.net",
            "mysqlServerEndpoint": "mysql.database.azure.com",
            "postgresqlServerEndpoint": "postgres.database.azure.com",
            "mariadbServerEndpoint": "mariadb.database.azure.com",
            "synapseAnalytics": "dev.azuresynapse.net",
            "attestationEndpoint": "attest.azure.net",
        },
    }


def render_location(subscription_id: str, display_name: str) -> dict[str, Any]:
    """One region of `GET /subscriptions/{s}/locations` (az normalises `--location` with it)."""
    name = display_name.replace(" ", "").lower()
    return {
        "id": f"/subscriptions/{subscription_id}/locations/{name}",
        "name": name,
        "type": "Region",
        "displayName": display_name,
        "regionalDisplayName": display_name,
        "metadata": {"regionType": "Physical", "regionCategory": "Recommended"},
    }
