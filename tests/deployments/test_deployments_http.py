"""Template deployments through the management API, in process (no network): deploy, poll, read
back, what-if, validate, Complete mode, failures and secrets."""

from __future__ import annotations

import asyncio
import copy
import uuid
from typing import Any

from tests.arm.inproc import SUB, InProc, assert_arm_error

from .templates import APIM, V, service_template

RV = "2025-04-01"
SECRET = "s3cr3t-" + uuid.uuid4().hex


def dep_path(node: InProc, rg: str, name: str) -> str:
    return f"{node.rg_path(rg)}/providers/Microsoft.Resources/deployments/{name}"


def body(template: dict[str, Any], mode: str = "Incremental", **params: Any) -> dict[str, Any]:
    return {
        "properties": {
            "mode": mode,
            "template": template,
            "parameters": {k: {"value": v} for k, v in params.items()},
        }
    }


async def deploy(node: InProc, rg: str, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    r = await node.put(dep_path(node, rg, name), payload, api_version=RV)
    assert r.status_code == 201, r.text
    assert r.json()["properties"]["provisioningState"] == "Accepted"
    status_url = r.headers["Azure-AsyncOperation"]
    assert r.headers["Retry-After"]
    for _ in range(600):
        s = await node.client.get(status_url, headers=node.auth)
        assert s.status_code == 200, s.text
        if s.json()["status"] not in ("Accepted", "Running"):
            break
        assert s.headers["Retry-After"]
        await asyncio.sleep(0.05)
    r = await node.get(dep_path(node, rg, name), api_version=RV)
    assert r.status_code == 200
    return dict(r.json())


async def test_deploys_a_complete_service_and_reports_it(node: InProc) -> None:
    rg = await node.group()
    svc = f"tpl{uuid.uuid4().hex[:8]}"
    result = await deploy(node, rg, "main", body(service_template(), serviceName=svc, backendSecret=SECRET))
    props = result["properties"]
    assert props["provisioningState"] == "Succeeded", props.get("error")
    assert props["outputs"]["serviceId"]["value"].endswith(f"/service/{svc}")
    assert props["outputs"]["gatewayUrl"]["value"].startswith("https://")
    assert props["outputs"]["apiNames"]["value"] == ["api0", "api1"]
    assert "value" not in props["outputs"]["primaryKey"]  # secure outputs are not returned
    assert props["parameters"]["backendSecret"] == {"type": "SecureString"}
    assert SECRET not in str(result)
    # what was deployed is there, through the ordinary API
    base = node.svc_path(rg, svc)
    ops = (await node.get(f"{base}/apis/api1/operations")).json()["value"]
    assert sorted(o["name"] for o in ops) == ["op0", "op1"]
    sub = (await node.get(f"{base}/subscriptions/alice-starter")).json()
    assert sub["properties"]["scope"].endswith("/products/starter")
    policy = (await node.get(f"{base}/apis/api0/policies/policy")).json()
    assert "x-region" in policy["properties"]["value"]
    nv = await node.request("POST", f"{base}/namedValues/backend-secret/listValue")
    assert nv.json()["value"] == SECRET
    # operations: one per resource, all succeeded, none carries the secret
    r = await node.get(dep_path(node, rg, "main") + "/operations", api_version=RV)
    operations = r.json()["value"]
    assert len(operations) == 1 + 1 + 1 + 1 + 2 + 4 + 1 + 1 + 2 + 1 + 1
    assert {o["properties"]["provisioningState"] for o in operations} == {"Succeeded"}
    assert SECRET not in r.text
    one = operations[0]
    r = await node.get(dep_path(node, rg, "main") + f"/operations/{one['operationId']}", api_version=RV)
    assert r.json()["operationId"] == one["operationId"]
    exported = await node.request("POST", dep_path(node, rg, "main") + "/exportTemplate", api_version=RV)
    assert exported.json()["template"]["resources"][0]["type"] == APIM
    listed = (
        await node.get(f"{node.rg_path(rg)}/providers/Microsoft.Resources/deployments", api_version=RV)
    ).json()
    assert [d["name"] for d in listed["value"]] == ["main"]


async def test_what_if_shows_create_then_no_change_then_modify(node: InProc) -> None:
    rg = await node.group()
    svc = f"wif{uuid.uuid4().hex[:8]}"
    tpl = service_template(apis=1, operations=1)
    payload = body(tpl, serviceName=svc, backendSecret=SECRET)
    r = await node.request("POST", dep_path(node, rg, "w") + "/whatIf", json=payload, api_version=RV)
    assert r.status_code == 200, r.text
    changes = r.json()["properties"]["changes"]
    assert {c["changeType"] for c in changes} == {"Create"}
    assert (await deploy(node, rg, "w", payload))["properties"]["provisioningState"] == "Succeeded"
    r = await node.request("POST", dep_path(node, rg, "w") + "/whatIf", json=payload, api_version=RV)
    changes = r.json()["properties"]["changes"]
    noisy = [(c["resourceId"], c["delta"]) for c in changes if c["changeType"] != "NoChange"]
    assert not noisy, noisy
    changed = copy.deepcopy(tpl)
    changed["resources"][3]["properties"]["displayName"] = "Renamed"
    r = await node.request(
        "POST",
        dep_path(node, rg, "w") + "/whatIf",
        json=body(changed, serviceName=svc, backendSecret=SECRET),
        api_version=RV,
    )
    modified = [c for c in r.json()["properties"]["changes"] if c["changeType"] == "Modify"]
    assert len(modified) == 1 and modified[0]["resourceId"].endswith("/apis/api0")
    assert modified[0]["delta"] == [
        {
            "path": "properties.displayName",
            "propertyChangeType": "Modify",
            "before": "API 1",
            "after": "Renamed",
        }
    ]


async def test_complete_mode_deletes_unlisted_services_but_not_children(node: InProc) -> None:
    rg = await node.group()
    keep, drop = f"keep{uuid.uuid4().hex[:6]}", f"drop{uuid.uuid4().hex[:6]}"
    await node.service(rg, drop)
    tpl = {
        "$schema": "x",
        "contentVersion": "1.0.0.0",
        "resources": [
            {
                "type": APIM,
                "apiVersion": V,
                "name": keep,
                "location": "westeurope",
                "sku": {"name": "Developer", "capacity": 1},
                "properties": {"publisherEmail": "a@b.example", "publisherName": "A"},
            }
        ],
    }
    first = await deploy(node, rg, "c1", body(tpl))
    assert first["properties"]["provisioningState"] == "Succeeded"
    # a child the template does not list survives Complete mode
    r = await node.put(f"{node.svc_path(rg, keep)}/tags/manual", {"properties": {"displayName": "manual"}})
    assert r.status_code == 201
    r = await node.request(
        "POST", dep_path(node, rg, "c2") + "/whatIf", json=body(tpl, "Complete"), api_version=RV
    )
    changes = r.json()["properties"]["changes"]
    assert changes[0]["changeType"] == "Delete"
    assert changes[0]["resourceId"].endswith(f"/service/{drop}")
    result = await deploy(node, rg, "c2", body(tpl, "Complete"))
    assert result["properties"]["provisioningState"] == "Succeeded", result["properties"].get("error")
    assert (await node.get(node.svc_path(rg, drop))).status_code == 404
    assert (await node.get(f"{node.svc_path(rg, keep)}/tags/manual")).status_code == 200


async def test_broken_templates_fail_validation_with_their_location_and_change_nothing(node: InProc) -> None:
    rg = await node.group()
    svc = f"bad{uuid.uuid4().hex[:8]}"
    good = service_template(apis=1, operations=1)
    cases: list[tuple[dict[str, Any], str, str]] = []
    unknown_fn = copy.deepcopy(good)
    unknown_fn["resources"][3]["properties"]["path"] = "[frobnicate('x')]"
    cases.append((unknown_fn, "frobnicate", "resources[3].properties.path"))
    bad_type = copy.deepcopy(good)
    bad_type["resources"][2]["type"] = f"{APIM}/flux"
    cases.append((bad_type, "flux", "resources[2].type"))
    bad_version = copy.deepcopy(good)
    bad_version["resources"][1]["apiVersion"] = "1999-01-01"
    cases.append((bad_version, "1999-01-01", "resources[1].apiVersion"))
    bad_param = copy.deepcopy(good)
    bad_param["resources"][2]["properties"]["url"] = "[parameters('nope')]"
    cases.append((bad_param, "nope", "resources[2].properties.url"))
    cycle = copy.deepcopy(good)
    cycle["resources"][2]["dependsOn"] = [f"[resourceId('{APIM}/users', parameters('serviceName'), 'alice')]"]
    cycle["resources"][7]["dependsOn"] = [
        f"[resourceId('{APIM}/backends', parameters('serviceName'), 'orders')]"
    ]
    cycle["resources"][2]["dependsOn"].append("[variables('svc')]")
    cases.append((cycle, "Circular", "dependsOn"))
    for tpl, text, where in cases:
        for action in ("validate", None):
            path = dep_path(node, rg, "broken") + (f"/{action}" if action else "")
            payload = body(tpl, serviceName=svc, backendSecret=SECRET)
            r = await (
                node.request("POST", path, json=payload, api_version=RV)
                if action
                else node.put(path, payload, api_version=RV)
            )
            err = assert_arm_error(r, 400)
            assert text in err["message"] and where in err["message"], err
            assert SECRET not in r.text
    assert (await node.get(node.svc_path(rg, svc))).status_code == 404
    assert (await node.get(dep_path(node, rg, "broken"), api_version=RV)).status_code == 404
    r = await node.put(dep_path(node, rg, "x"), body(good, serviceName=svc), api_version=RV)
    assert "backendSecret" in assert_arm_error(r, 400)["message"]
    r = await node.put(
        dep_path(node, rg, "x"), body(good, serviceName=svc, backendSecret="x", sku="Basic"), api_version=RV
    )
    assert "allowed values" in assert_arm_error(r, 400)["message"]
    r = await node.put(
        dep_path(node, rg, "x"), body(good, serviceName=svc, backendSecret="x", extra=1), api_version=RV
    )
    assert "extra" in assert_arm_error(r, 400)["message"]
    r = await node.put(
        dep_path(node, rg, "x"), body(good, "Replace", serviceName=svc, backendSecret="x"), api_version=RV
    )
    assert_arm_error(r, 400, "InvalidDeploymentMode")
    r = await node.put(
        dep_path(node, rg, "x"), {"properties": {"templateLink": {"uri": "https://x/t.json"}}}, api_version=RV
    )
    assert_arm_error(r, 400, "UnsupportedDeploymentFeature")


async def test_a_failing_resource_fails_the_deployment_and_keeps_earlier_ones(node: InProc) -> None:
    rg = await node.group()
    svc = f"fail{uuid.uuid4().hex[:8]}"
    tpl = service_template(apis=1, operations=1)
    tpl["resources"][2]["properties"]["url"] = "not a url"  # the backend is refused by its own validation
    result = await deploy(node, rg, "f", body(tpl, serviceName=svc, backendSecret=SECRET))
    props = result["properties"]
    assert props["provisioningState"] == "Failed"
    assert props["error"]["code"] == "DeploymentFailed"
    assert "orders" in props["error"]["message"]
    assert props["error"]["details"][0]["target"].endswith("/backends/orders")
    assert (await node.get(node.svc_path(rg, svc))).status_code == 200  # earlier resources stay
    ops = (await node.get(dep_path(node, rg, "f") + "/operations", api_version=RV)).json()["value"]
    failed = [o for o in ops if o["properties"]["provisioningState"] == "Failed"]
    assert len(failed) == 1 and failed[0]["properties"]["targetResource"]["resourceName"] == f"{svc}/orders"


async def test_deployments_to_one_group_run_one_at_a_time(node: InProc) -> None:
    rg = await node.group()
    tpl = service_template(apis=20, operations=5)
    first = await node.put(
        dep_path(node, rg, "one"),
        body(tpl, serviceName=f"c{uuid.uuid4().hex[:8]}", backendSecret="x"),
        api_version=RV,
    )
    assert first.status_code == 201
    second = await node.put(
        dep_path(node, rg, "two"),
        body(tpl, serviceName=f"c{uuid.uuid4().hex[:8]}", backendSecret="x"),
        api_version=RV,
    )
    err = assert_arm_error(second, 409, "DeploymentActive")
    assert "one" in err["message"]
    r = await node.request("POST", dep_path(node, rg, "one") + "/cancel", api_version=RV)
    assert r.status_code in (204, 409)
    for _ in range(400):
        state = (await node.get(dep_path(node, rg, "one"), api_version=RV)).json()["properties"][
            "provisioningState"
        ]
        if state not in ("Accepted", "Running"):
            break
        await asyncio.sleep(0.05)
    assert state in ("Canceled", "Succeeded")
    assert SUB


async def test_bicep_modules_deploy_as_nested_deployments_with_their_outputs(node: InProc) -> None:
    rg = await node.group()
    svc = f"mod{uuid.uuid4().hex[:8]}"
    module = {
        "$schema": "x",
        "contentVersion": "1.0.0.0",
        "parameters": {"serviceName": {"type": "string"}, "apiName": {"type": "string"}},
        "resources": [
            {
                "type": f"{APIM}/apis",
                "apiVersion": V,
                "name": "[format('{0}/{1}', parameters('serviceName'), parameters('apiName'))]",
                "properties": {
                    "displayName": "[toUpper(parameters('apiName'))]",
                    "path": "[parameters('apiName')]",
                },
            }
        ],
        "outputs": {
            "apiId": {
                "type": "string",
                "value": "[resourceId('Microsoft.ApiManagement/service/apis', parameters('serviceName'), parameters('apiName'))]",
            }
        },
    }
    tpl = {
        "$schema": "x",
        "contentVersion": "1.0.0.0",
        "parameters": {"serviceName": {"type": "string"}},
        "resources": [
            {
                "type": APIM,
                "apiVersion": V,
                "name": "[parameters('serviceName')]",
                "location": "westeurope",
                "sku": {"name": "Developer", "capacity": 1},
                "properties": {"publisherEmail": "a@b.example", "publisherName": "A"},
            },
            {
                "type": "Microsoft.Resources/deployments",
                "apiVersion": "2022-09-01",
                "name": "apiModule",
                "properties": {
                    "expressionEvaluationOptions": {"scope": "inner"},
                    "mode": "Incremental",
                    "parameters": {
                        "serviceName": {"value": "[parameters('serviceName')]"},
                        "apiName": {"value": "orders"},
                    },
                    "template": module,
                },
                # the "Namespace/type/name" form quickstart templates write with concat()
                "dependsOn": ["[concat('Microsoft.ApiManagement/service/', parameters('serviceName'))]"],
            },
            {
                "type": f"{APIM}/tags",
                "apiVersion": V,
                "name": "[format('{0}/from-module', parameters('serviceName'))]",
                "properties": {
                    "displayName": "[last(split(reference('apiModule').outputs.apiId.value, '/'))]"
                },
            },
        ],
        "outputs": {"moduleApi": {"type": "string", "value": "[reference('apiModule').outputs.apiId.value]"}},
    }
    result = await deploy(node, rg, "withmodule", body(tpl, serviceName=svc))
    props = result["properties"]
    assert props["provisioningState"] == "Succeeded", props.get("error")
    assert props["outputs"]["moduleApi"]["value"].endswith(f"/service/{svc}/apis/orders")
    api = (await node.get(f"{node.svc_path(rg, svc)}/apis/orders")).json()
    assert api["properties"]["displayName"] == "ORDERS"
    tag = (await node.get(f"{node.svc_path(rg, svc)}/tags/from-module")).json()
    assert tag["properties"]["displayName"] == "orders"
    nested = (await node.get(dep_path(node, rg, "apiModule"), api_version=RV)).json()
    assert nested["properties"]["provisioningState"] == "Succeeded"


async def test_bodies_are_read_as_arm_reads_them_comments_and_unquoted_keys(node: InProc) -> None:
    """The Azure CLI sends the template file's own text behind an unquoted `template:` key."""
    rg = await node.group()
    svc = f"lax{uuid.uuid4().hex[:8]}"
    raw = (
        '{"properties": {"mode": "Incremental", "parameters": {}, template: {\n'
        "  // a comment, as template files may have\n"
        '  "$schema": "x", "contentVersion": "1.0.0.0",\n'
        f'  "resources": [{{"type": "{APIM}", "apiVersion": "{V}", "name": "{svc}", "location": "westeurope",\n'
        '    "sku": {"name": "Developer", "capacity": 1}, /* inline */\n'
        '    "properties": {"publisherEmail": "a@b.example", "publisherName": "A"},},],\n'
        "}}}"
    )
    path = dep_path(node, rg, "lax")
    r = await node.request(
        "POST", path + "/validate", content=raw, headers={"Content-Type": "application/json"}, api_version=RV
    )
    assert r.status_code == 200, r.text
    r = await node.request(
        "POST",
        path + "/validate",
        content=raw[:-5],
        headers={"Content-Type": "application/json"},
        api_version=RV,
    )
    assert "not valid JSON" in assert_arm_error(r, 400, "InvalidRequestContent")["message"]
    deep = '{"properties": {template: ' + "[" * 200 + "]" * 200 + "}}"
    r = await node.request(
        "POST", path + "/validate", content=deep, headers={"Content-Type": "application/json"}, api_version=RV
    )
    assert "deeper" in assert_arm_error(r, 400, "InvalidRequestContent")["message"]


async def test_backup_schedules_deploy_as_resources_with_their_key_hidden(node: InProc) -> None:
    rg = await node.group()
    svc = f"sch{uuid.uuid4().hex[:8]}"
    key = "k3y-" + uuid.uuid4().hex
    tpl = {
        "$schema": "x",
        "contentVersion": "1.0.0.0",
        "parameters": {"storageKey": {"type": "securestring"}},
        "resources": [
            {
                "type": APIM,
                "apiVersion": V,
                "name": svc,
                "location": "westeurope",
                "sku": {"name": "Developer", "capacity": 1},
                "properties": {"publisherEmail": "a@b.example", "publisherName": "A"},
            },
            {
                "type": f"{APIM}/backupSchedules",
                "apiVersion": V,
                "name": f"{svc}/nightly",
                "dependsOn": [f"[resourceId('{APIM}', '{svc}')]"],
                "properties": {
                    "cron": "0 3 * * *",
                    "timeZone": "Europe/Paris",
                    "storageAccount": "backups",
                    "containerName": "apim",
                    "namePrefix": "nightly/",
                    "accessKey": "[parameters('storageKey')]",
                },
            },
        ],
    }
    result = await deploy(node, rg, "sched", body(tpl, storageKey=key))
    assert result["properties"]["provisioningState"] == "Succeeded", result["properties"].get("error")
    r = await node.get(f"{node.svc_path(rg, svc)}/backupSchedules/nightly")
    assert r.status_code == 200 and r.json()["properties"]["cron"] == "0 3 * * *"
    assert key not in r.text and key not in str(result)


async def test_a_resource_in_a_subscription_not_offered_fails_the_deployment(node: InProc) -> None:
    rg = await node.group()
    elsewhere = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/x"
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [],
        "outputs": {
            "other": {
                "type": "object",
                "value": f"[reference('{elsewhere}/providers/Microsoft.ApiManagement/service/y', '2024-05-01')]",
            }
        },
    }
    props = (await deploy(node, rg, "elsewhere", body(template)))["properties"]
    assert props["provisioningState"] == "Failed", props
    assert "The subscription '11111111-2222-3333-4444-555555555555' could not be found." in str(
        props["error"]
    )
