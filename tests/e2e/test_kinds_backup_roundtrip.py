"""Backup and restore carry every configuration kind: one entity of each in a service, backed up
and restored into another service through the SDK, compared collection by collection (and the
secrets through their listSecrets-style actions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.apimanagement import models as M

from tests.conftest import sdk_client
from tests.e2e.dr_support import SUB, Rest
from tests.support.certs import self_signed_pfx
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow

RG = "rg-kinds"
TRIPPIN = (Path(__file__).parent.parent / "fixtures" / "odata" / "trippin-v4.xml").read_text()
FRAGMENT = "<fragment><set-header name='x' exists-action='override'><value>1</value></set-header></fragment>"

# (path of the entity, properties): created in this order, each kind once.
ENTITIES: list[tuple[str, dict[str, Any]]] = [
    ("apis/echo", {"path": "echo", "displayName": "Echo", "serviceUrl": "https://b.example"}),
    ("products/starter", {"displayName": "Starter"}),
    ("users/alice", {"email": "alice@example.com", "firstName": "A", "lastName": "L"}),
    ("tags/t1", {"displayName": "T1"}),
    ("loggers/lg", {"loggerType": "applicationInsights", "credentials": {"instrumentationKey": "ik-secret"}}),
    ("diagnostics/applicationinsights", {"loggerId": "/loggers/lg"}),
    ("apis/echo/diagnostics/applicationinsights", {"loggerId": "/loggers/lg", "verbosity": "error"}),
    ("certificates/c1", {}),  # filled in with a PFX below
    ("identityProviders/google", {"clientId": "cid", "clientSecret": "idp-secret"}),
    (
        "authorizationServers/as1",
        {
            "displayName": "AS",
            "clientRegistrationEndpoint": "https://as.example/r",
            "authorizationEndpoint": "https://as.example/a",
            "grantTypes": ["clientCredentials"],
            "clientId": "c",
            "clientSecret": "as-secret",
        },
    ),
    (
        "openidConnectProviders/o1",
        {
            "displayName": "O",
            "metadataEndpoint": "https://o.example/m",
            "clientId": "c",
            "clientSecret": "o-secret",
        },
    ),
    ("caches/default", {"connectionString": "r:6380,password=cache-secret", "useFromLocation": "default"}),
    ("policyFragments/f1", {"value": FRAGMENT}),
    ("schemas/s1", {"schemaType": "json", "document": {"type": "object"}}),
    ("gateways/gw", {"locationData": {"name": "edge"}}),
    (
        "gateways/gw/hostnameConfigurations/h1",
        {"hostname": "api.example.com", "certificateId": "/certificates/c1"},
    ),
    ("gateways/gw/certificateAuthorities/c1", {"isTrusted": True}),
    ("gateways/gw/apis/echo", {}),
    ("templates/accountClosedDeveloper", {"subject": "Bye $DevFirstName"}),
    ("notifications/BCC/recipientUsers/alice", {}),
    ("notifications/BCC/recipientEmails/ops@example.com", {}),
    ("portalsettings/signin", {"enabled": True}),
    (
        "authorizationProviders/ap",
        {
            "displayName": "Generic",
            "identityProvider": "oauth2",
            "oauth2": {
                "grantTypes": {
                    "authorizationCode": {
                        "clientId": "c",
                        "clientSecret": "ap-secret",
                        "authorizationUrl": "https://idp.example/authorize",
                        "tokenUrl": "https://idp.example/token",
                    }
                }
            },
        },
    ),
    (
        "authorizationProviders/ap/authorizations/az",
        {"authorizationType": "OAuth2", "oauth2grantType": "AuthorizationCode"},
    ),
    ("authorizationProviders/ap/authorizations/az/accessPolicies/p1", {"tenantId": "t", "objectId": "o"}),
    ("contentTypes/ct", {"name": "Page"}),
    ("contentTypes/ct/contentItems/i1", {"en_us": {"title": "Hi"}}),
    ("documentations/d1", {"title": "Doc", "content": "# hi"}),
    ("policyRestrictions/r1", {"scope": "/apis/echo", "requireBase": "true"}),
    ("apis/echo/issues/is1", {"title": "Bug", "description": "d", "userId": "/users/alice"}),
    ("apis/echo/issues/is1/comments/c1", {"text": "me too", "userId": "/users/alice"}),
    (
        "apis/echo/issues/is1/attachments/a1",
        {"title": "log", "contentFormat": "text/plain", "content": "aGk="},
    ),
    ("apis/echo/tagDescriptions/t1", {"description": "tagged"}),
    ("apis/echo/wikis/default", {"documents": [{"documentationId": "d1"}]}),
    ("products/starter/wikis/default", {"documents": []}),
    ("apis/gql", {"path": "gql", "displayName": "G", "serviceUrl": "https://g.example", "type": "graphql"}),
    ("apis/gql/resolvers/users", {"displayName": "Users", "path": "Query/users", "description": "d"}),
    (
        "apis/gql/resolvers/users/policies/policy",
        {
            "format": "rawxml",
            "value": "<http-data-source><http-request><set-method>GET</set-method>"
            "<set-url>https://g.example/users</set-url></http-request></http-data-source>",
        },
    ),
    (
        "apis/trip",
        {"path": "trip", "displayName": "TripPin", "serviceUrl": "https://o.example", "type": "odata"},
    ),
    (
        "apis/trip/schemas/odata",
        {"contentType": "application/vnd.ms-azure-apim.odata.schema", "document": {"value": TRIPPIN}},
    ),
]
COLLECTIONS = sorted(
    {path.rsplit("/", 1)[0] for path, _ in ENTITIES}
    | {"templates", "notifications", "settings", "tenant", "portalsettings"}
)
SECRETS = [
    ("identityProviders/google/listSecrets", "POST"),
    ("authorizationServers/as1/listSecrets", "POST"),
    ("openidConnectProviders/o1/listSecrets", "POST"),
    ("portalsettings/delegation/listSecrets", "POST"),
    ("tenant/access/listSecrets", "POST"),
    ("gateways/gw/listKeys", "POST"),
]


def _collections(rest: Rest, name: str) -> dict[str, Any]:
    prefix = rest.svc(RG, name).split(f"/subscriptions/{SUB}", 1)[1]
    out = {}
    for coll in COLLECTIONS:
        body = rest.call("GET", rest.svc(RG, name, coll)).text
        out[coll] = body.replace(prefix, "/SERVICE")
    for path, method in SECRETS:
        out[path] = rest.call(method, rest.svc(RG, name, path)).json()
    return out


def test_every_kind_survives_backup_and_restore(server_factory: Callable[..., PorticoServer]) -> None:
    server = server_factory()
    key = server.cli("storage", "account", "create", "kindsbackups").stdout.strip().splitlines()[-1].strip()
    server.cli("storage", "container", "create", "kindsbackups", "backups")
    rest, client = Rest(server), sdk_client(server, SUB)
    rest.service(RG, "kinds-src")
    rest.service(RG, "kinds-dst")
    pfx, _ = self_signed_pfx("gw.example", "pw")
    for path, props in ENTITIES:
        if path == "certificates/c1":
            props = {"data": pfx, "password": "pw"}
        rest.call("PUT", rest.svc(RG, "kinds-src", path), {"properties": props}, headers={"If-Match": "*"})
    before = _collections(rest, "kinds-src")
    assert all('"value":[]' not in before[c] for c in COLLECTIONS if c != "settings"), before

    # Before the restore the target differs (its own keys, no APIs): the restore makes them equal.
    assert (
        rest.call("POST", rest.svc(RG, "kinds-dst", "tenant/access/listSecrets")).json()
        != before["tenant/access/listSecrets"]
    )

    params = M.ApiManagementServiceBackupRestoreParameters(
        storage_account="kindsbackups", container_name="backups", backup_name="kinds", access_key=key
    )
    client.api_management_service.begin_backup(RG, "kinds-src", params).result()
    client.api_management_service.begin_restore(RG, "kinds-dst", params).result()
    after = _collections(rest, "kinds-dst")
    for coll in before:
        assert after[coll] == before[coll], coll
    log = (server.data_dir / "server.log").read_text()
    for secret in ("idp-secret", "as-secret", "o-secret", "cache-secret", "ik-secret", "ap-secret"):
        assert secret not in log
