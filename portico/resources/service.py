"""The service resource `Microsoft.ApiManagement/service`: validation of PUT/PATCH bodies and rendering."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from portico.arm.errors import ArmError, invalid_field
from portico.resources.keyvault_hostnames import READ_AT
from portico.store.services import Service

SERVICE_NAME = re.compile(r"^[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$")
# Capacity ranges per SKU (units); Consumption must be 0.
SKU_CAPACITY: dict[str, tuple[int, int]] = {
    "Developer": (1, 1),
    "Basic": (1, 2),
    "Standard": (1, 4),
    "Premium": (1, 12),
    "Isolated": (1, 12),
    "Consumption": (0, 0),
    "BasicV2": (1, 10),
    "StandardV2": (1, 10),
}
SKUS_BEFORE_2021 = ("Developer", "Standard", "Premium", "Basic", "Consumption")
HOSTNAME_TYPES = ("Proxy", "Portal", "Management", "Scm", "DeveloperPortal", "ConfigurationApi")
# Properties a backup never carries and a restore never changes (BRIEF point 7; issue 3 rule 3).
TARGET_OWNED_PROPERTIES = (
    "hostnameConfigurations",
    "certificates",
    "virtualNetworkType",
    "virtualNetworkConfiguration",
    "customProperties",
    "publicNetworkAccess",
    "publicIpAddressId",
    "additionalLocations",
    "privateEndpointConnections",
)
_WRITABLE = (
    "publisherEmail",
    "publisherName",
    "notificationSenderEmail",
    "hostnameConfigurations",
    "certificates",
    "virtualNetworkType",
    "virtualNetworkConfiguration",
    "customProperties",
    "apiVersionConstraint",
    "publicNetworkAccess",
    "publicIpAddressId",
    "disableGateway",
    "enableClientCertificate",
    "natGatewayState",
    "developerPortalStatus",
    "legacyPortalStatus",
    "configurationApi",
    "additionalLocations",
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


_LOCATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ()._-]{0,63}$")


def check_location(value: Any, field: str = "location") -> str:
    """A region name such as `West Europe` or `westeurope` (at most 64 characters, as stored)."""
    if not isinstance(value, str) or not value.strip():
        raise invalid_field(field, "is required")
    text: str = value.strip()
    if not _LOCATION.match(text):
        raise invalid_field(
            field, "must be a region name: 1-64 letters, digits, spaces, '(', ')', '.', '_' or '-'"
        )
    return text


def check_service_name(name: str) -> None:
    if not (1 <= len(name) <= 50) or not SERVICE_NAME.match(name):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"Service name '{name[:60]}' is invalid: it must be 1-50 characters, start with a letter, "
            "contain only letters, digits and hyphens, and end with a letter or digit.",
            target="serviceName",
        )


def _cert_info(encoded: str, password: str | None, field: str) -> dict[str, str]:
    """Parse a base64 PFX (or DER/PEM certificate) to report expiry/thumbprint/subject, as Azure does."""
    if not isinstance(encoded, str):
        raise invalid_field(field, "must be a base64 string")
    if password is not None and not isinstance(password, str):
        raise invalid_field(field.rsplit(".", 1)[0] + ".certificatePassword", "must be a string")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise invalid_field(field, "is not valid base64") from None
    cert: x509.Certificate | None = None
    try:
        _key, cert, _extra = pkcs12.load_key_and_certificates(raw, password.encode() if password else None)
    except ValueError:
        cert = None
    if cert is None:
        for loader in (x509.load_der_x509_certificate, x509.load_pem_x509_certificate):
            try:
                cert = loader(raw)
                break
            except ValueError:
                continue
    if cert is None:
        raise invalid_field(field, "is not a PFX or X.509 certificate, or the certificate password is wrong")
    thumb = hashlib.sha1(cert.public_bytes(encoding=Encoding.DER)).hexdigest().upper()
    return {
        "expiry": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        "thumbprint": thumb,
        "subject": cert.subject.rfc4514_string(),
    }


def _validate_hostnames(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise invalid_field("properties.hostnameConfigurations", "must be an array")
    out = []
    for i, hc in enumerate(value):
        f = f"properties.hostnameConfigurations[{i}]"
        if not isinstance(hc, dict):
            raise invalid_field(f, "must be an object")
        if hc.get("type") not in HOSTNAME_TYPES:
            raise invalid_field(f + ".type", f"must be one of {', '.join(HOSTNAME_TYPES)}")
        host = hc.get("hostName")
        if not isinstance(host, str) or not re.match(
            r"^(?=.{1,253}$)([a-zA-Z0-9*]([a-zA-Z0-9-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9-]+$", host
        ):
            raise invalid_field(f + ".hostName", "must be a DNS host name")
        item = dict(hc)
        if hc.get("encodedCertificate"):
            item["certificate"] = _cert_info(
                hc["encodedCertificate"], hc.get("certificatePassword"), f + ".encodedCertificate"
            )
            item.setdefault("certificateSource", "Custom")
        out.append(item)
    return out


def _validate_certificates(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise invalid_field("properties.certificates", "must be an array")
    out = []
    for i, c in enumerate(value):
        f = f"properties.certificates[{i}]"
        if not isinstance(c, dict) or c.get("storeName") not in ("CertificateAuthority", "Root"):
            raise invalid_field(f + ".storeName", "must be CertificateAuthority or Root")
        item = dict(c)
        if c.get("encodedCertificate"):
            item["certificate"] = _cert_info(
                c["encodedCertificate"], c.get("certificatePassword"), f + ".encodedCertificate"
            )
        out.append(item)
    return out


def _validate_identity(value: Any, existing: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return existing
    if not isinstance(value, dict):
        raise invalid_field("identity", "must be an object")
    kind = value.get("type")
    allowed = ("SystemAssigned", "UserAssigned", "SystemAssigned, UserAssigned", "None")
    if kind not in allowed:
        raise invalid_field("identity.type", f"must be one of {', '.join(allowed)}")
    if kind == "None":
        return None
    out: dict[str, Any] = {"type": kind, "tenantId": str(uuid.uuid5(uuid.NAMESPACE_URL, "portico-tenant"))}
    if "SystemAssigned" in kind:
        out["principalId"] = (existing or {}).get("principalId") or str(uuid.uuid4())
    if "UserAssigned" in kind:
        uai = value.get("userAssignedIdentities")
        if not isinstance(uai, dict) or not uai:
            raise invalid_field("identity.userAssignedIdentities", "is required for UserAssigned identities")
        old = (existing or {}).get("userAssignedIdentities") or {}
        out["userAssignedIdentities"] = {
            rid: old.get(rid) or {"principalId": str(uuid.uuid4()), "clientId": str(uuid.uuid4())}
            for rid in uai
        }
    return out


def validate_service(body: Any, *, api_version: str, existing: Service | None, patch: bool) -> dict[str, Any]:
    """Return the column values for a PUT (full) or PATCH (merge) of a service."""
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request body must be a JSON object.")
    props_in = body.get("properties")
    if props_in is None:
        if not patch:
            raise invalid_field("properties", "is required")
        props_in = {}
    if not isinstance(props_in, dict):
        raise invalid_field("properties", "must be an object")

    values: dict[str, Any] = {}
    location = body.get("location")
    if existing is None:
        values["location"] = check_location(location)
    elif (
        location is not None
        and isinstance(location, str)
        and _norm_loc(location) != _norm_loc(existing.location)
    ):
        raise ArmError(
            400,
            "InvalidParameters",
            "location cannot be changed after the service is created.",
            target="location",
        )

    sku = body.get("sku")
    if sku is None and existing is None:
        raise invalid_field("sku", "is required")
    if sku is not None:
        if not isinstance(sku, dict):
            raise invalid_field("sku", "must be an object with name and capacity")
        name = sku.get("name")
        allowed = SKUS_BEFORE_2021 if api_version < "2021-01-01" else tuple(SKU_CAPACITY)
        match = next((s for s in allowed if isinstance(name, str) and s.lower() == name.lower()), None)
        if match is None:
            raise invalid_field("sku.name", f"must be one of {', '.join(allowed)}")
        cap = sku.get("capacity")
        if isinstance(cap, bool) or not isinstance(cap, int):
            raise invalid_field("sku.capacity", "is required and must be an integer")
        lo, hi = SKU_CAPACITY[match]
        if not lo <= cap <= hi:
            rule = (
                "must be 0 for the Consumption SKU"
                if match == "Consumption"
                else f"must be between {lo} and {hi} for {match}"
            )
            raise invalid_field("sku.capacity", rule)
        if existing is not None and (existing.sku_name == "Consumption") != (match == "Consumption"):
            raise ArmError(
                400,
                "InvalidParameters",
                "A service cannot move between the Consumption tier and the other tiers.",
                target="sku.name",
            )
        values["sku_name"], values["sku_capacity"] = match, cap

    props: dict[str, Any] = dict(existing.properties) if (existing is not None and patch) else {}
    for key in _WRITABLE:
        if key in props_in:
            props[key] = props_in[key]
    for key in ("publisherEmail", "publisherName"):
        if not patch or key in props_in:
            v = props.get(key)
            if not isinstance(v, str) or not v.strip() or len(v) > 100:
                raise invalid_field(f"properties.{key}", "is required (1-100 characters)")
    if not _EMAIL.match(props.get("publisherEmail", "x@y")):
        raise invalid_field("properties.publisherEmail", "must be an email address")
    nse = props.get("notificationSenderEmail")
    if nse is not None and (not isinstance(nse, str) or len(nse) > 100 or not _EMAIL.match(nse)):
        raise invalid_field(
            "properties.notificationSenderEmail", "must be an email address (at most 100 characters)"
        )
    if "hostnameConfigurations" in props_in:
        props["hostnameConfigurations"] = _validate_hostnames(props_in["hostnameConfigurations"] or [])
    if "certificates" in props_in:
        props["certificates"] = _validate_certificates(props_in["certificates"] or [])
    vnt = props.get("virtualNetworkType", "None")
    if vnt not in ("None", "External", "Internal"):
        raise invalid_field("properties.virtualNetworkType", "must be None, External or Internal")
    cp = props.get("customProperties")
    if cp is not None and (not isinstance(cp, dict) or not all(isinstance(v, str) for v in cp.values())):
        raise invalid_field("properties.customProperties", "must be a map of strings")
    avc = props.get("apiVersionConstraint")
    if avc is not None and not isinstance(avc, dict):
        raise invalid_field("properties.apiVersionConstraint", "must be an object")
    for flag in ("disableGateway", "enableClientCertificate"):
        if flag in props and not isinstance(props[flag], bool):
            raise invalid_field(f"properties.{flag}", "must be a boolean")
    values["properties"] = props

    if "identity" in body or existing is None:
        values["identity"] = _validate_identity(body.get("identity"), existing.identity if existing else None)
    tags = body.get("tags")
    if tags is not None:
        if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
        ):
            raise invalid_field("tags", "must be a map of strings")
        values["tags"] = tags
    elif existing is None or not patch:
        values["tags"] = {} if existing is None or not patch else existing.tags
    return values


def _norm_loc(loc: str) -> str:
    return loc.replace(" ", "").lower()


def _hide_cert_secrets(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in it.items() if k not in ("encodedCertificate", "certificatePassword", READ_AT)}
        for it in items
    ]


def render_service(svc: Service, gateway_domain: str) -> dict[str, Any]:
    p = dict(svc.properties)
    p["hostnameConfigurations"] = _hide_cert_secrets(p.get("hostnameConfigurations") or [])
    if "certificates" in p:
        p["certificates"] = _hide_cert_secrets(p["certificates"] or [])
    base = f"{svc.name.lower()}.{gateway_domain}"
    p.setdefault("virtualNetworkType", "None")
    p.setdefault("disableGateway", False)
    p.setdefault("customProperties", {})
    p.setdefault("publicNetworkAccess", "Enabled")
    p.update(
        provisioningState="Succeeded",
        targetProvisioningState="",
        createdAtUtc=svc.created_at.isoformat().replace("+00:00", "Z"),
        gatewayUrl=f"https://{base}",
        gatewayRegionalUrl=f"https://{svc.name.lower()}-{_norm_loc(svc.location)}-01.regional.{gateway_domain}",
        portalUrl=f"https://{svc.name.lower()}.portal.{gateway_domain}",
        developerPortalUrl=f"https://{svc.name.lower()}.developer.{gateway_domain}",
        managementApiUrl=f"https://{svc.name.lower()}.management.{gateway_domain}",
        scmUrl=f"https://{svc.name.lower()}.scm.{gateway_domain}",
        publicIPAddresses=["127.0.0.1"],
        platformVersion="stv2",
    )
    out: dict[str, Any] = {
        "id": svc.arm_id,
        "name": svc.name,
        "type": "Microsoft.ApiManagement/service",
        "tags": svc.tags,
        "location": svc.location,
        "etag": svc.etag,
        "properties": p,
        "sku": {"name": svc.sku_name, "capacity": svc.sku_capacity},
    }
    if svc.identity:
        out["identity"] = svc.identity
    return out
