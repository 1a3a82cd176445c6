"""Authentication and role-based access through the real Azure SDK: apps and role assignments are
made with the server-side CLI (`portico app create`, `portico role assign`), tokens come from the
built-in identity provider via ClientSecretCredential."""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.mgmt.apimanagement import models as M

from tests.conftest import sdk_client

from .conftest import API_VERSION, Env, unique

pytestmark = pytest.mark.slow


def new_app(env: Env, name: str, role: str | None = None, scope: str | None = None) -> dict[str, Any]:
    args = ["app", "create", "--name", name, "--json"]
    if role and scope:
        args += ["--role", role, "--scope", scope]
    out = env.server.cli(*args)
    return dict(json.loads(out.stdout))


def client_for(env: Env, app: dict[str, Any]) -> Any:
    return sdk_client(env.server, env.sub, client_id=app["client_id"], secret=app["client_secret"])


def assert_forbidden(exc: HttpResponseError, action: str, scope: str) -> None:
    assert exc.status_code == 403
    assert exc.error is not None and exc.error.code == "AuthorizationFailed"
    message = str(exc.error.message)
    assert action in message, message
    assert f"over scope '{scope}'" in message, message


def test_reader_reads_but_cannot_write(env: Env, svc: str) -> None:
    admin = env.client
    admin.product.create_or_update(env.rg, svc, "p", M.ProductContract(display_name="P"))
    admin.subscription.create_or_update(
        env.rg, svc, "s", M.SubscriptionCreateParameters(scope="/products/p", display_name="S")
    )
    app = new_app(env, unique("reader"))
    assigned = env.server.cli(
        "role",
        "assign",
        "--principal",
        app["client_id"],
        "--role",
        "Reader",
        "--scope",
        env.rg_path(),
        "--json",
    )
    assert json.loads(assigned.stdout)["role"] == "Reader"
    reader = client_for(env, app)
    scope = env.svc_path(svc)

    assert reader.api_management_service.get(env.rg, svc).name == svc
    assert [p.name for p in reader.product.list_by_service(env.rg, svc)] == ["p"]
    assert svc in [s.name for s in reader.api_management_service.list_by_resource_group(env.rg)]
    # checkNameAvailability is a read (Microsoft.ApiManagement/checkNameAvailability/read) at subscription scope;
    # this reader is assigned at its resource group only.
    with pytest.raises(HttpResponseError) as check:
        reader.api_management_service.check_name_availability(
            M.ApiManagementServiceCheckNameAvailabilityParameters(name=svc)
        )
    assert_forbidden(
        check.value, "Microsoft.ApiManagement/checkNameAvailability/read", f"/subscriptions/{env.sub}"
    )
    sub_reader = client_for(env, new_app(env, unique("subreader"), "Reader", f"/subscriptions/{env.sub}"))
    check_ok = sub_reader.api_management_service.check_name_availability(
        M.ApiManagementServiceCheckNameAvailabilityParameters(name=svc)
    )
    assert check_ok.name_available is False

    with pytest.raises(HttpResponseError) as create_api:
        reader.api.begin_create_or_update(env.rg, svc, "a", M.ApiCreateOrUpdateParameter(path="a")).result()
    assert_forbidden(create_api.value, "Microsoft.ApiManagement/service/apis/write", scope)
    with pytest.raises(HttpResponseError) as patch_svc:
        reader.api_management_service.begin_update(
            env.rg, svc, M.ApiManagementServiceUpdateParameters(publisher_name="x")
        ).result()
    assert_forbidden(patch_svc.value, "Microsoft.ApiManagement/service/write", scope)
    with pytest.raises(HttpResponseError) as delete_product:
        reader.product.delete(env.rg, svc, "p", "*")
    assert_forbidden(delete_product.value, "Microsoft.ApiManagement/service/products/delete", scope)
    with pytest.raises(HttpResponseError) as secrets:
        reader.subscription.list_secrets(env.rg, svc, "s")
    assert_forbidden(secrets.value, "Microsoft.ApiManagement/service/subscriptions/listSecrets/action", scope)
    with pytest.raises(HttpResponseError) as delete_svc:
        reader.api_management_service.begin_delete(env.rg, svc).result()
    assert_forbidden(delete_svc.value, "Microsoft.ApiManagement/service/delete", scope)
    # Nothing changed.
    assert admin.api_management_service.get(env.rg, svc).publisher_name == "Contoso"
    assert [p.name for p in admin.product.list_by_service(env.rg, svc)] == ["p"]


def test_operator_manages_service_but_not_apis(env: Env, svc: str) -> None:
    scope = env.svc_path(svc)
    operator = client_for(
        env, new_app(env, unique("operator"), "API Management Service Operator Role", scope)
    )

    updated = operator.api_management_service.begin_update(
        env.rg,
        svc,
        M.ApiManagementServiceUpdateParameters(publisher_name="Operated", tags={"by": "operator"}),
    ).result()
    assert updated.publisher_name == "Operated" and updated.tags == {"by": "operator"}
    assert [g.name for g in operator.group.list_by_service(env.rg, svc)]  # */read

    with pytest.raises(HttpResponseError) as create_api:
        operator.api.begin_create_or_update(env.rg, svc, "a", M.ApiCreateOrUpdateParameter(path="a")).result()
    assert_forbidden(create_api.value, "Microsoft.ApiManagement/service/apis/write", scope)
    with pytest.raises(HttpResponseError) as create_user:
        operator.user.create_or_update(
            env.rg, svc, "u", M.UserCreateParameters(email="u@x.example", first_name="U", last_name="V")
        )
    assert_forbidden(create_user.value, "Microsoft.ApiManagement/service/users/write", scope)
    # The assignment is at this service: another service in the same group is out of reach.
    other = env.create_service()
    with pytest.raises(HttpResponseError) as other_svc:
        operator.api_management_service.get(env.rg, other)
    assert_forbidden(other_svc.value, "Microsoft.ApiManagement/service/read", env.svc_path(other))


def test_contributor_of_another_group(env: Env, svc: str) -> None:
    own_rg = unique("rg")
    env.create_group(own_rg)
    contributor = client_for(env, new_app(env, unique("contrib"), "Contributor", env.rg_path(own_rg)))

    with pytest.raises(HttpResponseError) as read_other:
        contributor.api_management_service.get(env.rg, svc)
    assert_forbidden(read_other.value, "Microsoft.ApiManagement/service/read", env.svc_path(svc))
    with pytest.raises(HttpResponseError) as write_other:
        contributor.user.create_or_update(
            env.rg, svc, "u", M.UserCreateParameters(email="u@x.example", first_name="U", last_name="V")
        )
    assert_forbidden(write_other.value, "Microsoft.ApiManagement/service/users/write", env.svc_path(svc))
    with pytest.raises(HttpResponseError) as list_other:
        list(contributor.api_management_service.list_by_resource_group(env.rg))
    assert list_other.value.status_code == 403

    # Full control inside its own group.
    mine = unique("mine")
    contributor.api_management_service.begin_create_or_update(
        own_rg,
        mine,
        M.ApiManagementServiceResource(
            location="westeurope",
            sku=M.ApiManagementServiceSkuProperties(name="Basic", capacity=1),
            publisher_email="a@contoso.example",
            publisher_name="Mine",
        ),
    ).result()
    contributor.api.begin_create_or_update(own_rg, mine, "a", M.ApiCreateOrUpdateParameter(path="a")).result()
    assert [a.name for a in contributor.api.list_by_service(own_rg, mine)] == ["a"]


def test_wrong_secret_is_a_client_authentication_error(env: Env) -> None:
    admin = env.server.admin()
    client = sdk_client(env.server, env.sub, client_id=admin["client_id"], secret="not-the-secret")
    with pytest.raises(ClientAuthenticationError) as info:
        client.api_management_service.get(env.rg, "anything")
    assert "not-the-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "AuthenticationFailed"),
        ({"Authorization": "Bearer not-a-jwt"}, "InvalidAuthenticationToken"),
        (
            {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"},
            "InvalidAuthenticationTokenIssuer",
        ),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "InvalidAuthenticationToken"),
    ],
)
def test_missing_or_garbage_token_is_401(env: Env, headers: dict[str, str], code: str) -> None:
    for path in (
        env.svc_path("whatever") + f"?api-version={API_VERSION}",
        env.rg_path() + "?api-version=2022-09-01",
    ):
        r = httpx.get(
            env.server.url + path, headers=headers, verify=ssl.create_default_context(cafile=env.server.ca)
        )
        assert r.status_code == 401, r.text
        err = r.json()["error"]
        assert err["code"] == code and err["message"]
        assert r.headers["WWW-Authenticate"].startswith("Bearer ")
