"""Restore options for promotion between environments (Portico extension fields of the restore body).

    "excludeRuntimeData": true            users, subscriptions and group memberships are not taken
                                          from the backup; the target keeps its own
    "includeTypes": ["apis", ...]         only these entity types come from the backup
    "excludeTypes": ["backends", ...]     these entity types do not (the target keeps its own)
    "excludeApis": ["internal-api"]       these APIs (with their operations, policies, schemas, tag
    "excludeProducts": ["legacy"]         links, product links) / products do not
    "namedValueOverrides": {"name": {"value": "...", "secret": true} | "value"}
                                          set after the restore, so each environment keeps its secrets

Whatever the backup does not provide is kept from the target exactly as it was, so a promotion
never wipes the target's runtime data or secrets. Clients that send none of these fields get the
plain restore of Azure's API (the target becomes the backup).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portico.arm.errors import ArmError

# Public type names (URL collection segments) → stored kinds, with what hangs under them.
TYPE_KINDS: dict[str, frozenset[str]] = {
    "apis": frozenset({"api", "operation", "schema", "release"}),
    "products": frozenset({"product", "productApi", "productGroup"}),
    "groups": frozenset({"group"}),
    "users": frozenset({"user"}),
    "groupUsers": frozenset({"groupUser"}),
    "subscriptions": frozenset({"subscription"}),
    "namedValues": frozenset({"namedValue"}),
    "backends": frozenset({"backend"}),
    "tags": frozenset({"tag", "tagLink"}),
    "apiVersionSets": frozenset({"apiVersionSet"}),
    "policies": frozenset({"policy"}),
    "loggers": frozenset({"logger"}),
    "diagnostics": frozenset({"diagnostic"}),
    "certificates": frozenset({"certificate"}),
    "identityProviders": frozenset({"identityProvider"}),
    "authorizationServers": frozenset({"authorizationServer"}),
    "openidConnectProviders": frozenset({"openidConnectProvider"}),
    "caches": frozenset({"cache"}),
    "policyFragments": frozenset({"policyFragment"}),
    "schemas": frozenset({"globalSchema"}),
    "gateways": frozenset(
        {"gateway", "gatewayHostnameConfiguration", "gatewayCertificateAuthority", "gatewayApi"}
    ),
    "templates": frozenset({"emailTemplate"}),
    "notifications": frozenset({"notification", "notificationRecipientUser", "notificationRecipientEmail"}),
    "portalsettings": frozenset({"portalSetting", "tenantSetting", "portalConfig", "portalRevision"}),
    "tenantAccess": frozenset({"tenantAccess"}),
    "authorizationProviders": frozenset(
        {"authorizationProvider", "authorization", "authorizationAccessPolicy"}
    ),
    "contentTypes": frozenset({"contentType", "contentItem"}),
    "documentations": frozenset({"documentation"}),
    "policyRestrictions": frozenset({"policyRestriction"}),
    "issues": frozenset({"issue", "issueComment", "issueAttachment"}),
    "tagDescriptions": frozenset({"tagDescription"}),
    "wikis": frozenset({"wiki"}),
    "resolvers": frozenset({"resolver"}),
}
RUNTIME_TYPES = ("users", "subscriptions", "groupUsers")


def _invalid(param: str, message: str) -> ArmError:
    return ArmError(
        400, "InvalidParameters", f"Invalid parameter: {message}\r\nParameter name: {param}", target=param
    )


@dataclass(frozen=True)
class RestoreOptions:
    excluded_kinds: frozenset[str] = frozenset()
    excluded_apis: frozenset[str] = frozenset()
    excluded_products: frozenset[str] = frozenset()
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """True when some of the target is kept (anything other than a plain restore)."""
        return bool(self.excluded_kinds or self.excluded_apis or self.excluded_products)

    def public(self) -> dict[str, Any]:
        """For the operation record: names only, never override values."""
        return {
            "excludedKinds": sorted(self.excluded_kinds),
            "excludedApis": sorted(self.excluded_apis),
            "excludedProducts": sorted(self.excluded_products),
            "overriddenNamedValues": sorted(self.overrides),
        }

    def from_backup(self, kind: str, parent: str, name: str) -> bool:
        """Whether a record of the backup is restored (else the target's own rows stand)."""
        if kind in self.excluded_kinds:
            return False
        if self.excluded_apis:
            # An API's revisions (`echo;rev=2`) go with it.
            if kind == "api" and name.split(";rev=", 1)[0] in self.excluded_apis:
                return False
            if (
                parent.startswith("apis/")
                and parent.split("/", 2)[1].split(";rev=", 1)[0] in self.excluded_apis
            ):
                return False
            if kind == "productApi" and name in self.excluded_apis:
                return False
        if self.excluded_products:
            if kind == "product" and name in self.excluded_products:
                return False
            if parent.startswith("products/") and parent.split("/", 2)[1] in self.excluded_products:
                return False
        return True

    def kept_from_target(self, kind: str, parent: str, name: str) -> bool:
        """The target's rows that survive the restore: exactly those the backup does not provide."""
        return not self.from_backup(kind, parent, name)


def _names(body: dict[str, Any], key: str) -> list[str]:
    v = body.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise _invalid(key, f"'{key}' must be a list of names.")
    return v


def parse_options(body: dict[str, Any]) -> RestoreOptions:
    excluded: set[str] = set()
    include = _names(body, "includeTypes")
    exclude = _names(body, "excludeTypes")
    for key, types in (("includeTypes", include), ("excludeTypes", exclude)):
        unknown = [t for t in types if t not in TYPE_KINDS]
        if unknown:
            raise _invalid(
                key, f"unknown entity type(s) {', '.join(unknown)}; known: {', '.join(TYPE_KINDS)}."
            )
    if include:
        excluded |= {k for t, kinds in TYPE_KINDS.items() if t not in include for k in kinds}
    for t in exclude:
        excluded |= TYPE_KINDS[t]
    flag = body.get("excludeRuntimeData", False)
    if not isinstance(flag, bool):
        raise _invalid("excludeRuntimeData", "'excludeRuntimeData' must be true or false.")
    if flag:
        for t in RUNTIME_TYPES:
            excluded |= TYPE_KINDS[t]
    overrides_in = body.get("namedValueOverrides") or {}
    if not isinstance(overrides_in, dict):
        raise _invalid("namedValueOverrides", "'namedValueOverrides' must map named value ids to values.")
    overrides: dict[str, dict[str, Any]] = {}
    for nv_id, spec in overrides_in.items():
        if isinstance(spec, str):
            spec = {"value": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("value"), str) or len(spec["value"]) > 4096:
            raise _invalid(
                "namedValueOverrides",
                f"override of '{nv_id}' needs a string 'value' of at most 4096 characters.",
            )
        if "secret" in spec and not isinstance(spec["secret"], bool):
            raise _invalid("namedValueOverrides", f"'secret' of '{nv_id}' must be true or false.")
        overrides[str(nv_id)] = {
            "value": spec["value"],
            **({"secret": spec["secret"]} if "secret" in spec else {}),
        }
    return RestoreOptions(
        excluded_kinds=frozenset(excluded),
        excluded_apis=frozenset(_names(body, "excludeApis")),
        excluded_products=frozenset(_names(body, "excludeProducts")),
        overrides=overrides,
    )


def apply_override(existing: dict[str, Any] | None, nv_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The named value's data after an override (created when the restore did not bring it)."""
    data = dict(existing) if existing else {"displayName": nv_id, "secret": False, "tags": []}
    data["value"] = spec["value"]
    data.pop("keyVault", None)
    if "secret" in spec:
        data["secret"] = spec["secret"]
    return data
