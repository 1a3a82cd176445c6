"""Request models of the developer-facing kinds (2024-05-01): email templates, notifications and
their recipients, portal and tenant settings, tenant access, content types/items, issues with
their comments and attachments, tag descriptions, wikis, and authorization providers with their
authorizations and access policies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from portico.resources.models import Props

Str300 = Annotated[str, StringConstraints(min_length=1, max_length=300)]


class TemplateParameter(Props):
    name: str = Field(min_length=1)
    title: str | None = None
    description: str | None = None


class EmailTemplateProps(Props):
    subject: str | None = Field(default=None, min_length=1, max_length=1000)
    body: str | None = Field(default=None, min_length=1)
    title: str | None = None
    description: str | None = None
    parameters: list[TemplateParameter] | None = None


class NotificationProps(Props):
    """A notification takes no request body; its title and recipients are Azure's."""


class RecipientProps(Props):
    """A recipient (user or e-mail) is named by its path; PUT has no body."""


class PortalSettingProps(Props):
    enabled: bool | None = None
    termsOfService: dict[str, Any] | None = None
    url: str | None = None
    validationKey: str | None = None
    subscriptions: dict[str, Any] | None = None
    userRegistration: dict[str, Any] | None = None


class TenantAccessProps(Props):
    enabled: bool | None = None
    principalId: str | None = None
    primaryKey: str | None = None
    secondaryKey: str | None = None


class ContentTypeProps(Props):
    id: str | None = None
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    version: str | None = None


class ContentItemProps(Props):
    """A content item's properties are free-form, checked by its content type's schema in Azure."""

    model_config = Props.model_config | {"extra": "allow"}


IssueState = Literal["proposed", "open", "removed", "resolved", "closed"]


class IssueProps(Props):
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    userId: str = Field(min_length=1)
    state: IssueState = "proposed"
    createdDate: str | None = None
    apiId: str | None = None


class IssueCommentProps(Props):
    text: str = Field(min_length=1)
    userId: str = Field(min_length=1)
    createdDate: str | None = None


class IssueAttachmentProps(Props):
    title: str = Field(min_length=1)
    contentFormat: str = Field(min_length=1)
    content: str = Field(min_length=1)


class TagDescriptionProps(Props):
    description: str | None = None
    externalDocsUrl: str | None = Field(default=None, max_length=2000)
    externalDocsDescription: str | None = None


class WikiDocument(Props):
    documentationId: str | None = None


class WikiProps(Props):
    documents: list[WikiDocument] | None = None


class GrantTypeSet(Props):
    authorizationCode: dict[str, str | None] | None = None
    clientCredentials: dict[str, str | None] | None = None


class OAuth2Settings(Props):
    redirectUrl: str | None = None
    grantTypes: GrantTypeSet | None = None


class AuthorizationProviderProps(Props):
    displayName: Str300 | None = None
    identityProvider: str | None = None
    oauth2: OAuth2Settings | None = None


class AuthorizationProps(Props):
    authorizationType: Literal["OAuth2"] | None = None
    oauth2grantType: Literal["AuthorizationCode", "ClientCredentials"] | None = None
    parameters: dict[str, str] | None = None


class AuthorizationAccessPolicyProps(Props):
    appIds: list[str] | None = None
    tenantId: str | None = None
    objectId: str | None = None


class PortalCsp(Props):
    mode: Literal["enabled", "disabled", "reportOnly"] = "disabled"
    reportUri: list[str] | None = None
    allowedSources: list[str] | None = None


class PortalCors(Props):
    allowedOrigins: list[str] | None = None


class PortalConfigProps(Props):
    enableBasicAuth: bool | None = None
    signin: dict[str, Any] | None = None
    signup: dict[str, Any] | None = None
    delegation: dict[str, Any] | None = None
    cors: PortalCors | None = None
    csp: PortalCsp | None = None


class PortalRevisionProps(Props):
    description: str | None = Field(default=None, max_length=2000)
    isCurrent: bool | None = None
