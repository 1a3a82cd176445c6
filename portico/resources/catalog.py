"""The kinds of a service beyond APIs, products, groups, users, subscriptions, named values,
backends, tags and version sets: as specifications that `kinds.py` turns into `Kind`s (so this
module needs nothing of it). Each is one row: storage key, URL segment as Azure spells it, ARM
type under `Microsoft.ApiManagement/service/`, request model, and `Kind` options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portico.resources import models as m
from portico.resources import models_config as c
from portico.resources import models_portal as p

# Names Azure gives the entities that exist on every service (the URL must use one of them).
TEMPLATE_NAMES = (
    "applicationApprovedNotificationMessage",
    "accountClosedDeveloper",
    "quotaLimitApproachingDeveloperNotificationMessage",
    "newDeveloperNotificationMessage",
    "emailChangeIdentityDefault",
    "inviteUserNotificationMessage",
    "newCommentNotificationMessage",
    "confirmSignUpIdentityDefault",
    "newIssueNotificationMessage",
    "purchaseDeveloperNotificationMessage",
    "passwordResetIdentityDefault",
    "passwordResetByAdminNotificationMessage",
    "rejectDeveloperNotificationMessage",
    "requestDeveloperNotificationMessage",
)
NOTIFICATION_NAMES = (
    "RequestPublisherNotificationMessage",
    "PurchasePublisherNotificationMessage",
    "NewApplicationNotificationMessage",
    "BCC",
    "NewIssuePublisherNotificationMessage",
    "AccountClosedPublisher",
    "QuotaLimitApproachingPublisherNotificationMessage",
)
IDENTITY_PROVIDER_NAMES = ("facebook", "google", "microsoft", "twitter", "aad", "aadB2C")
PORTAL_SETTING_NAMES = ("signin", "signup", "delegation")
TENANT_ACCESS_NAMES = ("access", "gitAccess")


@dataclass(frozen=True)
class KindSpec:
    kind: str
    segment: str
    arm_type: str
    model: type[m.Props]
    options: dict[str, Any] = field(default_factory=dict)
    children: tuple[KindSpec, ...] = ()


def _policy(arm_type: str) -> KindSpec:
    return KindSpec("policy", "policies", arm_type, m.PolicyProps, {"fixed_name": "policy"})


def _wiki(arm_type: str) -> KindSpec:
    return KindSpec("wiki", "wikis", arm_type, p.WikiProps, {"names": ("default",)})


ISSUE_CHILDREN = (
    KindSpec("issueComment", "comments", "apis/issues/comments", p.IssueCommentProps),
    KindSpec("issueAttachment", "attachments", "apis/issues/attachments", p.IssueAttachmentProps),
)

TOP_LEVEL = (
    KindSpec("logger", "loggers", "loggers", c.LoggerProps, {"id_max": 80}),
    KindSpec("diagnostic", "diagnostics", "diagnostics", c.DiagnosticProps, {"id_max": 80}),
    KindSpec("certificate", "certificates", "certificates", c.CertificateProps, {"id_max": 80}),
    KindSpec(
        "identityProvider",
        "identityProviders",
        "identityProviders",
        c.IdentityProviderProps,
        {"names": IDENTITY_PROVIDER_NAMES},
    ),
    KindSpec(
        "authorizationServer",
        "authorizationServers",
        "authorizationServers",
        c.AuthorizationServerProps,
        {"id_max": 80},
    ),
    KindSpec(
        "openidConnectProvider",
        "openidConnectProviders",
        "openidConnectProviders",
        c.OpenidConnectProviderProps,
        {"id_max": 256},
    ),
    KindSpec("emailTemplate", "templates", "templates", p.EmailTemplateProps, {"names": TEMPLATE_NAMES}),
    KindSpec(
        "notification",
        "notifications",
        "notifications",
        p.NotificationProps,
        {"names": NOTIFICATION_NAMES, "body_optional": True},
        (
            KindSpec(
                "notificationRecipientUser",
                "recipientUsers",
                "notifications/recipientUsers",
                p.RecipientProps,
                {"body_optional": True, "delete_if_match": False, "head_status": 204},
            ),
            KindSpec(
                "notificationRecipientEmail",
                "recipientEmails",
                "notifications/recipientEmails",
                p.RecipientProps,
                {"body_optional": True, "delete_if_match": False, "head_status": 204},
            ),
        ),
    ),
    KindSpec(
        "portalSetting",
        "portalsettings",
        "portalsettings",
        p.PortalSettingProps,
        {"names": PORTAL_SETTING_NAMES},
    ),
    KindSpec("portalConfig", "portalconfigs", "portalconfigs", p.PortalConfigProps, {"names": ("default",)}),
    KindSpec("portalRevision", "portalRevisions", "portalRevisions", p.PortalRevisionProps, {"id_max": 256}),
    KindSpec("tenantSetting", "settings", "settings", m.Props, {"names": ("public",), "read_only": True}),
    KindSpec("tenantAccess", "tenant", "tenant", p.TenantAccessProps, {"names": TENANT_ACCESS_NAMES}),
    KindSpec("policyFragment", "policyFragments", "policyFragments", c.PolicyFragmentProps, {"id_max": 80}),
    KindSpec("globalSchema", "schemas", "schemas", c.GlobalSchemaProps, {"id_max": 80}),
    KindSpec(
        "gateway",
        "gateways",
        "gateways",
        c.GatewayProps,
        {"id_max": 80},
        (
            KindSpec(
                "gatewayHostnameConfiguration",
                "hostnameConfigurations",
                "gateways/hostnameConfigurations",
                c.GatewayHostnameProps,
                {"id_max": 80},
            ),
            KindSpec(
                "gatewayCertificateAuthority",
                "certificateAuthorities",
                "gateways/certificateAuthorities",
                c.GatewayCertificateAuthorityProps,
                {"id_max": 80},
            ),
            KindSpec(
                "gatewayApi",
                "apis",
                "gateways/apis",
                m.LinkProps,
                {"link_target": "api", "head_status": 200},
            ),
        ),
    ),
    KindSpec("cache", "caches", "caches", c.CacheProps, {"id_max": 80}),
    KindSpec(
        "authorizationProvider",
        "authorizationProviders",
        "authorizationProviders",
        p.AuthorizationProviderProps,
        {"id_max": 256},
        (
            KindSpec(
                "authorization",
                "authorizations",
                "authorizationProviders/authorizations",
                p.AuthorizationProps,
                {"id_max": 256},
                (
                    KindSpec(
                        "authorizationAccessPolicy",
                        "accessPolicies",
                        "authorizationProviders/authorizations/accessPolicies",
                        p.AuthorizationAccessPolicyProps,
                        {"id_max": 256},
                    ),
                ),
            ),
        ),
    ),
    KindSpec(
        "contentType",
        "contentTypes",
        "contentTypes",
        p.ContentTypeProps,
        {"id_max": 80},
        (
            KindSpec(
                "contentItem", "contentItems", "contentTypes/contentItems", p.ContentItemProps, {"id_max": 80}
            ),
        ),
    ),
    KindSpec("documentation", "documentations", "documentations", c.DocumentationProps, {"id_max": 80}),
    KindSpec(
        "policyRestriction",
        "policyRestrictions",
        "policyRestrictions",
        c.PolicyRestrictionProps,
        {"id_max": 80},
    ),
)

# Children these kinds add under an API and under a product.
API_CHILDREN = (
    KindSpec("diagnostic", "diagnostics", "apis/diagnostics", c.DiagnosticProps, {"id_max": 80}),
    KindSpec("issue", "issues", "apis/issues", p.IssueProps, {"id_max": 256}, ISSUE_CHILDREN),
    KindSpec(
        "tagDescription", "tagDescriptions", "apis/tagDescriptions", p.TagDescriptionProps, {"id_max": 80}
    ),
    _wiki("apis/wikis"),
    KindSpec(
        "resolver",
        "resolvers",
        "apis/resolvers",
        c.ResolverProps,
        {"id_max": 80},
        (_policy("apis/resolvers/policies"),),
    ),
)
PRODUCT_CHILDREN = (_wiki("products/wikis"),)

# Kinds Azure counts as runtime data (with users and subscriptions), not configuration.
RUNTIME_KINDS = frozenset({"issue", "issueComment", "issueAttachment"})

# Actions on an entity: (kind, lower-case action) -> the action's name in RBAC and in the URL.
ACTIONS = {
    ("identityProvider", "listsecrets"): "listSecrets",
    ("authorizationServer", "listsecrets"): "listSecrets",
    ("openidConnectProvider", "listsecrets"): "listSecrets",
    ("portalSetting", "listsecrets"): "listSecrets",
    ("tenantAccess", "listsecrets"): "listSecrets",
    ("tenantAccess", "regenerateprimarykey"): "regeneratePrimaryKey",
    ("tenantAccess", "regeneratesecondarykey"): "regenerateSecondaryKey",
    ("backend", "reconnect"): "reconnect",
    ("gateway", "listkeys"): "listKeys",
    ("gateway", "regeneratekey"): "regenerateKey",
    ("gateway", "generatetoken"): "generateToken",
    ("gateway", "invalidatedebugcredentials"): "invalidateDebugCredentials",
    ("gateway", "listdebugcredentials"): "listDebugCredentials",
    ("gateway", "listtrace"): "listTrace",
    ("policyFragment", "listreferences"): "listReferences",
    ("authorization", "confirmconsentcode"): "confirmConsentCode",
    ("authorization", "getloginlinks"): "getLoginLinks",
}

# Status of an action that answers without a body, where it is not 204.
ACTION_STATUS = {("backend", "reconnect"): 202}
