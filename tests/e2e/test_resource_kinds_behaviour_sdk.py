"""Behaviour of the configuration kinds that a CRUD table cannot show, through the real Azure
SDK: secrets hidden and listed, validation naming the field, certificates, fragments, gateway
keys and tokens, built-ins of a new service, views, actions and what is refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.apimanagement import models as M
from cryptography.hazmat.primitives import hashes

from tests.e2e.conftest import API_VERSION, Env
from tests.e2e.kinds_support import FRAGMENT, etag_of, svc
from tests.support.certs import self_signed_pfx

pytestmark = pytest.mark.slow
__all__ = ["svc"]  # the module's service fixture


def _raw(env: Env, svc: str, path: str, method: str = "GET", **kw: Any) -> Any:
    r = env.http.request(method, f"{env.svc_path(svc)}/{path}", params={"api-version": API_VERSION}, **kw)
    return r


def test_secrets_hidden_and_listed(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    c.identity_provider.create_or_update(
        rg,
        svc,
        "aad",
        M.IdentityProviderCreateContract(client_id="cid", client_secret="aad-secret", allowed_tenants=["t"]),
    )
    c.open_id_connect_provider.create_or_update(
        rg,
        svc,
        "o2",
        M.OpenidConnectProviderContract(
            display_name="O",
            metadata_endpoint="https://i.example/m",
            client_id="c",
            client_secret="o2-secret",
        ),
    )
    c.cache.create_or_update(
        rg,
        svc,
        "westeurope",
        M.CacheContract(connection_string="r:6380,password=cache-pw", use_from_location="westeurope"),
    )
    c.logger.create_or_update(
        rg,
        svc,
        "ai",
        M.LoggerContract(logger_type="applicationInsights", credentials={"instrumentationKey": "ik-secret"}),
    )
    for path, secret in (
        ("identityProviders/aad", "aad-secret"),
        ("openidConnectProviders/o2", "o2-secret"),
        ("caches/westeurope", "cache-pw"),
        ("loggers/ai", "ik-secret"),
        ("certificates/cert0", "pw"),
        ("portalsettings/delegation", None),
        ("tenant/access", None),
        ("gateways/gw0", None),
        ("authorizationProviders/ap0", None),
    ):
        text = _raw(env, svc, path).text
        assert '"properties"' in text, text
        for name in (
            "clientSecret",
            "connectionString",
            "credentials",
            "password",
            "primaryKey",
            "validationKey",
        ):
            assert f'"{name}"' not in text, (path, text)
        if secret:
            assert secret not in text, (path, text)
    assert c.identity_provider.list_secrets(rg, svc, "aad").client_secret == "aad-secret"
    assert c.open_id_connect_provider.list_secrets(rg, svc, "o2").client_secret == "o2-secret"
    assert c.delegation_settings.list_secrets(rg, svc).validation_key
    # A PUT without the secret keeps it (GET never shows it, so a client cannot send it back).
    etag = etag_of(c.identity_provider.get, rg, svc, "aad")
    c.identity_provider.update(rg, svc, "aad", etag, M.IdentityProviderUpdateParameters(client_id="cid2"))
    assert c.identity_provider.list_secrets(rg, svc, "aad").client_secret == "aad-secret"
    with pytest.raises(HttpResponseError) as err:
        c.identity_provider.create_or_update(
            rg, svc, "github", M.IdentityProviderCreateContract(client_id="c", client_secret="s")
        )
    assert err.value.status_code == 400 and "facebook" in str(err.value.message)


def test_validation_names_the_field(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    cases: list[tuple[Callable[[], Any], str]] = [
        (
            lambda: c.logger.create_or_update(rg, svc, "x", M.LoggerContract(logger_type="splunk")),
            "properties.loggerType",
        ),
        (
            lambda: c.diagnostic.create_or_update(
                rg, svc, "d", M.DiagnosticContract(logger_id="/loggers/none")
            ),
            "properties.loggerId",
        ),
        (
            lambda: c.diagnostic.create_or_update(
                rg, svc, "d", M.DiagnosticContract(logger_id="/loggers/lg0", verbosity="loud")
            ),
            "properties.verbosity",
        ),
        (
            lambda: c.certificate.create_or_update(
                rg, svc, "c", M.CertificateCreateOrUpdateParameters(data="bm90IGEgcGZ4", password="x")
            ),
            "properties.password",
        ),
        (
            lambda: c.certificate.create_or_update(
                rg,
                svc,
                "c",
                M.CertificateCreateOrUpdateParameters(
                    key_vault=M.KeyVaultContractCreateProperties(secret_identifier="https://kv/s")
                ),
            ),
            "properties.keyVault",
        ),
        (
            lambda: c.cache.create_or_update(rg, svc, "c", M.CacheContract(use_from_location="x")),
            "properties.connectionString",
        ),
        (
            lambda: c.authorization_server.create_or_update(
                rg,
                svc,
                "a",
                M.AuthorizationServerContract(
                    display_name="A",
                    client_registration_endpoint="https://r",
                    authorization_endpoint="https://a",
                    grant_types=["magic"],
                    client_id="c",
                ),
            ),
            "properties.grantTypes",
        ),
        (
            lambda: c.gateway_hostname_configuration.create_or_update(
                rg,
                svc,
                "gw0",
                "h",
                M.GatewayHostnameConfigurationContract(
                    hostname="h.example", certificate_id="/certificates/none"
                ),
            ),
            "properties.certificateId",
        ),
        (
            lambda: c.policy.create_or_update(
                rg,
                svc,
                "policy",
                M.PolicyContract(
                    value='<policies><inbound><include-fragment fragment-id="ghost" /></inbound><backend /><outbound /><on-error /></policies>'
                ),
            ),
            "properties.value",
        ),
    ]
    # a missing certificate (one that exists: tests/gateway/test_backend_certificates.py)
    for certificate in ("/certificates/none",):
        cases.append(
            (
                lambda certificate=certificate: c.backend.create_or_update(  # type: ignore[misc]
                    rg,
                    svc,
                    "mtls",
                    M.BackendContract(
                        url="https://b.example",
                        protocol="http",
                        credentials=M.BackendCredentialsContract(certificate_ids=[certificate]),
                    ),
                ),
                "properties.credentials.certificateIds",
            )
        )
    for call, field in cases:
        with pytest.raises(HttpResponseError) as err:
            call()
        assert err.value.status_code == 400, (field, err.value.status_code, err.value.message)
        assert field in str(err.value.message), (field, err.value.message)


def test_certificate_parsed_and_private_parts_never_returned(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    pfx, cert = self_signed_pfx("portico.example", "pfx-pass")
    got = c.certificate.create_or_update(
        rg, svc, "site", M.CertificateCreateOrUpdateParameters(data=pfx, password="pfx-pass")
    )
    assert got.subject == "CN=portico.example"
    assert got.thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()
    assert abs((got.expiration_date - cert.not_valid_after_utc).total_seconds()) < 1
    text = _raw(env, svc, "certificates/site").text
    assert pfx[:40] not in text and "pfx-pass" not in text


def test_fragments_references_and_in_use(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    c.policy_fragment.begin_create_or_update(
        rg, svc, "common", M.PolicyFragmentContract(value=FRAGMENT)
    ).result()
    outer = '<fragment><include-fragment fragment-id="common" /></fragment>'
    c.policy_fragment.begin_create_or_update(rg, svc, "outer", M.PolicyFragmentContract(value=outer)).result()
    refs = c.policy_fragment.list_references(rg, svc, "common")
    assert [r.id for r in refs.value] == ["policyFragments/outer"]
    with pytest.raises(HttpResponseError) as err:
        c.policy_fragment.delete(rg, svc, "common", if_match="*")
    assert err.value.status_code == 409 and "policyFragments/outer" in str(err.value.message)
    with pytest.raises(HttpResponseError) as err:
        c.policy_fragment.begin_create_or_update(
            rg,
            svc,
            "broken",
            M.PolicyFragmentContract(value='<fragment><include-fragment fragment-id="nope" /></fragment>'),
        ).result()
    assert err.value.status_code == 400 and "'nope'" in str(err.value.message)
    c.policy_fragment.delete(rg, svc, "outer", if_match="*")
    c.policy_fragment.delete(rg, svc, "common", if_match="*")
    # the logger a diagnostic uses cannot be deleted either
    c.diagnostic.create_or_update(
        rg, svc, "applicationinsights", M.DiagnosticContract(logger_id="/loggers/lg0")
    )
    with pytest.raises(HttpResponseError) as err:
        c.logger.delete(rg, svc, "lg0", if_match="*")
    assert err.value.status_code == 409
    c.diagnostic.delete(rg, svc, "applicationinsights", if_match="*")


def test_gateway_keys_and_token(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    keys = c.gateway.list_keys(rg, svc, "gw0")
    assert keys.primary and keys.secondary and keys.primary != keys.secondary
    c.gateway.regenerate_key(rg, svc, "gw0", M.GatewayKeyRegenerationRequestContract(key_type="primary"))
    again = c.gateway.list_keys(rg, svc, "gw0")
    assert again.primary != keys.primary and again.secondary == keys.secondary
    expiry = datetime.now(UTC) + timedelta(days=1)
    token = c.gateway.generate_token(
        rg, svc, "gw0", M.GatewayTokenRequestContract(key_type="secondary", expiry=expiry)
    )
    assert token.value.startswith("GatewayKey gw0&" + expiry.strftime("%Y%m%d%H%M") + "&")
    with pytest.raises(HttpResponseError) as err:
        c.gateway.generate_token(
            rg,
            svc,
            "gw0",
            M.GatewayTokenRequestContract(key_type="secondary", expiry=expiry + timedelta(days=60)),
        )
    assert err.value.status_code == 400 and "expiry" in str(err.value.message)
    c.gateway_api.create_or_update(
        rg, svc, "gw0", "echo", M.AssociationContract(provisioning_state="created")
    )
    assert [a.name for a in c.gateway_api.list_by_service(rg, svc, "gw0")] == ["echo"]


def test_builtins_of_a_new_service(env: Env) -> None:
    svc = env.create_service()
    c, rg = env.client, env.rg
    templates = {t.name for t in c.email_template.list_by_service(rg, svc)}
    assert len(templates) == 14 and "applicationApprovedNotificationMessage" in templates
    assert {n.name for n in c.notification.list_by_service(rg, svc)} >= {
        "BCC",
        "RequestPublisherNotificationMessage",
    }
    assert c.sign_up_settings.get(rg, svc).enabled is True
    assert c.sign_in_settings.get(rg, svc).enabled is False
    assert {a.name for a in c.tenant_access.list_by_service(rg, svc)} == {"access", "gitAccess"}
    secrets = c.tenant_access.list_secrets(rg, svc, "access")
    c.tenant_access.regenerate_primary_key(rg, svc, "access")
    assert c.tenant_access.list_secrets(rg, svc, "access").primary_key != secrets.primary_key
    assert c.tenant_settings.get(rg, svc, "public").settings
    assert [d.name for d in c.policy_description.list_by_service(rg, svc).value][:1] == ["base"]
    assert [r.name for r in c.region.list_by_service(rg, svc)] == ["West Europe"]
    assert list(c.private_endpoint_connection.list_by_service(rg, svc)) == []
    # An edited template reverts to Azure's default when deleted.
    etag = etag_of(c.email_template.get, rg, svc, "accountClosedDeveloper")
    c.email_template.update(
        rg, svc, "accountClosedDeveloper", etag, M.EmailTemplateUpdateParameters(subject="Bye")
    )
    assert c.email_template.get(rg, svc, "accountClosedDeveloper").is_default is False
    c.email_template.delete(rg, svc, "accountClosedDeveloper", if_match="*")
    reverted = c.email_template.get(rg, svc, "accountClosedDeveloper")
    assert reverted.is_default is True and reverted.subject != "Bye"
    # Recipients of a notification.
    c.user.create_or_update(
        rg, svc, "bob", M.UserCreateParameters(email="bob@example.com", first_name="B", last_name="B")
    )
    c.notification_recipient_user.create_or_update(rg, svc, "BCC", "bob")
    c.notification_recipient_email.create_or_update(rg, svc, "BCC", "ops@example.com")
    users = c.notification_recipient_user.list_by_notification(rg, svc, "BCC").value
    assert [u.user_id.rsplit("/", 1)[-1] for u in users] == ["bob"]
    emails = c.notification_recipient_email.list_by_notification(rg, svc, "BCC").value
    assert [e.email for e in emails] == ["ops@example.com"]
    c.notification_recipient_email.delete(rg, svc, "BCC", "ops@example.com")
    assert c.notification_recipient_email.list_by_notification(rg, svc, "BCC").value == []


def test_views_over_entities(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    c.subscription.create_or_update(
        rg,
        svc,
        "s1",
        M.SubscriptionCreateParameters(scope="/products/starter", display_name="S1", owner_id="/users/alice"),
    )
    assert [s.name for s in c.user_subscription.list(rg, svc, "alice")] == ["s1"]
    assert c.user_subscription.get(rg, svc, "alice", "s1").name == "s1"
    assert [s.name for s in c.product_subscriptions.list(rg, svc, "starter")] == ["s1"]
    assert "developers" in [g.name for g in c.user_group.list(rg, svc, "alice")]
    assert [i.provider for i in c.user_identities.list(rg, svc, "alice")] == ["Basic"]
    c.tag.assign_to_api(rg, svc, "echo", "t1")
    by_tags = list(c.api.list_by_tags(rg, svc))
    assert any(x.tag is not None and x.tag.name == "T one" for x in by_tags)
    assert [x.tag.id.rsplit("/", 1)[-1] for x in c.tag_resource.list_by_service(rg, svc)] == ["t1"]
    assert [link.name for link in c.tag_api_link.list_by_product(rg, svc, "t1")] == ["echo"]
    c.product_api_link.create_or_update(
        rg, svc, "starter", "echo", M.ProductApiLinkContract(api_id=f"{env.svc_path(svc)}/apis/echo")
    )
    assert c.product_api.check_entity_exists(rg, svc, "starter", "echo")
    # a link has any id (Bicep names them '<product>-<api>'); one link per target, kept by its id
    api_ref = f"{env.svc_path(svc)}/apis/echo"
    c.product_api_link.create_or_update(
        rg, svc, "starter", "starter-echo", M.ProductApiLinkContract(api_id=api_ref)
    )
    assert [x.name for x in c.product_api_link.list_by_product(rg, svc, "starter")] == ["starter-echo"]
    got = c.product_api_link.get(rg, svc, "starter", "STARTER-echo")
    assert got.name == "starter-echo" and got.api_id.lower().endswith("/apis/echo")
    c.tag_api_link.create_or_update(rg, svc, "t1", "t1-on-echo", M.TagApiLinkContract(api_id=api_ref))
    assert [x.name for x in c.tag_api_link.list_by_product(rg, svc, "t1")] == ["t1-on-echo"]
    c.product_api_link.delete(rg, svc, "starter", "starter-echo")
    assert "echo" not in [a.name for a in c.product_api.list_by_product(rg, svc, "starter")]
    with pytest.raises(HttpResponseError) as err:
        c.product_api_link.get(rg, svc, "starter", "starter-echo")
    assert err.value.status_code == 404
    assert [i.name for i in c.issue.list_by_service(rg, svc)] == ["is0"]
    assert len(list(c.all_policies.list_by_service(rg, svc))) >= 0
    c.subscription.delete(rg, svc, "s1", if_match="*")


def test_actions_and_unsupported_requests(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    c.backend.create_or_update(rg, svc, "be", M.BackendContract(url="https://b.example", protocol="http"))
    c.backend.reconnect(rg, svc, "be")  # the SDK accepts only 202
    c.notification_recipient_user.create_or_update(rg, svc, "BCC", "alice")
    assert c.notification_recipient_user.check_entity_exists(rg, svc, "BCC", "alice")
    assert [u.rsplit("/", 1)[-1] for u in c.notification.get(rg, svc, "BCC").recipients.users] == ["alice"]
    portal = c.portal_config.get(rg, svc, "default")
    assert portal.csp.mode == "disabled" and portal.delegation.validation_key is None
    with pytest.raises(HttpResponseError) as err:
        c.portal_revision.begin_create_or_update(
            rg, svc, "r1", M.PortalRevisionContract(description="x")
        ).result()
    assert err.value.status_code == 400 and "developer portal" in str(err.value.message)
    assert "Microsoft.ApiManagement/service/loggers/write" in {
        o.name for o in c.api_management_operations.list()
    }
    assert list(c.api_gateway.list_by_resource_group(rg)) == []
    with pytest.raises(HttpResponseError) as err:
        c.api_gateway.begin_create_or_update(
            rg,
            "gw",
            M.ApiManagementGatewayResource(
                location="westeurope", sku=M.ApiManagementGatewaySkuProperties(name="Standard")
            ),
        ).result()
    assert err.value.status_code == 400 and "not supported" in str(err.value.message)
    with pytest.raises(HttpResponseError) as err:
        c.tenant_configuration.begin_deploy(
            rg, svc, "configuration", M.DeployConfigurationParameters(branch="master")
        ).result()
    assert err.value.status_code == 400 and "git" in str(err.value.message)
    assert c.api_management_service.get_sso_token(rg, svc).redirect_uri.startswith("https://")
    c.user.create_or_update(
        rg, svc, "carol", M.UserCreateParameters(email="c@example.com", first_name="C", last_name="C")
    )
    c.notification_recipient_user.create_or_update(rg, svc, "BCC", "carol")
    c.user.begin_delete(rg, svc, "carol", if_match="*").result()
    users = c.notification.get(rg, svc, "BCC").recipients.users
    assert [u.rsplit("/", 1)[-1] for u in users] == ["alice"]


def test_service_and_user_actions(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    assert c.user.generate_sso_url(rg, svc, "alice").value.startswith("https://")
    expiry = datetime.now(UTC) + timedelta(hours=2)
    token = c.user.get_shared_access_token(
        rg, svc, "alice", M.UserTokenParameters(key_type="primary", expiry=expiry)
    )
    assert token.value.startswith("uid=alice&ex=")
    with pytest.raises(HttpResponseError) as err:
        c.user_confirmation_password.send(rg, svc, "alice")
    assert err.value.status_code == 400 and "e-mail" in str(err.value.message)
    assert c.api_management_service.get_domain_ownership_identifier().domain_ownership_identifier
    assert c.api_management_service.begin_migrate_to_stv2(rg, svc).result().name == svc
    assert c.api_management_service.begin_apply_network_configuration_updates(rg, svc).result().name == svc
    link = c.authorization_login_links.post(
        rg,
        svc,
        "ap0",
        "az0",
        M.AuthorizationLoginRequestContract(post_login_redirect_url="https://app.example"),
    )
    assert link.login_link.startswith("https://")
    c.product_wiki.create_or_update(
        rg, svc, "starter", M.WikiContract(documents=[M.WikiDocumentationContract(documentation_id="doc0")])
    )
    assert c.product_wiki.get(rg, svc, "starter").documents[0].documentation_id == "doc0"
    assert [w.name for w in c.product_wikis.list(rg, svc, "starter")] == ["default"]
    port = int(env.server.url.rsplit(":", 1)[1])
    up = c.begin_perform_connectivity_check_async(
        rg,
        svc,
        M.ConnectivityCheckRequest(
            source=M.ConnectivityCheckRequestSource(region="westeurope"),
            destination=M.ConnectivityCheckRequestDestination(address="127.0.0.1", port=port),
        ),
    ).result()
    assert up.connection_status == "Connected" and up.probes_failed == 0
    down = c.begin_perform_connectivity_check_async(
        rg,
        svc,
        M.ConnectivityCheckRequest(
            source=M.ConnectivityCheckRequestSource(region="westeurope"),
            destination=M.ConnectivityCheckRequestDestination(address="127.0.0.1", port=1),
        ),
    ).result()
    assert down.connection_status == "Disconnected" and down.probes_failed == 3


def test_references_between_kinds(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    ct = c.content_type.create_or_update(
        rg, svc, "blog", M.ContentTypeContract(name_properties_name="Blog", schema=schema)
    )
    assert ct.schema == schema and ct.id_properties_id == "/contentTypes/blog"
    created = c.tenant_access.create(
        rg,
        svc,
        "gitAccess",
        "*",
        M.AccessInformationCreateParameters(enabled=True, primary_key="p1", secondary_key="s2"),
    )
    assert created.enabled is True
    keys = c.tenant_access.list_secrets(rg, svc, "gitAccess")
    assert (keys.primary_key, keys.secondary_key) == ("p1", "s2")
    pfx, _ = self_signed_pfx("h.example", None)
    c.certificate.create_or_update(rg, svc, "hc-cert", M.CertificateCreateOrUpdateParameters(data=pfx))
    c.gateway_hostname_configuration.create_or_update(
        rg,
        svc,
        "gw0",
        "hc",
        M.GatewayHostnameConfigurationContract(hostname="h.example", certificate_id="/certificates/hc-cert"),
    )
    with pytest.raises(HttpResponseError) as err:
        c.certificate.delete(rg, svc, "hc-cert", if_match="*")
    assert err.value.status_code == 409 and "hostnameConfigurations/hc" in str(err.value.message)
    c.gateway_hostname_configuration.delete(rg, svc, "gw0", "hc", if_match="*")
    c.certificate.delete(rg, svc, "hc-cert", if_match="*")
    c.tag.create_or_update(rg, svc, "t2", M.TagCreateUpdateParameters(display_name="T two"))
    c.api_tag_description.create_or_update(
        rg, svc, "echo", "t2", M.TagDescriptionCreateParameters(description="d")
    )
    assert c.api_tag_description.get(rg, svc, "echo", "t2").display_name == "T two"
    c.tag.delete(rg, svc, "t2", if_match="*")
    with pytest.raises(ResourceNotFoundError):
        c.api_tag_description.get(rg, svc, "echo", "t2")
