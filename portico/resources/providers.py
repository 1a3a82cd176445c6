"""The Microsoft.ApiManagement resource provider as ARM describes it, and services as generic resources.

`az resource show --ids` and `az provider show` read the provider document to pick an api-version
(the first non-preview one of the resource type, so versions are listed newest first);
`az resource list` reads services in the generic resource shape, filtered by an OData `$filter`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from portico.arm.errors import ArmError
from portico.arm.versions import APIM, DELETED_SERVICES_SINCE
from portico.resources.kinds import TOP_LEVEL, Kind
from portico.store.services import DeletedService, Service

NAMESPACE = "Microsoft.ApiManagement"
SERVICE_TYPE = f"{NAMESPACE}/service"
DELETED_SERVICE_TYPE = f"{NAMESPACE}/deletedservices"
# Regions the provider document lists; a service may be created in any region name.
LOCATIONS = (
    "East US",
    "East US 2",
    "West US",
    "West US 2",
    "Central US",
    "North Central US",
    "South Central US",
    "North Europe",
    "West Europe",
    "UK South",
    "France Central",
    "Germany West Central",
    "Switzerland North",
    "Sweden Central",
    "Southeast Asia",
    "East Asia",
    "Japan East",
    "Australia East",
    "Brazil South",
    "Canada Central",
)


def _child_types(kinds: dict[str, Kind]) -> list[str]:
    out: list[str] = []
    for kind in kinds.values():
        out.append(kind.arm_type.removeprefix(NAMESPACE + "/"))
        out.extend(_child_types(kind.children))
    return out


def provider_document(subscription_id: str | None) -> dict[str, Any]:
    versions = sorted(APIM.listed, reverse=True)
    since_2020 = [v for v in versions if v >= DELETED_SERVICES_SINCE]
    regional: list[tuple[str, list[str]]] = [
        ("service", versions),
        ("deletedservices", since_2020),
        ("locations", versions),
        ("locations/deletedservices", since_2020),
    ]
    unregional = [("checkNameAvailability", versions), ("operations", versions)]
    children = sorted(set(_child_types(TOP_LEVEL)))
    resource_types = [
        {"resourceType": name, "locations": list(LOCATIONS), "apiVersions": v, "capabilities": "None"}
        for name, v in regional
    ]
    resource_types += [{"resourceType": name, "locations": [], "apiVersions": v} for name, v in unregional]
    resource_types += [
        {"resourceType": name, "locations": list(LOCATIONS), "apiVersions": versions} for name in children
    ]
    doc: dict[str, Any] = {
        "id": f"/subscriptions/{subscription_id}/providers/{NAMESPACE}"
        if subscription_id
        else f"/providers/{NAMESPACE}",
        "namespace": NAMESPACE,
        "resourceTypes": resource_types,
    }
    if subscription_id:
        doc["registrationState"] = "Registered"
        doc["registrationPolicy"] = "RegistrationRequired"
    return doc


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def generic_resource(svc: Service, expand: set[str]) -> dict[str, Any]:
    """A service in the shape of `GET /subscriptions/{s}/resources` (no properties, as ARM lists)."""
    out: dict[str, Any] = {
        "id": svc.arm_id,
        "name": svc.name,
        "type": SERVICE_TYPE,
        "sku": {"name": svc.sku_name, "capacity": svc.sku_capacity},
        "location": svc.location,
        "tags": svc.tags,
    }
    if svc.identity:
        out["identity"] = svc.identity
    if "createdtime" in expand:
        out["createdTime"] = _iso(svc.created_at)
    if "changedtime" in expand:
        out["changedTime"] = _iso(svc.created_at)
    if "provisioningstate" in expand:
        out["provisioningState"] = "Succeeded"
    return out


def parse_expand(value: str | None) -> set[str]:
    allowed = {"createdtime", "changedtime", "provisioningstate"}
    parts = {p.strip().casefold() for p in (value or "").split(",") if p.strip()}
    unknown = sorted(parts - allowed)
    if unknown:
        raise ArmError(
            400,
            "InvalidExpandQueryString",
            f"$expand '{unknown[0][:60]}' is not supported; use createdTime, changedTime or provisioningState.",
        )
    return parts


# --- $filter of resource lists --------------------------------------------------------------------

_EQ = re.compile(r"^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_SUBSTRINGOF = re.compile(r"^\s*substringof\(\s*'((?:[^']|'')*)'\s*,\s*name\s*\)\s*$", re.IGNORECASE)
_FIELDS: dict[str, Callable[[Service], str]] = {
    "resourcetype": lambda s: SERVICE_TYPE,
    "name": lambda s: s.name,
    "resourcegroup": lambda s: s.resource_group,
    "location": lambda s: s.location.replace(" ", ""),
}


@dataclass(frozen=True)
class ResourceFilter:
    """Conditions joined by `and`, as `az resource list` sends them; anything else is refused."""

    tests: tuple[Callable[[Service], bool], ...]

    def __call__(self, svc: Service) -> bool:
        return all(t(svc) for t in self.tests)


def _name_contains(needle: str) -> Callable[[Service], bool]:
    return lambda s: needle in s.name.casefold()


def _field_equals(get: Callable[[Service], str], want: str) -> Callable[[Service], bool]:
    return lambda s: get(s).casefold() == want


def _unsupported(text: str) -> ArmError:
    return ArmError(
        400,
        "InvalidFilterInQueryString",
        f"The $filter '{text[:200]}' is not supported. Supported: conditions joined by 'and' of the form "
        "resourceType|name|resourceGroup|location|tagName|tagValue eq 'value', or substringof('text', name).",
    )


def parse_filter(text: str | None) -> ResourceFilter:
    if not text or not text.strip():
        return ResourceFilter(())
    tests: list[Callable[[Service], bool]] = []
    tag_name: str | None = None
    tag_value: str | None = None
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        sub = _SUBSTRINGOF.match(clause)
        if sub:
            needle = sub.group(1).replace("''", "'").casefold()
            tests.append(_name_contains(needle))
            continue
        eq = _EQ.match(clause)
        if not eq:
            raise _unsupported(text)
        field, value = eq.group(1).casefold(), eq.group(2).replace("''", "'")
        if field == "tagname":
            tag_name = value
        elif field == "tagvalue":
            tag_value = value
        elif field in _FIELDS:
            get = _FIELDS[field]
            want = value.replace(" ", "").casefold() if field == "location" else value.casefold()
            tests.append(_field_equals(get, want))
        else:
            raise _unsupported(text)
    if tag_value is not None and tag_name is None:
        raise _unsupported(text)
    if tag_name is not None:
        key = tag_name.casefold()

        def has_tag(s: Service) -> bool:
            for k, v in s.tags.items():
                if k.casefold() == key and (tag_value is None or v == tag_value):
                    return True
            return False

        tests.append(has_tag)
    return ResourceFilter(tuple(tests))


# --- soft-deleted services ------------------------------------------------------------------------


def location_key(location: str) -> str:
    """`West Europe` and `westeurope` name one region."""
    return location.replace(" ", "").casefold()


def deleted_service_id(subscription_id: str, location: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/providers/{NAMESPACE}/locations/{location_key(location)}"
        f"/deletedservices/{name}"
    )


def render_deleted(d: DeletedService) -> dict[str, Any]:
    """`DeletedServiceContract`: where the service was, when it was deleted, when it goes for good."""
    return {
        "id": deleted_service_id(d.subscription_id, d.location, d.name),
        "name": d.name,
        "type": DELETED_SERVICE_TYPE,
        "location": d.location,
        "properties": {
            "serviceId": d.arm_id,
            "scheduledPurgeDate": _iso(d.purge_at),
            "deletionDate": _iso(d.deleted_at),
        },
    }
