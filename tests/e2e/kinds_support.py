"""Shared by the SDK tests of the configuration kinds: a service holding what the kinds refer to,
and small helpers over the SDK's operation groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.mgmt.apimanagement import models as M

from tests.e2e.conftest import Env
from tests.support.certs import self_signed_pfx

FRAGMENT = (
    '<fragment><set-header name="x-frag" exists-action="override"><value>1</value></set-header></fragment>'
)


def etag_of(getter: Callable[..., Any], *args: Any) -> str:
    return str(getter(*args, cls=lambda _resp, _body, headers: headers)["ETag"])


def create(group: Any, *args: Any, **kw: Any) -> Any:
    if hasattr(group, "create_or_update"):
        return group.create_or_update(*args, **kw)
    return group.begin_create_or_update(*args, **kw).result()


def list_all(group: Any, *args: Any) -> list[Any]:
    name = next(n for n in dir(group) if n.startswith("list_by") or n == "list")
    return list(getattr(group, name)(*args))


@pytest.fixture(scope="module")
def svc(env: Env) -> str:
    """A service holding what the kinds of the table refer to."""
    name = env.create_service()
    c, rg = env.client, env.rg
    c.api.begin_create_or_update(
        rg,
        name,
        "echo",
        M.ApiCreateOrUpdateParameter(path="echo", display_name="Echo", service_url="https://b.example"),
    ).result()
    c.product.create_or_update(rg, name, "starter", M.ProductContract(display_name="Starter"))
    c.user.create_or_update(
        rg, name, "alice", M.UserCreateParameters(email="alice@example.com", first_name="A", last_name="L")
    )
    c.tag.create_or_update(rg, name, "t1", M.TagCreateUpdateParameters(display_name="T one"))
    c.logger.create_or_update(rg, name, "lg0", M.LoggerContract(logger_type="azureMonitor"))
    c.gateway.create_or_update(
        rg, name, "gw0", M.GatewayContract(location_data=M.ResourceLocationDataContract(name="edge"))
    )
    c.content_type.create_or_update(rg, name, "ct0", M.ContentTypeContract(name_properties_name="Page"))
    c.documentation.create_or_update(rg, name, "doc0", M.DocumentationContract(title="Doc", content="# hi"))
    c.api_issue.create_or_update(
        rg, name, "echo", "is0", M.IssueContract(title="t", description="d", user_id="/users/alice")
    )
    c.authorization_provider.create_or_update(
        rg,
        name,
        "ap0",
        M.AuthorizationProviderContract(
            display_name="Backend",
            identity_provider="oauth2",
            oauth2=M.AuthorizationProviderOAuth2Settings(
                grant_types=M.AuthorizationProviderOAuth2GrantTypes(
                    authorization_code={
                        "clientId": "c",
                        "clientSecret": "s3cr3t-ap",
                        "authorizationUrl": "https://idp.example/authorize",
                        "tokenUrl": "https://idp.example/token",
                    }
                )
            ),
        ),
        if_match=None,
    )
    c.authorization.create_or_update(
        rg,
        name,
        "ap0",
        "az0",
        M.AuthorizationContract(authorization_type="OAuth2", o_auth2_grant_type="AuthorizationCode"),
    )
    pfx, _cert = self_signed_pfx("ca.example", "pw")
    c.certificate.create_or_update(
        rg, name, "cert0", M.CertificateCreateOrUpdateParameters(data=pfx, password="pw")
    )
    return name


# group, ids before the entity's own, own id, body, update body (None: no PATCH), field checked after create
