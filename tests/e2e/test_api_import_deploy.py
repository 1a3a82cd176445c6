"""An ARM template that imports an API from a definition (as Bicep's `format`/`value` do) gets the
same import as a direct PUT; a definition that cannot be imported fails the deployment."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resource.deployments.models import Deployment, DeploymentProperties

from tests.conftest import sdk_client
from tests.deployments.templates import APIM, SCHEMA, V
from tests.deployments.test_deployments_sdk import resource_clients
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).parent.parent / "fixtures" / "openapi"


def _template(value: str) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {"serviceName": {"type": "string"}, "definition": {"type": "string"}},
        "resources": [
            {
                "type": APIM,
                "apiVersion": V,
                "name": "[parameters('serviceName')]",
                "location": "[resourceGroup().location]",
                "sku": {"name": "Developer", "capacity": 1},
                "properties": {"publisherEmail": "ops@contoso.example", "publisherName": "Contoso"},
            },
            {
                "type": f"{APIM}/apis",
                "apiVersion": V,
                "name": "[format('{0}/petstore', parameters('serviceName'))]",
                "dependsOn": ["[resourceId('Microsoft.ApiManagement/service', parameters('serviceName'))]"],
                "properties": {"format": "openapi", "value": "[parameters('definition')]", "path": "pets"},
            },
        ],
    }


def test_template_imports_an_api(server_factory: Callable[..., PorticoServer]) -> None:
    server = server_factory()
    groups, rc = resource_clients(server)
    apim = sdk_client(server)
    rg = f"rg{uuid.uuid4().hex[:8]}"
    groups.resource_groups.create_or_update(rg, {"location": "westeurope"})
    svc = f"dep{uuid.uuid4().hex[:8]}"
    text = (FIXTURES / "petstore.yaml").read_text()
    props = DeploymentProperties(
        mode="Incremental",
        template=_template(text),
        parameters={"serviceName": {"value": svc}, "definition": {"value": text}},
    )
    result = rc.deployments.begin_create_or_update(rg, "imp", Deployment(properties=props)).result()
    assert result.properties.provisioning_state == "Succeeded"
    assert apim.api.get(rg, svc, "petstore").display_name == "Swagger Petstore"
    assert {o.name for o in apim.api_operation.list_by_api(rg, svc, "petstore")} == {
        "listpets",
        "createpets",
        "showpetbyid",
    }
    bad = DeploymentProperties(
        mode="Incremental",
        template=_template("x"),
        parameters={"serviceName": {"value": svc}, "definition": {"value": "openapi: 3.0.0\npaths: {}\n"}},
    )
    with pytest.raises(HttpResponseError) as err:
        rc.deployments.begin_create_or_update(rg, "bad", Deployment(properties=bad)).result()
    assert "no paths" in str(err.value.message) or "no paths" in str(err.value), err.value
    assert {o.name for o in apim.api_operation.list_by_api(rg, svc, "petstore")} == {
        "listpets",
        "createpets",
        "showpetbyid",
    }
