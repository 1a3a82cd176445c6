"""Request models of the service's configuration kinds beyond APIs and products (2024-05-01):
loggers, diagnostics, certificates, sign-in providers, caches, policy fragments, global schemas,
self-hosted gateways, policy restrictions, documentations and GraphQL resolvers.

Wire (camelCase) names; read-only properties are not declared (so they are ignored on input).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from portico.resources.models import KeyVaultRef, Props

Str50 = Annotated[str, StringConstraints(min_length=1, max_length=50)]
Str256 = Annotated[str, StringConstraints(min_length=1, max_length=256)]


def _absolute_url(v: str) -> str:
    if not v.lower().startswith(("http://", "https://")):
        raise ValueError("must be an absolute http or https URL")
    return v


class LoggerProps(Props):
    loggerType: Literal["azureEventHub", "applicationInsights", "azureMonitor"]
    description: str | None = Field(default=None, max_length=256)
    credentials: dict[str, str] | None = None
    isBuffered: bool = True
    resourceId: str | None = None


class BodyDiagnostic(Props):
    bytes: int | None = Field(default=None, ge=0, le=8192)


class DataMaskingEntity(Props):
    value: str | None = None
    mode: Literal["Mask", "Hide"] | None = None


class DataMasking(Props):
    queryParams: list[DataMaskingEntity] | None = None
    headers: list[DataMaskingEntity] | None = None


class HttpMessageDiagnostic(Props):
    headers: list[str] | None = None
    body: BodyDiagnostic | None = None
    dataMasking: DataMasking | None = None


class PipelineDiagnostic(Props):
    request: HttpMessageDiagnostic | None = None
    response: HttpMessageDiagnostic | None = None


class Sampling(Props):
    samplingType: Literal["fixed"] | None = None
    percentage: float | None = Field(default=None, ge=0, le=100)


class DiagnosticProps(Props):
    loggerId: str = Field(min_length=1)
    alwaysLog: Literal["allErrors"] | None = None
    sampling: Sampling | None = None
    frontend: PipelineDiagnostic | None = None
    backend: PipelineDiagnostic | None = None
    logClientIp: bool | None = None
    httpCorrelationProtocol: Literal["None", "Legacy", "W3C"] | None = None
    verbosity: Literal["verbose", "information", "error"] | None = None
    operationNameFormat: Literal["Name", "Url"] | None = None
    metrics: bool | None = None
    largeLanguageModel: dict[str, Any] | None = None


class CertificateProps(Props):
    data: str | None = Field(default=None, min_length=1)
    password: str | None = None
    keyVault: KeyVaultRef | None = None


class IdentityProviderProps(Props):
    clientId: str = Field(min_length=1)
    clientSecret: str | None = Field(default=None, min_length=1)
    type: Literal["facebook", "google", "microsoft", "twitter", "aad", "aadB2C"] | None = None
    signinTenant: str | None = None
    allowedTenants: list[str] | None = Field(default=None, max_length=32)
    authority: str | None = None
    signupPolicyName: str | None = Field(default=None, min_length=1)
    signinPolicyName: str | None = Field(default=None, min_length=1)
    profileEditingPolicyName: str | None = Field(default=None, min_length=1)
    passwordResetPolicyName: str | None = Field(default=None, min_length=1)
    clientLibrary: Literal["ADAL", "MSAL-2"] | None = None


class TokenBodyParameter(Props):
    name: str = Field(min_length=1)
    value: str


GrantType = Literal["authorizationCode", "implicit", "resourceOwnerPassword", "clientCredentials"]
Method = Literal["HEAD", "OPTIONS", "TRACE", "GET", "POST", "PUT", "PATCH", "DELETE"]


class AuthorizationServerProps(Props):
    displayName: Str50
    clientRegistrationEndpoint: str = Field(min_length=1)
    authorizationEndpoint: str = Field(min_length=1)
    grantTypes: list[GrantType] = Field(min_length=1)
    clientId: str = Field(min_length=1)
    clientSecret: str | None = None
    description: str | None = None
    authorizationMethods: list[Method] = ["GET"]
    clientAuthenticationMethod: list[Literal["Basic", "Body"]] | None = None
    tokenBodyParameters: list[TokenBodyParameter] | None = None
    tokenEndpoint: str | None = None
    supportState: bool | None = None
    defaultScope: str | None = None
    bearerTokenSendingMethods: list[Literal["authorizationHeader", "query"]] | None = None
    resourceOwnerUsername: str | None = None
    resourceOwnerPassword: str | None = None
    useInTestConsole: bool | None = None
    useInApiDocumentation: bool | None = None

    _urls = field_validator("clientRegistrationEndpoint", "authorizationEndpoint")(_absolute_url)


class OpenidConnectProviderProps(Props):
    displayName: Str50
    metadataEndpoint: str = Field(min_length=1)
    clientId: str = Field(min_length=1)
    clientSecret: str | None = None
    description: str | None = None
    useInTestConsole: bool | None = None
    useInApiDocumentation: bool | None = None

    _url = field_validator("metadataEndpoint")(_absolute_url)


class CacheProps(Props):
    connectionString: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    useFromLocation: Str256
    description: str | None = Field(default=None, max_length=2000)
    resourceId: str | None = Field(default=None, max_length=2000)


class PolicyFragmentProps(Props):
    value: str = Field(min_length=1)
    description: str | None = Field(default=None, max_length=1000)
    format: Literal["xml", "rawxml"] = "xml"


class GlobalSchemaProps(Props):
    schemaType: Literal["xml", "json"]
    description: str | None = None
    value: Any = None
    document: Any = None


class GatewayLocation(Props):
    name: Str256
    city: str | None = Field(default=None, max_length=256)
    district: str | None = Field(default=None, max_length=256)
    countryOrRegion: str | None = Field(default=None, max_length=256)


class GatewayProps(Props):
    locationData: GatewayLocation | None = None
    description: str | None = Field(default=None, max_length=1000)


class GatewayHostnameProps(Props):
    hostname: str = Field(min_length=1)
    certificateId: str | None = None
    negotiateClientCertificate: bool | None = None
    tls10Enabled: bool | None = None
    tls11Enabled: bool | None = None
    http2Enabled: bool | None = None


class GatewayCertificateAuthorityProps(Props):
    isTrusted: bool | None = None


class PolicyRestrictionProps(Props):
    scope: str | None = None
    requireBase: Literal["true", "false"] = "false"


class DocumentationProps(Props):
    title: str | None = None
    content: str | None = None


class ResolverProps(Props):
    """A GraphQL resolver: which field of which type (`Query/users`) it resolves."""

    displayName: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    path: str = Field(min_length=1, max_length=300)
    description: str | None = None

    @field_validator("path")
    @classmethod
    def _type_field(cls, v: str) -> str:
        if not re.fullmatch(r"[_A-Za-z][_0-9A-Za-z]*/[_A-Za-z][_0-9A-Za-z]*", v):
            raise ValueError("must be a GraphQL type and field as 'Type/field', e.g. 'Query/users'")
        return v
