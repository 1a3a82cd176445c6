"""The service resource: PUT/PATCH validation (required fields, SKUs and capacities, names, hostnames,
certificates, identity), rendering (URLs from the configured gateway domain) and secrets never returned."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from portico.arm.errors import ArmError
from portico.resources.service import SKU_CAPACITY, check_service_name, render_service, validate_service
from portico.store.services import Service
from tests.arm.inproc import API, InProc, assert_arm_error
from tests.support.certs import self_signed_pfx

from .conftest import GATEWAY_DOMAIN

PFX_PASSWORD = "pfx-Pa55word!"


def make_pfx(password: str | None = PFX_PASSWORD, cn: str = "api.contoso.test") -> tuple[str, bytes]:
    pfx, cert = self_signed_pfx(cn, password)
    return pfx, cert.public_bytes(Encoding.DER)


PFX, CERT_DER = make_pfx()


def body(**over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "location": "West Europe",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "ops@contoso.example", "publisherName": "Contoso"},
    }
    props = over.pop("properties", None)
    b.update(over)
    if props is not None:
        b["properties"] = {**b["properties"], **props}
    return b


def existing(**over: Any) -> Service:
    values: dict[str, Any] = dict(
        id=1,
        subscription_id="s",
        resource_group="rg",
        name="svc1",
        location="West Europe",
        sku_name="Developer",
        sku_capacity=1,
        properties={"publisherEmail": "ops@contoso.example", "publisherName": "Contoso"},
        identity=None,
        tags={"a": "b"},
        etag="e",
        created_at=dt.datetime.now(dt.UTC),
        active_store_id=1,
        busy=None,
    )
    values.update(over)
    return Service(**values)


def refused(b: Any, *, api_version: str = API, old: Service | None = None, patch: bool = False) -> ArmError:
    with pytest.raises(ArmError) as info:
        validate_service(b, api_version=api_version, existing=old, patch=patch)
    assert info.value.status == 400
    return info.value


def accepted(
    b: Any, *, api_version: str = API, old: Service | None = None, patch: bool = False
) -> dict[str, Any]:
    return validate_service(b, api_version=api_version, existing=old, patch=patch)


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "A1", "contoso-api", "x" * 50, "a-b-c9"])
def test_valid_service_names(name: str) -> None:
    check_service_name(name)


@pytest.mark.parametrize("name", ["", "1abc", "-abc", "abc-", "a_b", "a.b", "a b", "x" * 51, "é"])
def test_invalid_service_names(name: str) -> None:
    with pytest.raises(ArmError) as info:
        check_service_name(name)
    assert info.value.status == 400 and info.value.code == "InvalidResourceName"


# --- required fields -----------------------------------------------------------------------------


def test_minimal_put_is_accepted() -> None:
    v = accepted(body())
    assert v["location"] == "West Europe" and (v["sku_name"], v["sku_capacity"]) == ("Developer", 1)
    assert v["properties"] == {"publisherEmail": "ops@contoso.example", "publisherName": "Contoso"}
    assert v["tags"] == {} and v["identity"] is None


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("location"), "location"),
        (lambda b: b.update(location=""), "location"),
        (lambda b: b.update(location="  "), "location"),
        (lambda b: b.pop("sku"), "sku"),
        (lambda b: b.update(sku={"name": "Developer"}), "sku.capacity"),
        (lambda b: b.update(sku={"capacity": 1}), "sku.name"),
        (lambda b: b.pop("properties"), "properties"),
        (lambda b: b.update(properties=[]), "properties"),
        (lambda b: b["properties"].pop("publisherEmail"), "publisherEmail"),
        (lambda b: b["properties"].pop("publisherName"), "publisherName"),
        (lambda b: b["properties"].update(publisherName=""), "publisherName"),
        (lambda b: b["properties"].update(publisherName="n" * 101), "publisherName"),
        (lambda b: b["properties"].update(publisherEmail="e" * 95 + "@x.com"), "publisherEmail"),
        (lambda b: b["properties"].update(publisherEmail="no-at-sign"), "publisherEmail"),
        (lambda b: b["properties"].update(notificationSenderEmail="nope"), "notificationSenderEmail"),
        (lambda b: b["properties"].update(virtualNetworkType="Hybrid"), "virtualNetworkType"),
        (lambda b: b["properties"].update(customProperties={"k": 1}), "customProperties"),
        (lambda b: b["properties"].update(disableGateway="yes"), "disableGateway"),
        (lambda b: b["properties"].update(apiVersionConstraint="2020"), "apiVersionConstraint"),
        (lambda b: b.update(tags={"k": 1}), "tags"),
        (lambda b: b.update(tags=["k"]), "tags"),
    ],
)
def test_invalid_service_bodies(mutate: Any, field: str) -> None:
    b = body()
    mutate(b)
    err = refused(b)
    assert field in err.message, err.message


def test_body_must_be_an_object() -> None:
    bodies: list[Any] = [[], "x", None, 5]
    for b in bodies:
        assert refused(b).code == "InvalidRequestContent"


# --- SKUs and capacity ---------------------------------------------------------------------------


@pytest.mark.parametrize(("sku", "bounds"), sorted(SKU_CAPACITY.items()))
def test_capacity_bounds_per_sku(sku: str, bounds: tuple[int, int]) -> None:
    lo, hi = bounds
    assert accepted(body(sku={"name": sku, "capacity": lo}))["sku_capacity"] == lo
    assert accepted(body(sku={"name": sku, "capacity": hi}))["sku_capacity"] == hi
    for bad in (lo - 1, hi + 1):
        err = refused(body(sku={"name": sku, "capacity": bad}))
        assert "sku.capacity" in err.message


def test_consumption_capacity_must_be_zero() -> None:
    assert accepted(body(sku={"name": "Consumption", "capacity": 0}))["sku_name"] == "Consumption"
    err = refused(body(sku={"name": "Consumption", "capacity": 1}))
    assert "must be 0 for the Consumption SKU" in err.message


@pytest.mark.parametrize("capacity", ["1", 1.5, True, None, [1]])
def test_capacity_must_be_an_integer(capacity: Any) -> None:
    assert "sku.capacity" in refused(body(sku={"name": "Developer", "capacity": capacity})).message


def test_sku_names_are_case_insensitive_and_version_dependent() -> None:
    assert accepted(body(sku={"name": "premium", "capacity": 2}))["sku_name"] == "Premium"
    assert accepted(body(sku={"name": "StandardV2", "capacity": 1}))["sku_name"] == "StandardV2"
    err = refused(body(sku={"name": "StandardV2", "capacity": 1}), api_version="2019-12-01")
    assert "sku.name" in err.message and "Consumption" in err.message
    assert (
        accepted(body(sku={"name": "Basic", "capacity": 2}), api_version="2019-12-01")["sku_name"] == "Basic"
    )
    assert "sku.name" in refused(body(sku={"name": "Free", "capacity": 1})).message


def test_no_move_between_consumption_and_dedicated_tiers() -> None:
    err = refused({"sku": {"name": "Consumption", "capacity": 0}}, old=existing(), patch=True)
    assert "Consumption" in err.message
    refused(
        {"sku": {"name": "Developer", "capacity": 1}},
        old=existing(sku_name="Consumption", sku_capacity=0),
        patch=True,
    )
    v = accepted({"sku": {"name": "Premium", "capacity": 4}}, old=existing(), patch=True)
    assert (v["sku_name"], v["sku_capacity"]) == ("Premium", 4)


# --- updates -------------------------------------------------------------------------------------


def test_patch_merges_and_requires_nothing() -> None:
    old = existing(
        properties={
            "publisherEmail": "ops@contoso.example",
            "publisherName": "Contoso",
            "customProperties": {"k": "v"},
        }
    )
    v = accepted({"properties": {"publisherName": "Fabrikam"}}, old=old, patch=True)
    assert v["properties"] == {
        "publisherEmail": "ops@contoso.example",
        "publisherName": "Fabrikam",
        "customProperties": {"k": "v"},
    }
    assert "sku_name" not in v and "location" not in v and "tags" not in v
    assert accepted({}, old=old, patch=True)["properties"] == old.properties
    assert "publisherName" in refused({"properties": {"publisherName": ""}}, old=old, patch=True).message


def test_put_over_existing_replaces_properties_and_tags() -> None:
    old = existing(
        properties={"publisherEmail": "a@b.c", "publisherName": "n", "customProperties": {"k": "v"}}
    )
    v = accepted(body(), old=old)
    assert "customProperties" not in v["properties"] and v["tags"] == {}


def test_location_cannot_change() -> None:
    old = existing()
    assert "location" not in accepted(body(location="westeurope"), old=old)  # same region, other spelling
    err = refused(body(location="North Europe"), old=old)
    assert err.code == "InvalidParameters" and "location" in err.message


def test_read_only_properties_are_ignored() -> None:
    v = accepted(
        body(
            properties={
                "gatewayUrl": "https://evil",
                "provisioningState": "Failed",
                "publicIPAddresses": ["1.2.3.4"],
            }
        )
    )
    assert set(v["properties"]) == {"publisherEmail", "publisherName"}


# --- hostnames and certificates ------------------------------------------------------------------


def test_custom_hostname_with_pfx() -> None:
    hc = {
        "type": "Proxy",
        "hostName": "api.contoso.test",
        "encodedCertificate": PFX,
        "certificatePassword": PFX_PASSWORD,
    }
    v = accepted(body(properties={"hostnameConfigurations": [hc]}))
    stored = v["properties"]["hostnameConfigurations"][0]
    assert stored["certificate"]["subject"] == "CN=api.contoso.test"
    assert len(stored["certificate"]["thumbprint"]) == 40 and stored["certificate"]["expiry"].endswith("Z")
    assert stored["certificateSource"] == "Custom"


@pytest.mark.parametrize(
    ("hc", "field"),
    [
        ({"type": "Gateway", "hostName": "a.contoso.test"}, "type"),
        ({"hostName": "a.contoso.test"}, "type"),
        ({"type": "Proxy"}, "hostName"),
        ({"type": "Proxy", "hostName": "not a host"}, "hostName"),
        ({"type": "Proxy", "hostName": "a" * 300}, "hostName"),
        (
            {"type": "Proxy", "hostName": "a.contoso.test", "encodedCertificate": "%%%not-base64"},
            "encodedCertificate",
        ),
        (
            {
                "type": "Proxy",
                "hostName": "a.contoso.test",
                "encodedCertificate": base64.b64encode(b"junk").decode(),
            },
            "encodedCertificate",
        ),
        (
            {
                "type": "Proxy",
                "hostName": "a.contoso.test",
                "encodedCertificate": PFX,
                "certificatePassword": "wrong",
            },
            "encodedCertificate",
        ),
        ({"type": "Proxy", "hostName": "a.contoso.test", "encodedCertificate": 42}, "encodedCertificate"),
        (
            {
                "type": "Proxy",
                "hostName": "a.contoso.test",
                "encodedCertificate": PFX,
                "certificatePassword": 42,
            },
            "certificatePassword",
        ),
    ],
)
def test_invalid_hostname_configurations(hc: dict[str, Any], field: str) -> None:
    err = refused(body(properties={"hostnameConfigurations": [hc]}))
    assert field in err.message and PFX_PASSWORD not in err.message


def test_ca_certificates() -> None:
    der = base64.b64encode(CERT_DER).decode()
    v = accepted(body(properties={"certificates": [{"storeName": "Root", "encodedCertificate": der}]}))
    assert v["properties"]["certificates"][0]["certificate"]["subject"] == "CN=api.contoso.test"
    assert (
        "storeName"
        in refused(
            body(properties={"certificates": [{"storeName": "My", "encodedCertificate": der}]})
        ).message
    )
    assert "certificates" in refused(body(properties={"certificates": {"storeName": "Root"}})).message


# --- identity ------------------------------------------------------------------------------------


def test_identity_types() -> None:
    sys_id = accepted(body(identity={"type": "SystemAssigned"}))["identity"]
    assert sys_id["type"] == "SystemAssigned" and sys_id["principalId"] and sys_id["tenantId"]
    # The principal id survives updates.
    old = existing(identity=sys_id)
    assert (
        accepted({"identity": {"type": "SystemAssigned"}}, old=old, patch=True)["identity"]["principalId"]
        == sys_id["principalId"]
    )
    assert accepted({"identity": {"type": "None"}}, old=old, patch=True)["identity"] is None
    uai = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
    both = accepted(
        body(identity={"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {uai: {}}})
    )["identity"]
    assert both["userAssignedIdentities"][uai]["clientId"] and both["principalId"]
    assert "userAssignedIdentities" in refused(body(identity={"type": "UserAssigned"})).message
    assert "identity.type" in refused(body(identity={"type": "Managed"})).message
    assert "identity" in refused(body(identity="SystemAssigned")).message


# --- rendering -----------------------------------------------------------------------------------


def test_render_urls_from_the_gateway_domain_and_hides_secrets() -> None:
    props = {
        "publisherEmail": "a@b.c",
        "publisherName": "n",
        "hostnameConfigurations": [
            {
                "type": "Proxy",
                "hostName": "api.contoso.test",
                "encodedCertificate": PFX,
                "certificatePassword": PFX_PASSWORD,
            }
        ],
        "certificates": [
            {"storeName": "Root", "encodedCertificate": PFX, "certificatePassword": PFX_PASSWORD}
        ],
    }
    out = render_service(existing(name="MySvc", properties=props), "gw.example.net")
    p = out["properties"]
    assert p["gatewayUrl"] == "https://mysvc.gw.example.net"
    assert p["portalUrl"].endswith(".gw.example.net") and p["managementApiUrl"].startswith("https://mysvc.")
    assert p["provisioningState"] == "Succeeded" and out["type"] == "Microsoft.ApiManagement/service"
    assert out["id"] == "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ApiManagement/service/MySvc"
    text = repr(out)
    assert PFX_PASSWORD not in text and PFX not in text
    assert p["hostnameConfigurations"][0]["hostName"] == "api.contoso.test"


# --- over HTTP -----------------------------------------------------------------------------------


async def test_service_over_http_never_returns_certificates_or_passwords(node: InProc, rg: str) -> None:
    hc = [
        {
            "type": "Proxy",
            "hostName": "api.contoso.test",
            "encodedCertificate": PFX,
            "certificatePassword": PFX_PASSWORD,
        }
    ]
    name = await node.service(rg, hostnameConfigurations=hc)
    path = node.svc_path(rg, name)
    got = await node.get(path)
    assert got.status_code == 200
    props = got.json()["properties"]
    assert props["gatewayUrl"] == f"https://{name}.{GATEWAY_DOMAIN}"
    assert props["hostnameConfigurations"][0]["certificate"]["subject"] == "CN=api.contoso.test"
    assert got.headers["etag"].strip('"') == got.json()["etag"]
    listed = await node.get(node.rg_path(rg) + "/providers/Microsoft.ApiManagement/service")
    patched = await node.request("PATCH", path, json={"properties": {"publisherName": "New"}})
    assert patched.status_code == 200
    for r in (got, listed, patched):
        assert PFX_PASSWORD not in r.text and PFX[:200] not in r.text
        assert "certificatePassword" not in r.text and "encodedCertificate" not in r.text


async def test_service_put_get_patch_delete_over_http(node: InProc, rg: str) -> None:
    name = await node.service(rg, sku="Consumption", capacity=0)
    path = node.svc_path(rg, name)
    assert (await node.get(path)).json()["sku"] == {"name": "Consumption", "capacity": 0}
    r = await node.request("PATCH", path, json={"sku": {"name": "Consumption", "capacity": 1}})
    assert_arm_error(r, 400, "ValidationError")
    assert_arm_error(
        await node.request("PATCH", node.svc_path(rg, "nosuchsvc"), json={}), 404, "ResourceNotFound"
    )
    assert_arm_error(await node.get(node.svc_path(rg, "nosuchsvc")), 404, "ResourceNotFound")
    assert_arm_error(await node.put(node.svc_path("nosuchgroup", "x1"), {}), 404, "ResourceGroupNotFound")
    assert_arm_error(await node.put(node.svc_path(rg, "bad_name"), {}), 400, "InvalidResourceName")
    assert (await node.request("DELETE", path)).status_code == 200
    assert (await node.request("DELETE", path)).status_code == 204
    assert_arm_error(await node.get(path), 404)


async def test_service_names_are_unique_per_instance(node: InProc, rg: str) -> None:
    name = await node.service(rg)
    other = await node.group()
    assert_arm_error(
        await node.put(node.svc_path(other, name.upper()), body()), 409, "ServiceNameNotAvailable"
    )


async def test_deleting_a_group_deletes_its_services(node: InProc) -> None:
    from tests.arm.inproc import RG_API

    rg = await node.group()
    name = await node.service(rg)
    assert (await node.request("DELETE", node.rg_path(rg), api_version=RG_API)).status_code == 200
    assert_arm_error(await node.get(node.svc_path(rg, name)), 404)
    await node.group(rg)
    assert_arm_error(await node.get(node.svc_path(rg, name)), 404)
