"""The configuration kinds beyond APIs and products, driven by the real Azure SDK: one table of
kinds runs create, get (ETag), list, update with If-Match (and a stale one), delete and 404 for
each; and the operation-group probe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.apimanagement import models as M

from tests.e2e.conftest import Env
from tests.e2e.kinds_support import FRAGMENT, create, etag_of, list_all, svc
from tests.support.operation_groups import answering, probe

pytestmark = pytest.mark.slow
__all__ = ["svc"]  # the module's service fixture


Row = tuple[str, tuple[str, ...], str, Callable[[], Any], Callable[[], Any] | None, tuple[str, Any]]
TABLE: list[Row] = [
    (
        "logger",
        (),
        "lg1",
        lambda: M.LoggerContract(logger_type="applicationInsights", credentials={"instrumentationKey": "ik"}),
        lambda: M.LoggerUpdateContract(description="updated"),
        ("is_buffered", True),
    ),
    (
        "diagnostic",
        (),
        "applicationinsights",
        lambda: M.DiagnosticContract(logger_id="/loggers/lg0"),
        lambda: M.DiagnosticContract(logger_id="/loggers/lg0", verbosity="error"),
        ("http_correlation_protocol", "Legacy"),
    ),
    (
        "api_diagnostic",
        ("echo",),
        "azuremonitor",
        lambda: M.DiagnosticContract(
            logger_id="/loggers/lg0", sampling=M.SamplingSettings(sampling_type="fixed", percentage=50)
        ),
        lambda: M.DiagnosticContract(logger_id="/loggers/lg0", log_client_ip=True),
        ("verbosity", "information"),
    ),
    (
        "identity_provider",
        (),
        "google",
        lambda: M.IdentityProviderCreateContract(client_id="cid", client_secret="idp-secret"),
        lambda: M.IdentityProviderUpdateParameters(client_id="cid2"),
        ("type_properties_type", "google"),
    ),
    (
        "authorization_server",
        (),
        "as1",
        lambda: M.AuthorizationServerContract(
            display_name="AS",
            client_registration_endpoint="https://as.example/register",
            authorization_endpoint="https://as.example/authorize",
            grant_types=["authorizationCode"],
            client_id="cid",
            client_secret="as-secret",
        ),
        lambda: M.AuthorizationServerUpdateContract(description="updated"),
        ("authorization_methods", ["GET"]),
    ),
    (
        "open_id_connect_provider",
        (),
        "oidc1",
        lambda: M.OpenidConnectProviderContract(
            display_name="OIDC",
            metadata_endpoint="https://idp.example/.well-known",
            client_id="c",
            client_secret="oidc-secret",
        ),
        lambda: M.OpenidConnectProviderUpdateContract(description="updated"),
        ("client_id", "c"),
    ),
    (
        "cache",
        (),
        "default",
        lambda: M.CacheContract(
            connection_string="redis.example:6380,password=cache-secret,ssl=True", use_from_location="default"
        ),
        lambda: M.CacheUpdateParameters(description="updated"),
        ("use_from_location", "default"),
    ),
    (
        "policy_fragment",
        (),
        "frag1",
        lambda: M.PolicyFragmentContract(value=FRAGMENT, description="d"),
        None,
        ("format", "xml"),
    ),
    (
        "global_schema",
        (),
        "gs1",
        lambda: M.GlobalSchemaContract(schema_type="json", document={"type": "object"}),
        None,
        ("schema_type", "json"),
    ),
    (
        "gateway",
        (),
        "gw1",
        lambda: M.GatewayContract(location_data=M.ResourceLocationDataContract(name="dc1"), description="d"),
        lambda: M.GatewayContract(description="updated"),
        ("description", "d"),
    ),
    (
        "gateway_hostname_configuration",
        ("gw0",),
        "hc1",
        lambda: M.GatewayHostnameConfigurationContract(
            hostname="api.example.com", certificate_id="/certificates/cert0"
        ),
        None,
        ("http2_enabled", True),
    ),
    (
        "gateway_certificate_authority",
        ("gw0",),
        "cert0",
        lambda: M.GatewayCertificateAuthorityContract(is_trusted=True),
        None,
        ("is_trusted", True),
    ),
    (
        "content_type",
        (),
        "ct1",
        lambda: M.ContentTypeContract(name_properties_name="Blog", description="d"),
        None,
        ("description", "d"),
    ),
    (
        "content_item",
        ("ct0",),
        "item1",
        lambda: M.ContentItemContract(properties={"en_us": {"title": "Hello"}}),
        None,
        ("properties", {"en_us": {"title": "Hello"}}),
    ),
    (
        "documentation",
        (),
        "doc1",
        lambda: M.DocumentationContract(title="T", content="C"),
        lambda: M.DocumentationUpdateContract(title="T2"),
        ("content", "C"),
    ),
    (
        "policy_restriction",
        (),
        "pr1",
        lambda: M.PolicyRestrictionContract(scope="/apis/echo", require_base="true"),
        lambda: M.PolicyRestrictionUpdateContract(require_base="false"),
        ("require_base", "true"),
    ),
    (
        "authorization_provider",
        (),
        "ap1",
        lambda: M.AuthorizationProviderContract(
            display_name="Generic",
            identity_provider="oauth2pkce",
            oauth2=M.AuthorizationProviderOAuth2Settings(
                grant_types=M.AuthorizationProviderOAuth2GrantTypes(
                    authorization_code={
                        "clientId": "c",
                        "clientSecret": "s",
                        "authorizationUrl": "https://idp.example/authorize",
                        "tokenUrl": "https://idp.example/token",
                    }
                )
            ),
        ),
        None,
        ("identity_provider", "oauth2pkce"),
    ),
    (
        "authorization_access_policy",
        ("ap0", "az0"),
        "pol1",
        lambda: M.AuthorizationAccessPolicyContract(tenant_id="tid", object_id="oid"),
        None,
        ("object_id", "oid"),
    ),
    (
        "api_issue",
        ("echo",),
        "is1",
        lambda: M.IssueContract(title="Bug", description="broken", user_id="/users/alice"),
        lambda: M.IssueUpdateContract(state="open"),
        ("state", "proposed"),
    ),
    (
        "api_issue_comment",
        ("echo", "is0"),
        "c1",
        lambda: M.IssueCommentContract(text="me too", user_id="/users/alice"),
        None,
        ("text", "me too"),
    ),
    (
        "api_issue_attachment",
        ("echo", "is0"),
        "a1",
        lambda: M.IssueAttachmentContract(title="log", content_format="text/plain", content="aGk="),
        None,
        ("content_format", "text/plain"),
    ),
    (
        "api_tag_description",
        ("echo",),
        "t1",
        lambda: M.TagDescriptionCreateParameters(
            description="tagged", external_docs_url="https://docs.example"
        ),
        None,
        ("description", "tagged"),
    ),
]


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_kind_crud(env: Env, svc: str, row: Row) -> None:
    group_name, owners, own, body, update, (field, expected) = row
    c, rg = env.client, env.rg
    group = getattr(c, group_name)
    ids = (*owners, own)
    created = create(group, rg, svc, *ids, body())
    assert created.name == own
    got = group.get(rg, svc, *ids)
    assert getattr(got, field) == expected, (field, getattr(got, field))
    etag = etag_of(group.get, rg, svc, *ids)
    assert own in [x.name for x in list_all(group, rg, svc, *owners)]
    if update is not None:
        with pytest.raises(HttpResponseError) as stale:
            group.update(rg, svc, *ids, if_match='"stale"', parameters=update())
        assert stale.value.status_code == 412
        group.update(rg, svc, *ids, if_match=etag, parameters=update())
        assert etag_of(group.get, rg, svc, *ids) != etag
    with pytest.raises(HttpResponseError) as bad:  # an If-Match that no longer matches
        group.delete(rg, svc, *ids, if_match='"stale"')
    assert bad.value.status_code == 412
    group.delete(rg, svc, *ids, if_match="*")
    with pytest.raises(ResourceNotFoundError):
        group.get(rg, svc, *ids)


def test_probe_counts_answering_groups(env: Env, svc: str) -> None:
    groups = answering(probe(env.client, env.rg, svc))
    # The API-definition groups (revisions, releases) are the api kind's, built beside these.
    missing = {g for g, ok in groups.items() if not ok} - {"api_release", "api_revision"}
    assert not missing, sorted(missing)
