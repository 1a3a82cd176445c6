"""Every management endpoint, one line each: URL template → handler (see `table.py`).

Adding an ARM endpoint is one line here plus its handler in a module of this package.
"""

from __future__ import annotations

from portico.arm.versions import DELETED_SERVICES, METADATA, RESOURCES, SUBSCRIPTIONS
from portico.server.routes import (
    apis,
    arm_meta,
    deleted_services,
    deployments,
    dr,
    entities,
    groups,
    providers,
    services,
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
        Route(_SVC + "/backup", dr.backup),
        Route(_SVC + "/restore", dr.restore),
        Route(_SVC + "/listBackups", dr.catalog_action),
        Route(_SVC + "/verifyBackup", dr.catalog_action),
        Route(_SVC + "/restorePreview", dr.catalog_action),
        Route(_SVC + "/backupSchedules", dr.backup_schedules),
        Route(_SVC + "/backupSchedules/{scheduleName}", dr.backup_schedules),
        Route(_SVC + "/backupSchedules/{scheduleName}/{action}", dr.backup_schedules),
        Route(_SVC + "/backupStatus", dr.backup_status),
        Route(_SVC + "/reports/{aggregation}", dr.report),
        Route(_SVC + "/operationResults/{operationId}", dr.operation_result),
        Route(_SVC + "/operationStatuses/{operationId}", dr.operation_status),
        Route(_SVC + "/apis/{apiId}", apis.api),
        Route(_SVC + "/apis/{apiId}/exportDocument", apis.export_document, authenticated=False),
        Route(_SVC + "/apis/{apiId}/revisions", apis.list_revisions),
        Route(_SVC + "/{path*}", entities.entity),
        Route(_SUB + "/providers/{namespace}/register", providers.register, versions=RESOURCES),
    ]
)
