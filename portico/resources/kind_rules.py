"""Azure's behaviour for the kinds of `catalog.py`: defaults it fills in, references it checks,
secrets it hides, actions, and the built-in entities of a new service.

Hooks receive the connection and store of the engine's transaction and never commit.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.arm.errors import ArmError, invalid_field
from portico.identity.credentials import providers as credential_providers
from portico.names import fold_name
from portico.resources import policy_raw, websocket_apis
from portico.resources.kind_builtins import (
    builtin_access,
    builtin_notification,
    builtin_portal_config,
    builtin_portal_setting,
    builtin_template,
    new_access_key,
)
from portico.resources.kinds import Target
from portico.resources.policy_xml import logger_ids
from portico.resources.references import to_absolute, to_relative
from portico.secret_fields import HIDDEN_FIELDS, without_nested_secrets
from portico.store import entities as E

# What the kinds' listSecrets actions return: some of their hidden fields (portico/secret_fields.py,
# the table of secrets, which the store also seals at rest).
SECRETS_OF = {
    "identityProvider": ("clientSecret",),
    "authorizationServer": ("clientSecret", "resourceOwnerUsername", "resourceOwnerPassword"),
    "openidConnectProvider": ("clientSecret",),
    "portalSetting": ("validationKey",),
}

# Stored as `/segment/name`, rendered as the full ARM id of the service that holds them.
REFERENCE_FIELDS = {
    "diagnostic": ("loggerId",),
    "gatewayHostnameConfiguration": ("certificateId",),
    "notificationRecipientUser": ("userId",),
    "issue": ("userId", "apiId"),
    "issueComment": ("userId",),
    "tagDescription": ("tagId",),
}


def render_props(kind: str, props: dict[str, Any], arm_id: str) -> None:
    """Secrets nested in a kind's properties are dropped; references become full ARM ids."""
    if kind == "authorizationProvider":
        grants = (props.get("oauth2") or {}).get("grantTypes") or {}
        props["oauth2"] = {**props.get("oauth2", {}), "grantTypes": {g: p for g, p in grants.items() if p}}
    props.update(without_nested_secrets(kind, props))
    if kind == "authorization" and isinstance(props.get("parameters"), dict):
        # As Azure shows them: the client id, never a secret.
        props["parameters"] = {k: v for k, v in props["parameters"].items() if "secret" not in k.lower()}
    for f in REFERENCE_FIELDS.get(kind, ()):
        if isinstance(props.get(f), str) and props[f].startswith("/"):
            props[f] = to_absolute(arm_id, props[f])
    if kind == "notification" and isinstance(props.get("recipients"), dict):
        users = props["recipients"].get("users") or []
        props["recipients"] = {**props["recipients"], "users": [to_absolute(arm_id, u) for u in users]}


Hook = Callable[
    [AsyncConnection, int, Target, dict[str, Any], dict[str, Any] | None], Awaitable[dict[str, Any]]
]


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _keep(data: dict[str, Any], old: dict[str, Any] | None, *names: str) -> None:
    """A PUT without a secret keeps the stored one (GET never shows it, so clients cannot echo it)."""
    for n in names:
        if n not in data and old and n in old:
            data[n] = old[n]


async def _ref(conn: AsyncConnection, store: int, value: str, segment: str, kind: str, field: str) -> str:
    """A reference (`/loggers/x` or a full ARM id) to an existing entity, as stored: `/segment/name`."""
    rel = to_relative(value).strip("/").split("/")
    found = (
        await E.find_name(conn, store, kind, "", rel[1])
        if len(rel) == 2 and rel[0].lower() == segment.lower()
        else None
    )
    if found is None:
        raise invalid_field(field, f"{segment[:-1]} '{value[:200]}' was not found")
    return f"/{segment}/{found}"


# --- normalisation per kind ------------------------------------------------------------------------
async def _logger(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    _keep(data, old, "credentials")
    creds = data.get("credentials") or {}
    if data["loggerType"] == "applicationInsights" and not (
        creds.get("instrumentationKey") or creds.get("connectionString")
    ):
        raise invalid_field("properties.credentials", "instrumentationKey or connectionString is required")
    if data["loggerType"] == "azureEventHub" and not (creds.get("connectionString") or creds.get("name")):
        raise invalid_field("properties.credentials", "name and connectionString are required")
    return data


async def _diagnostic(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    data["loggerId"] = await _ref(conn, store, data["loggerId"], "loggers", "logger", "properties.loggerId")
    data.setdefault("alwaysLog", "allErrors")
    data.setdefault("logClientIp", False)
    data.setdefault("httpCorrelationProtocol", "Legacy")
    data.setdefault("verbosity", "information")
    data.setdefault("operationNameFormat", "Name")
    return data


def certificate_facts(pfx_b64: str, password: str | None) -> dict[str, str]:
    """Subject, thumbprint and expiry of a base64 PFX; 400 naming the field when it cannot be read."""
    try:
        raw = base64.b64decode(pfx_b64, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_field("properties.data", "must be a base64-encoded PFX") from None
    try:
        _pk, cert, extra = pkcs12.load_key_and_certificates(raw, password.encode() if password else None)
    except ValueError:
        raise invalid_field(
            "properties.password", "the PFX could not be opened (wrong password or not a PFX)"
        ) from None
    if cert is None and extra:
        cert = extra[0]  # a PFX of a certificate alone (a CA's, for gateway certificate authorities)
    if cert is None:
        raise invalid_field("properties.data", "the PFX holds no certificate")
    return _facts(cert)


def _facts(cert: x509.Certificate) -> dict[str, str]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),
        "expirationDate": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
    }


async def _certificate(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    if data.get("keyVault") is None:
        data.pop("keyVault", None)
    elif not data["keyVault"].get("lastStatus") or not data.get("data"):
        # the route reads the secret into `data` (routes/keyvault.py); a write that did not is refused
        raise invalid_field(
            "properties.keyVault",
            "the Key Vault secret has not been read: send keyVault or call refreshSecret",
        )
    else:
        data.pop("password", None)  # a secret read from Key Vault is a PFX without password
    if not data.get("data"):
        raise invalid_field("properties.data", "is required (a base64-encoded PFX)")
    data.update(certificate_facts(data["data"], data.get("password")))
    return data


async def _secrets_kept(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    _keep(data, old, *HIDDEN_FIELDS.get(t.kind.kind, ()))
    if t.kind.kind == "identityProvider":
        data["type"] = t.name
        if "clientSecret" not in data:
            raise invalid_field("properties.clientSecret", "is required")
        if t.name in ("aad", "aadB2C"):
            data.setdefault("clientLibrary", "ADAL")
            data.setdefault("authority", "login.microsoftonline.com")
    if t.kind.kind == "authorizationServer":
        data.setdefault("clientAuthenticationMethod", ["Basic"])
        data.setdefault("bearerTokenSendingMethods", ["authorizationHeader"])
    return data


async def _cache(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    return data


FRAGMENT_REF = re.compile(r"<include-fragment\b[^>]*\bfragment-id\s*=\s*[\"']([^\"']*)[\"']", re.IGNORECASE)


async def check_fragment_refs(conn: AsyncConnection, store: int, xml: str, field: str) -> None:
    for fid in FRAGMENT_REF.findall(xml):
        if await E.find_name(conn, store, "policyFragment", "", fid) is None:
            raise invalid_field(
                field, f"policy fragment '{fid}' referenced by <include-fragment> was not found"
            )


async def check_logger_refs(conn: AsyncConnection, store: int, xml: str, field: str) -> None:
    """Azure refuses, when it is saved, a `<log-to-eventhub>` naming a logger the service lacks."""
    for logger in logger_ids(xml):
        if await E.find_name(conn, store, "logger", "", logger) is None:
            raise invalid_field(
                field, f"logger '{logger[:200]}' referenced by <log-to-eventhub> was not found"
            )


async def logger_references(conn: AsyncConnection, store: int, logger: str) -> list[str]:
    """Paths of the policies and fragments whose `<log-to-eventhub>` names `logger`."""
    out = []
    for kind in ("policy", "policyFragment"):
        for r in await E.list_all(conn, store, kind):
            if any(fold_name(x) == fold_name(logger) for x in logger_ids(str(r.data.get("value", "")))):
                own = "policies/policy" if kind == "policy" else f"policyFragments/{r.name}"
                out.append(f"{r.parent}/{own}" if r.parent else own)
    return out


async def _fragment(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    if data.get("format") == "rawxml":
        data["value"] = policy_raw.encode(data["value"])
    value = data["value"].strip()
    if not value.startswith("<fragment") or (not value.endswith("</fragment>") and not value.endswith("/>")):
        raise invalid_field("properties.value", "must be a <fragment> element")
    if t.name is not None and re.search(rf"fragment-id\s*=\s*[\"']{re.escape(t.name)}[\"']", value, re.I):
        raise invalid_field("properties.value", "a fragment must not include itself")
    await check_fragment_refs(conn, store, value, "properties.value")
    await check_logger_refs(conn, store, value, "properties.value")
    data["format"] = "xml"
    return data


async def _global_schema(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    if data["schemaType"] == "xml" and not isinstance(data.get("value"), str):
        raise invalid_field("properties.value", "an xml schema is required as a string")
    if data["schemaType"] == "json" and data.get("document") is None:
        raise invalid_field("properties.document", "a json schema document is required")
    return data


async def _gateway(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    prev = old or {}
    data["primaryKey"] = prev.get("primaryKey") or new_access_key()
    data["secondaryKey"] = prev.get("secondaryKey") or new_access_key()
    return data


async def _gateway_hostname(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    if data.get("certificateId"):
        data["certificateId"] = await _ref(
            conn, store, data["certificateId"], "certificates", "certificate", "properties.certificateId"
        )
    data.setdefault("negotiateClientCertificate", False)
    data.setdefault("tls10Enabled", False)
    data.setdefault("tls11Enabled", False)
    data.setdefault("http2Enabled", True)
    return data


async def _gateway_ca(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    assert t.name is not None
    if await E.find_name(conn, store, "certificate", "", t.name) is None:
        raise ArmError(404, "ResourceNotFound", f"Certificate '{t.name}' was not found.")
    data.setdefault("isTrusted", False)
    return data


async def _email_template(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    base = dict(old or builtin_template(t.name or ""))
    base.update(data)
    base["isDefault"] = False
    return base


async def _notification(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    return dict(old or builtin_notification(t.name or ""))


async def _recipient_user(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    assert t.name is not None
    user = await _ref(conn, store, f"/users/{t.name}", "users", "user", "userId")
    await _set_recipient(conn, store, t.parent, "users", user, present=True)
    return {"userId": user}


async def _recipient_email(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    if not t.name or "@" not in t.name:
        raise invalid_field("email", "must be an e-mail address")
    await _set_recipient(conn, store, t.parent, "emails", t.name, present=True)
    return {"email": t.name}


async def _set_recipient(
    conn: AsyncConnection, store: int, notification_path: str, field: str, value: str, *, present: bool
) -> None:
    """Keep the notification's `recipients` (what Azure shows on it) in step with its recipients."""
    name = notification_path.split("/")[1]
    row = await E.get(conn, store, "notification", "", name, lock=True)
    if row is None:
        return
    recipients = dict(row.data.get("recipients") or {"emails": [], "users": []})
    current = [v for v in recipients.get(field) or [] if v.lower() != value.lower()]
    recipients[field] = [*current, value] if present else current
    await E.put(
        conn, store, "notification", "", name, None, {**row.data, "recipients": recipients}, exists=True
    )


async def _portal_setting(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    allowed = {
        "signin": {"enabled"},
        "signup": {"enabled", "termsOfService"},
        "delegation": {"url", "validationKey", "subscriptions", "userRegistration"},
    }[t.name or ""]
    extra = sorted(set(data) - allowed)
    if extra:
        raise invalid_field(f"properties.{extra[0]}", f"is not a setting of portal settings '{t.name}'")
    base = dict(old or builtin_portal_setting(t.name or ""))
    base.update(data)
    if t.name == "delegation" and base.get("url"):
        if not str(base["url"]).lower().startswith(("http://", "https://")):
            raise invalid_field("properties.url", "must be an absolute http or https URL")
    return base


async def _tenant_access(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    base = dict(old or builtin_access(t.name or ""))
    base.update(data)  # keys given in the request are taken, as Azure takes them
    if base["primaryKey"] == base["secondaryKey"]:
        raise invalid_field("properties.secondaryKey", "must differ from the primary key")
    return base


async def _authorization_provider(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    data = credential_providers.check_provider(data, old)
    # Shown as Portico's own consent redirect by routes/authorizations.py, which knows its URL.
    data["oauth2"]["redirectUrl"] = ""
    return data


async def _authorization(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    provider = await E.get(conn, store, "authorizationProvider", "", t.parent.split("/")[1])
    assert provider is not None  # the engine resolved the owner
    _keep(data, old, "parameters")
    return credential_providers.check_authorization(provider.data, data, old)


async def _access_policy(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    for f in ("tenantId", "objectId"):
        if not data.get(f):
            raise invalid_field(f"properties.{f}", "is required")
    return data


async def _user_ref(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    data["userId"] = await _ref(conn, store, data["userId"], "users", "user", "properties.userId")
    data["createdDate"] = (old or {}).get("createdDate") or data.get("createdDate") or now()
    if t.kind.kind == "issue":
        data["apiId"] = "/" + "/".join(t.parent.split("/")[:2])
    return data


async def _tag_description(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    assert t.name is not None
    tag = await E.get(conn, store, "tag", "", t.name)
    if tag is None:
        raise invalid_field("name", f"tag '{t.name}' was not found")
    data["displayName"] = tag.data.get("displayName")
    data["tagId"] = f"/tags/{t.name}"
    return data


async def _wiki(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    """Documents are named by their documentation id, as Azure shows them (`docId`, not a path)."""
    for i, doc in enumerate(data.get("documents") or []):
        ref = doc.get("documentationId")
        if ref:
            name = to_relative(ref).strip("/").split("/")[-1]
            found = await E.find_name(conn, store, "documentation", "", name)
            if found is None:
                raise invalid_field(
                    f"properties.documents[{i}].documentationId", f"documentation '{ref[:200]}' was not found"
                )
            doc["documentationId"] = found
    data.setdefault("documents", [])
    return data


async def _portal_config(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    base = dict(old or builtin_portal_config())
    if isinstance(data.get("delegation"), dict) and "validationKey" not in data["delegation"]:
        data["delegation"]["validationKey"] = (base.get("delegation") or {}).get("validationKey")
    base.update(data)
    return base


async def _portal_revision(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    raise ArmError(
        400,
        "DeveloperPortalNotSupported",
        "Publishing a developer portal revision is not supported: Portico hosts no developer portal.",
    )


async def _passthrough(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    return data


async def _policy_restriction(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    if not data.get("scope"):
        raise invalid_field("properties.scope", "is required")
    return data


async def _content_type(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    if "schema_" in data:  # the model's name for `schema` (a name pydantic reserves)
        data["schema"] = data.pop("schema_")
    data["id"] = f"/contentTypes/{t.name}"
    return data


async def _backend(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    """Client certificates for a backend name certificates of the service (by id or thumbprint):
    the gateway presents the first one to the backend."""
    creds = data.get("credentials") or {}
    for i, ref in enumerate(creds.get("certificateIds") or []):
        await _ref(
            conn, store, ref, "certificates", "certificate", f"properties.credentials.certificateIds[{i}]"
        )
    thumbprints = creds.get("certificate") or []
    if thumbprints:
        known = {
            str(row.data.get("thumbprint", "")).upper()
            for row in await E.list_all(conn, store, "certificate")
        }
        for i, thumb in enumerate(thumbprints):
            if str(thumb).strip().upper() not in known:
                raise invalid_field(
                    f"properties.credentials.certificate[{i}]",
                    f"no certificate of the service has thumbprint '{thumb}'",
                )
    return data


async def _resolver(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    """Resolvers exist only on GraphQL APIs, as Azure refuses them on others."""
    api = await E.get(conn, store, "api", "", t.parent.split("/")[1])
    api_type = str((api.data if api else {}).get("type") or "http")
    if api_type != "graphql":
        raise ArmError(
            400,
            "ValidationError",
            f"Resolvers can only be added to GraphQL APIs; API '{t.parent.split('/')[1]}' is of type "
            f"'{api_type}'.",
        )
    return data


NORMALIZERS: dict[str, Hook] = {
    "backend": _backend,
    "logger": _logger,
    "diagnostic": _diagnostic,
    "certificate": _certificate,
    "identityProvider": _secrets_kept,
    "authorizationServer": _secrets_kept,
    "openidConnectProvider": _secrets_kept,
    "cache": _cache,
    "policyFragment": _fragment,
    "globalSchema": _global_schema,
    "gateway": _gateway,
    "gatewayHostnameConfiguration": _gateway_hostname,
    "gatewayCertificateAuthority": _gateway_ca,
    "emailTemplate": _email_template,
    "notification": _notification,
    "notificationRecipientUser": _recipient_user,
    "notificationRecipientEmail": _recipient_email,
    "portalSetting": _portal_setting,
    "tenantAccess": _tenant_access,
    "authorizationProvider": _authorization_provider,
    "authorization": _authorization,
    "authorizationAccessPolicy": _access_policy,
    "issue": _user_ref,
    "issueComment": _user_ref,
    "tagDescription": _tag_description,
    "wiki": _wiki,
    "contentType": _content_type,
    "contentItem": _passthrough,
    "documentation": _passthrough,
    "policyRestriction": _policy_restriction,
    "portalConfig": _portal_config,
    "portalRevision": _portal_revision,
    "resolver": _resolver,
    "operation": websocket_apis.normalize_operation,
}


# --- deletes ---------------------------------------------------------------------------------------
async def before_delete(conn: AsyncConnection, store: int, t: Target) -> None:
    """Refuse deletes Azure refuses: a fragment or logger still in use."""
    assert t.name is not None
    await websocket_apis.before_delete(conn, store, t)
    if t.kind.kind == "policyFragment":
        users = await fragment_references(conn, store, t.name)
        if users:
            raise ArmError(
                409,
                "PolicyFragmentInUse",
                f"Policy fragment '{t.name}' is referenced by {len(users)} policy document(s) "
                f"(e.g. '{users[0]}'); remove the <include-fragment> first.",
            )
    if t.kind.kind == "logger":
        ref = f"/loggers/{t.name}".lower()
        for row in await E.list_all(conn, store, "diagnostic"):
            if str(row.data.get("loggerId", "")).lower() == ref:
                where = f"{row.parent}/diagnostics/{row.name}" if row.parent else f"diagnostics/{row.name}"
                raise ArmError(
                    409, "LoggerInUse", f"Logger '{t.name}' is used by diagnostic '{where}'; delete it first."
                )
        policies = await logger_references(conn, store, t.name)
        if policies:
            raise ArmError(
                409,
                "LoggerInUse",
                f"Logger '{t.name}' is used by <log-to-eventhub> in '{policies[0]}'; remove it first.",
            )
    if t.kind.kind == "user":
        for parent, name in await E.names_by_kind(conn, store, "notificationRecipientUser", t.name):
            await E.remove(conn, store, "notificationRecipientUser", parent, name)
            await _set_recipient(conn, store, parent, "users", f"/users/{name}", present=False)
    if t.kind.kind == "tag":
        for parent, name in await E.names_by_kind(conn, store, "tagDescription", t.name):
            await E.remove(conn, store, "tagDescription", parent, name)
    if t.kind.kind == "api":
        await E.remove_named(conn, store, ["gatewayApi"], t.name)
    if t.kind.kind == "certificate":
        ref = f"/certificates/{t.name}".lower()
        for row in await E.list_all(conn, store, "gatewayHostnameConfiguration"):
            if str(row.data.get("certificateId", "")).lower() == ref:
                raise ArmError(
                    409,
                    "CertificateInUse",
                    f"Certificate '{t.name}' is used by hostname configuration '{row.parent}/hostnameConfigurations/{row.name}'.",
                )
        for parent, _name in await E.names_by_kind(conn, store, "gatewayCertificateAuthority", t.name):
            raise ArmError(
                409, "CertificateInUse", f"Certificate '{t.name}' is a certificate authority of '{parent}'."
            )
        await _refuse_backend_use(conn, store, t.name)


async def _refuse_backend_use(conn: AsyncConnection, store: int, cert: str) -> None:
    """A backend that presents the certificate (by id or by thumbprint) would lose its client
    certificate: the delete is refused, naming the backend."""
    row = await E.get(conn, store, "certificate", "", cert)
    thumbprint = str((row.data if row else {}).get("thumbprint") or "").upper()
    ref = f"certificates/{cert}".lower()
    for backend in await E.list_all(conn, store, "backend"):
        creds = backend.data.get("credentials") or {}
        by_id = any(to_relative(str(r)).strip("/").lower() == ref for r in creds.get("certificateIds") or [])
        by_thumbprint = bool(thumbprint) and any(
            str(x).strip().upper() == thumbprint for x in creds.get("certificate") or []
        )
        if by_id or by_thumbprint:
            field = "credentials.certificateIds" if by_id else "credentials.certificate"
            raise ArmError(
                409,
                "CertificateInUse",
                f"Certificate '{cert}' is used by backend '{backend.name}' ({field}); remove it there first.",
            )


async def fragment_references(conn: AsyncConnection, store: int, fragment: str) -> list[str]:
    """Paths of the policies and fragments whose XML includes `fragment`."""
    out = []
    for kind, segment in (("policy", "policies/policy"), ("policyFragment", "")):
        for r in await E.list_all(conn, store, kind):
            for fid in FRAGMENT_REF.findall(str(r.data.get("value", ""))):
                if fid.lower() == fragment.lower() and not (kind == "policyFragment" and r.name == fragment):
                    own = f"policyFragments/{r.name}" if not segment else segment
                    out.append(f"{r.parent}/{own}" if r.parent else own)
    return out


async def after_delete(conn: AsyncConnection, store: int, t: Target) -> None:
    """Deleting an email template restores Azure's default one; a recipient leaves its notification."""
    if t.kind.kind == "notificationRecipientUser" and t.name is not None:
        await _set_recipient(conn, store, t.parent, "users", f"/users/{t.name}", present=False)
    if t.kind.kind == "notificationRecipientEmail" and t.name is not None:
        await _set_recipient(conn, store, t.parent, "emails", t.name, present=False)
    if t.kind.kind == "emailTemplate" and t.name is not None:
        data = builtin_template(t.name)
        await E.put(conn, store, "emailTemplate", "", t.name, None, data, exists=False)
