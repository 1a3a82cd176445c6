"""Templates as Bicep and the Azure quickstarts write them for API Management."""

from __future__ import annotations

from typing import Any

SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
APIM = "Microsoft.ApiManagement/service"
V = "2024-05-01"


def service_template(*, apis: int = 2, operations: int = 2, secret: bool = True) -> dict[str, Any]:
    """A complete service: named values (one secret), a backend, APIs with operations and policies,
    a product with an API and a group link, a user and a subscription."""
    return {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {
            "serviceName": {"type": "string"},
            "publisherEmail": {"type": "string", "defaultValue": "ops@contoso.example"},
            "sku": {
                "type": "string",
                "defaultValue": "Developer",
                "allowedValues": ["Developer", "Standard", "Premium"],
            },
            "backendSecret": {"type": "securestring"},
            "apiCount": {"type": "int", "defaultValue": apis, "minValue": 0, "maxValue": 500},
        },
        "variables": {
            "svc": "[resourceId('Microsoft.ApiManagement/service', parameters('serviceName'))]",
            "ops": [f"op{i}" for i in range(operations)],
        },
        "resources": [
            {
                "type": APIM,
                "apiVersion": V,
                "name": "[parameters('serviceName')]",
                "location": "[resourceGroup().location]",
                "sku": {"name": "[parameters('sku')]", "capacity": 1},
                "properties": {
                    "publisherEmail": "[parameters('publisherEmail')]",
                    "publisherName": "Contoso",
                },
                "resources": [
                    {
                        "type": "namedValues",
                        "apiVersion": V,
                        "name": "backend-secret",
                        "dependsOn": ["[variables('svc')]"],
                        "properties": {
                            "displayName": "backend-secret",
                            "value": "[parameters('backendSecret')]",
                            "secret": secret,
                        },
                    }
                ],
            },
            {
                "type": f"{APIM}/namedValues",
                "apiVersion": V,
                "name": "[format('{0}/{1}', parameters('serviceName'), 'region')]",
                "dependsOn": ["[variables('svc')]"],
                "properties": {"displayName": "region", "value": "[resourceGroup().location]"},
            },
            {
                "type": f"{APIM}/backends",
                "apiVersion": V,
                "name": "[concat(parameters('serviceName'), '/orders')]",
                "dependsOn": ["[variables('svc')]"],
                "properties": {"url": "https://orders.example/api", "protocol": "http"},
            },
            {
                "type": f"{APIM}/apis",
                "apiVersion": V,
                "name": "[format('{0}/api{1}', parameters('serviceName'), copyIndex())]",
                "copy": {"name": "apiLoop", "count": "[parameters('apiCount')]"},
                "dependsOn": ["[variables('svc')]"],
                "properties": {
                    "displayName": "[format('API {0}', copyIndex(1))]",
                    "path": "[format('api{0}', copyIndex())]",
                    "protocols": ["https"],
                    "serviceUrl": "https://orders.example/api",
                    "subscriptionRequired": True,
                },
            },
            {
                "type": f"{APIM}/apis/operations",
                "apiVersion": V,
                "name": "[format('{0}/api{1}/{2}', parameters('serviceName'), div(copyIndex(), length(variables('ops'))), variables('ops')[mod(copyIndex(), length(variables('ops')))])]",
                "copy": {
                    "name": "opLoop",
                    "count": "[mul(parameters('apiCount'), length(variables('ops')))]",
                },
                "dependsOn": ["apiLoop"],
                "properties": {
                    "displayName": "[format('Operation {0}', copyIndex())]",
                    "method": "GET",
                    "urlTemplate": "[format('/items/{0}', copyIndex())]",
                },
            },
            {
                "type": f"{APIM}/apis/policies",
                "apiVersion": V,
                "name": "[format('{0}/api0/policy', parameters('serviceName'))]",
                "condition": "[greater(parameters('apiCount'), 0)]",
                "dependsOn": ["apiLoop"],
                "properties": {
                    "format": "rawxml",
                    "value": '<policies><inbound><base /><set-header name="x-region" exists-action="override"><value>{{region}}</value></set-header><set-variable name="r" value="@(context.Request.Headers.GetValueOrDefault("x-r", "none"))" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>',
                },
            },
            {
                "type": f"{APIM}/products",
                "apiVersion": V,
                "name": "[format('{0}/starter', parameters('serviceName'))]",
                "dependsOn": ["[variables('svc')]"],
                "properties": {
                    "displayName": "Starter",
                    "subscriptionRequired": True,
                    "approvalRequired": False,
                    "state": "published",
                },
                "resources": [
                    {
                        "type": "apis",
                        "apiVersion": V,
                        "name": "api0",
                        "condition": "[greater(parameters('apiCount'), 0)]",
                        "dependsOn": [
                            "[resourceId('Microsoft.ApiManagement/service/products', parameters('serviceName'), 'starter')]",
                            "apiLoop",
                        ],
                    },
                    {
                        "type": "groups",
                        "apiVersion": V,
                        "name": "developers",
                        "dependsOn": [
                            "[resourceId('Microsoft.ApiManagement/service/products', parameters('serviceName'), 'starter')]"
                        ],
                    },
                ],
            },
            {
                "type": f"{APIM}/users",
                "apiVersion": V,
                "name": "[format('{0}/alice', parameters('serviceName'))]",
                "dependsOn": ["[variables('svc')]"],
                "properties": {"email": "alice@contoso.example", "firstName": "Alice", "lastName": "Doe"},
            },
            {
                "type": f"{APIM}/subscriptions",
                "apiVersion": V,
                "name": "[format('{0}/alice-starter', parameters('serviceName'))]",
                "dependsOn": [
                    "[resourceId('Microsoft.ApiManagement/service/users', parameters('serviceName'), 'alice')]",
                    "[resourceId('Microsoft.ApiManagement/service/products', parameters('serviceName'), 'starter')]",
                ],
                "properties": {
                    "displayName": "Alice on Starter",
                    "scope": "[resourceId('Microsoft.ApiManagement/service/products', parameters('serviceName'), 'starter')]",
                    "ownerId": "[resourceId('Microsoft.ApiManagement/service/users', parameters('serviceName'), 'alice')]",
                    "state": "active",
                },
            },
        ],
        "outputs": {
            "gatewayUrl": {"type": "string", "value": "[reference(parameters('serviceName')).gatewayUrl]"},
            "serviceId": {"type": "string", "value": "[variables('svc')]"},
            "primaryKey": {
                "type": "securestring",
                "value": "[listSecrets(resourceId('Microsoft.ApiManagement/service/subscriptions', parameters('serviceName'), 'alice-starter'), '2024-05-01').primaryKey]",
            },
            "apiNames": {
                "type": "array",
                "copy": {"count": "[parameters('apiCount')]", "input": "[format('api{0}', copyIndex())]"},
            },
        },
    }
