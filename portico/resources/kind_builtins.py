"""The entities Azure creates with a new service beside the built-in groups: email templates,
notifications, portal settings and config, tenant settings and tenant access keys."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

from portico.resources import catalog


def new_access_key() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode()


def builtin_template(name: str) -> dict[str, Any]:
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("Notification Message", "").strip()
    title = words[:1].upper() + words[1:]
    return {
        "subject": f"{title} ($OrganizationName)",
        "body": (
            "<!DOCTYPE html><html><head /><body><p>Dear $DevFirstName $DevLastName,</p>"
            f"<p>{title}.</p><p>Best,</p><p>The $OrganizationName API Team</p></body></html>"
        ),
        "title": title,
        "description": f"Sent for: {title.lower()}.",
        "isDefault": True,
        "parameters": [
            {"name": "DevFirstName", "title": "Developer first name"},
            {"name": "DevLastName", "title": "Developer last name"},
            {"name": "OrganizationName", "title": "Organization name"},
        ],
    }


def builtin_notification(name: str) -> dict[str, Any]:
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("Notification Message", "").strip()
    return {
        "title": words,
        "description": f"Notification: {words.lower()}.",
        "recipients": {"emails": [], "users": []},
    }


def builtin_portal_setting(name: str) -> dict[str, Any]:
    if name == "signin":
        return {"enabled": False}
    if name == "signup":
        return {"enabled": True, "termsOfService": {"enabled": False, "consentRequired": False, "text": ""}}
    return {
        "url": None,
        "validationKey": new_access_key(),
        "subscriptions": {"enabled": False},
        "userRegistration": {"enabled": False},
    }


def builtin_portal_config() -> dict[str, Any]:
    return {
        "enableBasicAuth": True,
        "signin": {"require": False},
        "signup": {"termsOfService": {"text": "", "requireConsent": False}},
        "delegation": {
            "delegateRegistration": False,
            "delegateSubscription": False,
            "validationKey": new_access_key(),
        },
        "cors": {"allowedOrigins": []},
        "csp": {"mode": "disabled", "reportUri": [], "allowedSources": []},
    }


def builtin_access(name: str) -> dict[str, Any]:
    return {
        "id": name,
        "principalId": "git" if name == "gitAccess" else "integration",
        "enabled": False,
        "primaryKey": new_access_key(),
        "secondaryKey": new_access_key(),
    }


TENANT_SETTINGS = {
    "settings": {
        "CustomPortalSettings.DelegationEnabled": "False",
        "CustomPortalSettings.DelegatedSubscriptionEnabled": "False",
        "CustomPortalSettings.UserRegistrationTerms": None,
        "CustomPortalSettings.UserRegistrationTermsEnabled": "False",
        "CustomPortalSettings.UserRegistrationTermsConsentRequired": "False",
    }
}


def builtins() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(kind, parent, name, data) of what Azure creates with a new service beside the built-in groups."""
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    out += [("emailTemplate", "", n, builtin_template(n)) for n in catalog.TEMPLATE_NAMES]
    out += [("notification", "", n, builtin_notification(n)) for n in catalog.NOTIFICATION_NAMES]
    out += [("portalSetting", "", n, builtin_portal_setting(n)) for n in catalog.PORTAL_SETTING_NAMES]
    out += [("tenantAccess", "", n, builtin_access(n)) for n in catalog.TENANT_ACCESS_NAMES]
    out.append(("tenantSetting", "", "public", TENANT_SETTINGS))
    out.append(("portalConfig", "", "default", builtin_portal_config()))
    return out
