"""Request models for the entities of a service, as Azure API Management 2024-05-01 defines them.

Field names are the wire (camelCase) names. Unknown fields are dropped, read-only fields are
ignored on input; the server is the only validator (the Azure SDK validates nothing client-side).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Str100 = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Str300 = Annotated[str, StringConstraints(min_length=1, max_length=300)]
Url2000 = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class Props(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class KeyParameterNames(Props):
    header: str | None = Field(default=None, max_length=100)
    query: str | None = Field(default=None, max_length=100)


class ApiProps(Props):
    path: str = Field(max_length=400)
    displayName: str | None = Field(default=None, min_length=1, max_length=300)
    serviceUrl: str | None = Field(default=None, max_length=2000)
    protocols: list[Literal["http", "https", "ws", "wss"]] | None = None
    description: str | None = None
    subscriptionKeyParameterNames: KeyParameterNames | None = None
    type: Literal["http", "soap", "websocket", "graphql", "odata", "grpc"] | None = None
    apiType: Literal["http", "soap", "websocket", "graphql", "odata", "grpc"] | None = None
    apiRevision: str | None = Field(default=None, min_length=1, max_length=100)
    apiVersion: str | None = Field(default=None, max_length=100)
    isCurrent: bool | None = None
    apiRevisionDescription: str | None = Field(default=None, max_length=256)
    apiVersionDescription: str | None = Field(default=None, max_length=256)
    apiVersionSetId: str | None = None
    subscriptionRequired: bool | None = None
    authenticationSettings: dict[str, Any] | None = None
    termsOfServiceUrl: str | None = None
    contact: dict[str, Any] | None = None
    license: dict[str, Any] | None = None
    sourceApiId: str | None = None
    isOnline: bool | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        v = v.strip("/")
        if any(c in v for c in "?#"):
            raise ValueError("must not contain '?' or '#'")
        return v


class ApiReleaseProps(Props):
    apiId: str = Field(min_length=1, max_length=1000)
    notes: str | None = None


class ParameterProps(Props):
    name: str = Field(min_length=1)
    type: str = Field(min_length=1)
    description: str | None = None
    defaultValue: str | None = None
    required: bool | None = None
    values: list[str] | None = None
    schemaId: str | None = None
    typeName: str | None = None
    examples: dict[str, Any] | None = None


class RepresentationProps(Props):
    contentType: str = Field(min_length=1)
    schemaId: str | None = None
    typeName: str | None = None
    formParameters: list[ParameterProps] | None = None
    examples: dict[str, Any] | None = None


class RequestProps(Props):
    description: str | None = None
    queryParameters: list[ParameterProps] | None = None
    headers: list[ParameterProps] | None = None
    representations: list[RepresentationProps] | None = None


class ResponseProps(Props):
    statusCode: int = Field(ge=100, le=599)
    description: str | None = None
    representations: list[RepresentationProps] | None = None
    headers: list[ParameterProps] | None = None


class OtherResponseProps(Props):
    """A response an imported definition keys by `default` or a range (2XX), which Azure's
    integer `statusCode` cannot carry (a Portico extension, kept so that nothing is lost)."""

    status: Annotated[str, StringConstraints(pattern=r"^(default|[1-5]XX)$")]
    description: str | None = None
    representations: list[RepresentationProps] | None = None
    headers: list[ParameterProps] | None = None


HTTP_METHOD = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{1,20}$")]


class OperationProps(Props):
    displayName: Str300
    method: HTTP_METHOD
    urlTemplate: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    description: str | None = Field(default=None, max_length=1000)
    templateParameters: list[ParameterProps] | None = None
    request: RequestProps | None = None
    responses: list[ResponseProps] | None = None
    otherResponses: list[OtherResponseProps] | None = None
    policies: str | None = None

    @field_validator("method")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()


class PolicyProps(Props):
    value: str = Field(min_length=1)
    format: Literal["xml", "xml-link", "rawxml", "rawxml-link"] = "xml"


class SchemaProps(Props):
    contentType: str = Field(min_length=1)
    document: dict[str, Any] | None = None


class ProductProps(Props):
    displayName: Str300
    description: str | None = Field(default=None, max_length=1000)
    terms: str | None = None
    subscriptionRequired: bool = True
    approvalRequired: bool | None = None
    subscriptionsLimit: int | None = Field(default=None, ge=0)
    state: Literal["notPublished", "published"] = "notPublished"


class GroupProps(Props):
    displayName: Str300
    description: str | None = Field(default=None, max_length=1000)
    type: Literal["custom", "external", "system"] = "custom"
    externalId: str | None = None


class UserIdentity(Props):
    provider: str | None = None
    id: str | None = None


class UserProps(Props):
    email: Annotated[str, StringConstraints(min_length=1, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
    firstName: Str100
    lastName: Str100
    password: str | None = Field(default=None, min_length=1, max_length=256)
    state: Literal["active", "blocked", "pending", "deleted"] = "active"
    note: str | None = None
    identities: list[UserIdentity] | None = None
    appType: str | None = None
    confirmation: Literal["signup", "invite"] | None = None


Key = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class SubscriptionProps(Props):
    scope: Annotated[str, StringConstraints(min_length=1)]
    displayName: Str100
    ownerId: str | None = None
    primaryKey: Key | None = None
    secondaryKey: Key | None = None
    state: Literal["active", "suspended", "submitted", "rejected", "cancelled", "expired"] = "submitted"
    allowTracing: bool | None = None
    stateComment: str | None = None


class KeyVaultRef(Props):
    secretIdentifier: str | None = None
    identityClientId: str | None = None
    # what the last read of the secret gave (set by Portico; ignored when a client sends it back)
    lastStatus: dict[str, Any] | None = None


class NamedValueProps(Props):
    displayName: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9-._]+$")]
    value: str | None = Field(default=None, max_length=4096)
    secret: bool = False
    tags: list[str] | None = Field(default=None, max_length=32)
    keyVault: KeyVaultRef | None = None


class BackendAuthorization(Props):
    scheme: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    parameter: Annotated[str, StringConstraints(min_length=1, max_length=300)]


class BackendCredentials(Props):
    certificateIds: list[str] | None = None
    certificate: list[str] | None = None
    query: dict[str, list[str]] | None = None
    header: dict[str, list[str]] | None = None
    authorization: BackendAuthorization | None = None


class BackendProxy(Props):
    url: Url2000
    username: str | None = None
    password: str | None = None


class BackendTls(Props):
    validateCertificateChain: bool = True
    validateCertificateName: bool = True


class PoolService(Props):
    id: str = Field(min_length=1)
    priority: int | None = Field(default=None, ge=0, le=100)
    weight: int | None = Field(default=None, ge=0, le=100)


class BackendPool(Props):
    services: list[PoolService] | None = None


class BackendProps(Props):
    url: Url2000
    protocol: Literal["http", "soap"]
    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, min_length=1, max_length=2000)
    resourceId: str | None = Field(default=None, min_length=1, max_length=2000)
    properties: dict[str, Any] | None = None
    credentials: BackendCredentials | None = None
    proxy: BackendProxy | None = None
    tls: BackendTls | None = None
    circuitBreaker: dict[str, Any] | None = None
    pool: BackendPool | None = None
    type: Literal["Single", "Pool"] | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.lower().startswith(("http://", "https://")):
            raise ValueError("must be an absolute http or https URL")
        return v


class TagProps(Props):
    displayName: Annotated[str, StringConstraints(min_length=1, max_length=160)]


class ApiVersionSetProps(Props):
    displayName: Str100
    versioningScheme: Literal["Segment", "Query", "Header"]
    description: str | None = None
    versionQueryName: str | None = Field(default=None, min_length=1, max_length=100)
    versionHeaderName: str | None = Field(default=None, min_length=1, max_length=100)


class LinkProps(Props):
    """Links (product→api, product→group, group→user, tag links) carry no properties of their own."""
