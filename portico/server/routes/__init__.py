"""Every management endpoint, one line each: URL template → handler (see `table.py`).

Adding an ARM endpoint is one line here plus its handler in a module of this package.
"""

from __future__ import annotations

from portico.arm.versions import DELETED_SERVICES, METADATA, RESOURCES, SUBSCRIPTIONS
from portico.server.routes import (
    apis,
    arm_meta,
    authorizations,
    backups,
    deleted_services,
    deployments,
    entities,
    groups,
    keyvault,
    operations,
    providers,
    quotas,
    reports,
    schedules,
    service_views,
    services,
    status,
    subscriptions,
)
from portico.server.routes.table import Route, RouteTable

_SUB = "subscriptions/{subscriptionId}"
_RG = _SUB + "/resourceGroups/{resourceGroupName}"
_DEP = _RG + "/providers/Microsoft.Resources/deployments"
_GET = frozenset({"GET"})
_POST = frozenset({"POST"})
_ITEM = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_SVC = _RG + "/providers/Microsoft.ApiManagement/service/{serviceName}"
_V = service_views

ROUTES = RouteTable(
    [
        Route("metadata/endpoints", arm_meta.metadata_endpoints, versions=METADATA, authenticated=False),
        Route("subscriptions", subscriptions.list_subscriptions, versions=SUBSCRIPTIONS),
        Route(_SUB, subscriptions.subscription, versions=SUBSCRIPTIONS),
        Route(_SUB + "/locations", subscriptions.list_locations, versions=SUBSCRIPTIONS),
        Route("tenants", subscriptions.list_tenants, versions=SUBSCRIPTIONS),
        Route("providers", providers.list_providers, versions=RESOURCES),
        Route(_SUB + "/providers", providers.list_providers, versions=RESOURCES),
        Route(_SUB + "/providers/{namespace}", providers.provider, versions=RESOURCES),
        Route(_SUB + "/resources", providers.list_resources, versions=RESOURCES),
        Route(_RG + "/resources", providers.list_resources, versions=RESOURCES),
        Route(
            _SUB + "/providers/Microsoft.ApiManagement/deletedservices",
            deleted_services.list_deleted,
            versions=DELETED_SERVICES,
        ),
        Route(
            _SUB + "/providers/Microsoft.ApiManagement/locations/{location}/deletedservices/{serviceName}",
            deleted_services.deleted_service,
            versions=DELETED_SERVICES,
        ),
        Route(_SUB + "/providers/Microsoft.ApiManagement/service", services.list_in_subscription),
        Route(_SUB + "/providers/Microsoft.ApiManagement/checkNameAvailability", services.check_name),
        Route(_SUB + "/resourceGroups", groups.list_groups, versions=RESOURCES),
        Route(_RG, groups.resource_group, versions=RESOURCES),
        Route(_RG + "/providers/Microsoft.ApiManagement/service", services.list_in_group),
        Route(_DEP, deployments.list_deployments, versions=RESOURCES),
        Route(_DEP + "/{deploymentName}", deployments.deployment, versions=RESOURCES),
        Route(
            _DEP + "/{deploymentName}/operationStatuses/{runId}",
            deployments.operation_status,
            versions=RESOURCES,
        ),
        Route(_DEP + "/{deploymentName}/cancel", deployments.cancel, versions=RESOURCES),
        Route(_DEP + "/{deploymentName}/validate", deployments.validate, versions=RESOURCES),
        Route(_DEP + "/{deploymentName}/whatIf", deployments.what_if, versions=RESOURCES),
        Route(_DEP + "/{deploymentName}/exportTemplate", deployments.export_template, versions=RESOURCES),
        Route(_DEP + "/{deploymentName}/operations", deployments.operations, versions=RESOURCES),
        Route(_DEP + "/{deploymentName}/operations/{operationId}", deployments.operation, versions=RESOURCES),
        # deployment operations are also served without the provider segment, as ARM does
        Route(_RG + "/deployments/{deploymentName}/operations", deployments.operations, versions=RESOURCES),
        Route(
            _RG + "/deployments/{deploymentName}/operations/{operationId}",
            deployments.operation,
            versions=RESOURCES,
        ),
        Route(_SVC, services.service),
        Route(_SVC + "/backup", backups.backup),
        Route(_SVC + "/restore", backups.restore),
        Route(_SVC + "/listBackups", backups.list_backups),
        Route(_SVC + "/verifyBackup", backups.verify_backup),
        Route(_SVC + "/restorePreview", backups.restore_preview),
        Route(_SVC + "/backupSchedules", schedules.backup_schedules),
        Route(_SVC + "/backupSchedules/{scheduleName}", schedules.backup_schedule),
        Route(_SVC + "/backupSchedules/{scheduleName}/{action}", schedules.backup_schedule_action),
        Route(_SVC + "/backupStatus", status.backup_status),
        Route(_SVC + "/reports/{aggregation}", reports.report),
        Route(_SVC + "/operationResults/{operationId}", operations.operation_result),
        Route(_SVC + "/operationStatuses/{operationId}", operations.operation_status),
        Route(_SVC + "/apis/{apiId}", apis.api),
        Route(_SVC + "/apis/{apiId}/exportDocument", apis.export_document, authenticated=False),
        Route(_SVC + "/apis/{apiId}/revisions", apis.list_revisions),
        Route("providers/Microsoft.ApiManagement/operations", _V.provider_operations),
        Route(
            _SUB + "/providers/Microsoft.ApiManagement/locations/{location}/operationStatuses/{operationId}",
            _V.location_operation,
        ),
        Route(
            _SUB + "/providers/Microsoft.ApiManagement/locations/{location}/operationResults/{operationId}",
            _V.location_operation,
        ),
        Route(_SUB + "/providers/Microsoft.ApiManagement/skus", _V.subscription_skus),
        Route(_SUB + "/providers/Microsoft.ApiManagement/gateways", _V.standalone_gateways),
        Route(_RG + "/providers/Microsoft.ApiManagement/gateways", _V.standalone_gateways),
        Route(_RG + "/providers/Microsoft.ApiManagement/gateways/{gatewayName}", _V.standalone_gateways),
        Route(_RG + "/providers/Microsoft.ApiManagement/gateways/{gatewayName}/skus", _V.standalone_gateways),
        Route(
            _RG + "/providers/Microsoft.ApiManagement/gateways/{gatewayName}/configConnections",
            _V.standalone_gateways,
        ),
        Route(
            _RG
            + "/providers/Microsoft.ApiManagement/gateways/{gatewayName}/configConnections/{connectionName}",
            _V.standalone_gateways,
        ),
        Route(_SUB + "/providers/Microsoft.ApiManagement/getDomainOwnershipIdentifier", _V.domain_ownership),
        Route(_SVC + "/allPolicies", _V.all_policies),
        Route(_SVC + "/workspaces", _V.workspaces),
        Route(_SVC + "/workspaces/{path*}", _V.workspaces),
        Route(_SVC + "/workspaceLinks", _V.workspace_links),
        Route(_SVC + "/workspaceLinks/{workspaceId}", _V.workspace_links),
        Route(_SVC + "/policyDescriptions", _V.policy_descriptions),
        Route(_SVC + "/issues", _V.issues),
        Route(_SVC + "/issues/{issueId}", _V.issues),
        Route(_SVC + "/tagResources", _V.tag_resources),
        Route(_SVC + "/apisByTags", _V.apis_by_tags),
        Route(_SVC + "/productsByTags", _V.products_by_tags),
        Route(_SVC + "/apis/{apiId}/operationsByTags", _V.operations_by_tags),
        Route(_SVC + "/apis/{apiId}/products", _V.api_products),
        Route(_SVC + "/users/{userId}/groups", _V.user_groups),
        Route(_SVC + "/users/{userId}/identities", _V.user_identities),
        Route(_SVC + "/users/{userId}/subscriptions", _V.user_subscriptions),
        Route(_SVC + "/users/{userId}/subscriptions/{sid}", _V.user_subscriptions),
        Route(_SVC + "/users/{userId}/{action}", _V.user_action),
        Route(_SVC + "/users/{userId}/confirmations/password/send", _V.user_confirmation),
        Route(_SVC + "/products/{productId}/subscriptions", _V.product_subscriptions),
        Route(_SVC + "/quotas/{quotaCounterKey}", quotas.quota_counters),
        Route(_SVC + "/quotas/{quotaCounterKey}/periods/{quotaPeriodKey}", quotas.quota_counters),
        Route(_SVC + "/regions", _V.regions),
        Route(_SVC + "/skus", _V.service_skus),
        Route(_SVC + "/networkstatus", _V.network_status),
        Route(_SVC + "/locations/{locationName}/networkstatus", _V.network_status),
        Route(_SVC + "/outboundNetworkDependenciesEndpoints", _V.outbound_dependencies),
        Route(_SVC + "/privateEndpointConnections", _V.private_endpoint_connections),
        Route(_SVC + "/privateEndpointConnections/{connectionName}", _V.private_endpoint_connections),
        Route(_SVC + "/privateLinkResources", _V.private_link_resources),
        Route(_SVC + "/privateLinkResources/{privateLinkSubResourceName}", _V.private_link_resources),
        Route(_SVC + "/getssotoken", _V.sso_token),
        Route(_SVC + "/connectivityCheck", _V.connectivity_check),
        Route(_SVC + "/applynetworkconfigurationupdates", _V.network_update),
        Route(_SVC + "/migrateToStv2", _V.network_update),
        Route(_SVC + "/tenant/configuration/{operation}", _V.tenant_configuration),
        Route(_SVC + "/tenant/{accessName}/git/{action}", _V.tenant_git_regenerate),
        *[
            Route(_SVC + f"/{owner}/{{ownerId}}/{links}{tail}", _V.links)
            for owner, links in (
                ("products", "apiLinks"),
                ("products", "groupLinks"),
                ("tags", "apiLinks"),
                ("tags", "productLinks"),
                ("tags", "operationLinks"),
            )
            for tail in ("", "/{linkId}")
        ],
        Route(_SVC + "/authorizationProviders", authorizations.providers),
        Route(_SVC + "/authorizationProviders/{authorizationProviderId}", authorizations.provider),
        Route(
            _SVC + "/authorizationProviders/{authorizationProviderId}/authorizations",
            authorizations.authorizations,
        ),
        Route(
            _SVC + "/authorizationProviders/{authorizationProviderId}/authorizations/{authorizationId}",
            authorizations.authorization,
        ),
        Route(
            _SVC
            + "/authorizationProviders/{authorizationProviderId}/authorizations/{authorizationId}/getLoginLinks",
            authorizations.login_links,
        ),
        Route(_SVC + "/certificates/{certificateId}", keyvault.certificate),
        Route(_SVC + "/certificates/{certificateId}/refreshSecret", keyvault.refresh_certificate),
        Route(_SVC + "/namedValues/{namedValueId}", keyvault.named_value),
        Route(_SVC + "/namedValues/{namedValueId}/refreshSecret", keyvault.refresh_named_value),
        Route(_SVC + "/{path*}", entities.entity),
        Route(_SUB + "/providers/{namespace}/register", providers.register, versions=RESOURCES),
    ]
)
