"""Template deployments driven by the real Azure SDK (azure-mgmt-resource), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.resource.deployments import DeploymentsMgmtClient
from azure.mgmt.resource.deployments.models import (
    Deployment,
    DeploymentProperties,
    DeploymentWhatIf,
    DeploymentWhatIfProperties,
)
from azure.mgmt.resource.resources import ResourceManagementClient

from tests.conftest import sdk_client
from tests.support.server import PorticoServer

from .templates import service_template

pytestmark = pytest.mark.slow
SUB = "00000000-0000-0000-0000-000000000001"


def resource_clients(server: PorticoServer) -> tuple[ResourceManagementClient, DeploymentsMgmtClient]:
    creds = server.admin()
    credential = ClientSecretCredential(
        server.tenant,
        creds["client_id"],
        creds["client_secret"],
        authority=server.url,
        disable_instance_discovery=True,
        connection_verify=server.ca,
    )
    common: dict[str, Any] = {"base_url": server.url, "connection_verify": server.ca, "polling_interval": 0.2}
    return ResourceManagementClient(credential, SUB, **common), DeploymentsMgmtClient(
        credential, SUB, **common
    )


def _params(**values: Any) -> dict[str, Any]:
    return {k: {"value": v} for k, v in values.items()}


def test_sdk_deploys_what_ifs_and_prunes(portico: PorticoServer) -> None:
    groups, rc = resource_clients(portico)
    apim = sdk_client(portico)
    rg = f"rg{uuid.uuid4().hex[:8]}"
    groups.resource_groups.create_or_update(rg, {"location": "westeurope"})
    svc = f"sdk{uuid.uuid4().hex[:8]}"
    secret = "p-" + uuid.uuid4().hex
    props = DeploymentProperties(
        mode="Incremental",
        template=service_template(apis=3, operations=2),
        parameters=_params(serviceName=svc, backendSecret=secret),
    )
    validated = rc.deployments.begin_validate(rg, "main", Deployment(properties=props)).result()
    assert validated.properties.provisioning_state == "Succeeded"
    result = rc.deployments.begin_create_or_update(rg, "main", Deployment(properties=props)).result()
    assert result.properties.provisioning_state == "Succeeded"
    assert result.properties.outputs["apiNames"]["value"] == ["api0", "api1", "api2"]
    assert secret not in str(result.as_dict())
    assert sorted(o.name for o in apim.api_operation.list_by_api(rg, svc, "api2")) == ["op0", "op1"]
    ops = list(rc.deployment_operations.list(rg, "main"))
    assert ops and all(o.properties.provisioning_state == "Succeeded" for o in ops)
    # an idempotent re-run: what-if says nothing changes
    what_if = rc.deployments.begin_what_if(
        rg,
        "main",
        DeploymentWhatIf(
            properties=DeploymentWhatIfProperties(
                mode="Incremental", template=props.template, parameters=props.parameters
            )
        ),
    ).result()
    assert {c.change_type for c in what_if.changes} == {"NoChange"}
    # Complete mode with another service: the first one (not listed) is deleted, what-if shows it first
    other = f"sdk{uuid.uuid4().hex[:8]}"
    small = service_template(apis=0, operations=1)
    complete = DeploymentProperties(
        mode="Complete", template=small, parameters=_params(serviceName=other, backendSecret=secret)
    )
    preview = rc.deployments.begin_what_if(
        rg,
        "prune",
        DeploymentWhatIf(
            properties=DeploymentWhatIfProperties(
                mode="Complete", template=small, parameters=complete.parameters
            )
        ),
    ).result()
    assert preview.changes[0].change_type == "Delete" and preview.changes[0].resource_id.endswith(
        f"/service/{svc}"
    )
    done = rc.deployments.begin_create_or_update(rg, "prune", Deployment(properties=complete)).result()
    assert done.properties.provisioning_state == "Succeeded"
    names = [s.name for s in apim.api_management_service.list_by_resource_group(rg)]
    assert names == [other]
    assert [d.name for d in rc.deployments.list_by_resource_group(rg)] == ["main", "prune"]
    rc.deployments.begin_delete(rg, "main").result()
    assert [d.name for d in rc.deployments.list_by_resource_group(rg)] == ["prune"]


def test_sdk_sees_a_failed_deployment_with_its_cause(portico: PorticoServer) -> None:
    groups, rc = resource_clients(portico)
    rg = f"rg{uuid.uuid4().hex[:8]}"
    groups.resource_groups.create_or_update(rg, {"location": "westeurope"})
    tpl = service_template(apis=1, operations=1)
    tpl["resources"][2]["properties"]["url"] = "not a url"
    props = DeploymentProperties(
        mode="Incremental",
        template=tpl,
        parameters=_params(serviceName=f"f{uuid.uuid4().hex[:8]}", backendSecret="x"),
    )
    with pytest.raises(HttpResponseError) as info:
        rc.deployments.begin_create_or_update(rg, "bad", Deployment(properties=props)).result()
    assert "orders" in str(info.value)
    tpl["resources"][3]["properties"]["path"] = "[frobnicate()]"
    props = DeploymentProperties(mode="Incremental", template=tpl, parameters=props.parameters)
    with pytest.raises(HttpResponseError) as info:
        rc.deployments.begin_validate(rg, "bad2", Deployment(properties=props)).result()
    assert "frobnicate" in str(info.value) and "resources[3].properties.path" in str(info.value)
