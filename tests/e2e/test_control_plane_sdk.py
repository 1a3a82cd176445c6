"""The control plane driven by the real Azure SDK for Python over HTTPS, on SQLite and PostgreSQL.

Every test runs twice (the `portico` fixture is parametrized by database backend) against servers
shared by the session; each test works in its own freshly created service.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.apimanagement import models as M

from .conftest import API_VERSION, Env, unique

pytestmark = pytest.mark.slow

POLICY = '<policies><inbound><base /><set-header name="x-{}" exists-action="override"><value>1</value></set-header></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>'
GLOBAL_POLICY = (
    "<policies><inbound /><backend><forward-request /></backend><outbound /><on-error /></policies>"
)


def etag_of(getter: Any, *args: Any) -> str:
    """The ETag header of a GET made through the SDK."""
    return str(getter(*args, cls=lambda _resp, _body, headers: headers)["ETag"])


def error_code(exc: HttpResponseError) -> str:
    assert exc.error is not None, exc
    return str(exc.error.code)


def make_api(env: Env, svc: str, api_id: str = "echo", path: str = "echo") -> Any:
    return env.client.api.begin_create_or_update(
        env.rg,
        svc,
        api_id,
        M.ApiCreateOrUpdateParameter(
            path=path,
            display_name=f"API {api_id}",
            service_url="https://backend.example/api",
            protocols=["https"],
        ),
    ).result()


def make_operation(
    env: Env, svc: str, api_id: str, op_id: str, method: str = "GET", template: str = "/items/{id}"
) -> Any:
    params = [M.ParameterContract(name="id", type="string", required=True)] if "{id}" in template else []
    return env.client.api_operation.create_or_update(
        env.rg,
        svc,
        api_id,
        op_id,
        M.OperationContract(
            display_name=f"Op {op_id}", method=method, url_template=template, template_parameters=params
        ),
    )


# --- resource groups and services -----------------------------------------------------------------


def test_resource_group_put_get_list(env: Env) -> None:
    name = unique("rg")
    r = env.create_group(name)
    assert r.status_code == 201
    body = r.json()
    assert body["id"] == env.rg_path(name) and body["location"] == "westeurope"
    assert env.create_group(name).status_code == 200  # idempotent PUT
    got = env.http.get(f"{env.rg_path(name.upper())}?api-version=2022-09-01")  # names are case-insensitive
    assert got.status_code == 200 and got.json()["name"] == name
    listed = env.http.get(f"/subscriptions/{env.sub}/resourcegroups?api-version=2022-09-01").json()["value"]
    assert name in [g["name"] for g in listed]
    missing = env.http.get(f"{env.rg_path(unique('nope'))}?api-version=2022-09-01")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceGroupNotFound"


def test_service_lifecycle(env: Env) -> None:
    c = env.client
    name = unique("svc")
    svc = c.api_management_service.begin_create_or_update(
        env.rg,
        name,
        M.ApiManagementServiceResource(
            location="West Europe",
            sku=M.ApiManagementServiceSkuProperties(name="Standard", capacity=2),
            publisher_email="ops@contoso.example",
            publisher_name="Contoso",
            tags={"env": "test"},
            notification_sender_email="apim@contoso.example",
        ),
    ).result()
    assert svc.id == env.svc_path(name)
    assert svc.type == "Microsoft.ApiManagement/service"
    assert svc.provisioning_state == "Succeeded"
    assert svc.sku.name == "Standard" and svc.sku.capacity == 2
    assert svc.gateway_url == f"https://{name.lower()}.gateway.localhost"
    assert svc.etag

    got = c.api_management_service.get(env.rg, name)
    assert got.publisher_name == "Contoso" and got.tags == {"env": "test"}
    assert got.notification_sender_email == "apim@contoso.example"

    updated = c.api_management_service.begin_update(
        env.rg, name, M.ApiManagementServiceUpdateParameters(publisher_name="Fabrikam", tags={"env": "prod"})
    ).result()
    assert updated.publisher_name == "Fabrikam"
    assert updated.publisher_email == "ops@contoso.example"  # PATCH merges
    assert updated.tags == {"env": "prod"}
    assert updated.etag != svc.etag
    scaled = c.api_management_service.begin_update(
        env.rg,
        name,
        M.ApiManagementServiceUpdateParameters(
            sku=M.ApiManagementServiceSkuProperties(name="Premium", capacity=3)
        ),
    ).result()
    assert (scaled.sku.name, scaled.sku.capacity) == ("Premium", 3)

    assert name in [s.name for s in c.api_management_service.list_by_resource_group(env.rg)]
    assert name in [s.name for s in c.api_management_service.list()]

    check = c.api_management_service.check_name_availability(
        M.ApiManagementServiceCheckNameAvailabilityParameters(name=name)
    )
    assert check.name_available is False and check.reason == "AlreadyExists"
    free = c.api_management_service.check_name_availability(
        M.ApiManagementServiceCheckNameAvailabilityParameters(name=unique("free"))
    )
    assert free.name_available is True and free.reason == "Valid"
    bad = c.api_management_service.check_name_availability(
        M.ApiManagementServiceCheckNameAvailabilityParameters(name="1-bad-")
    )
    assert bad.name_available is False and bad.reason == "Invalid"

    # Service names are unique per instance: the same name in another group is refused.
    other_rg = unique("rg")
    env.create_group(other_rg)
    with pytest.raises(HttpResponseError) as info:
        env.create_service(name, rg=other_rg)
    assert info.value.status_code == 409

    c.api_management_service.begin_delete(env.rg, name).result()
    with pytest.raises(ResourceNotFoundError):
        c.api_management_service.get(env.rg, name)
    # Soft-deleted, as on Azure: the name stays taken until the deleted service is purged.
    assert name in [d.name for d in c.deleted_services.list_by_subscription()]
    deleted = c.deleted_services.get_by_name(name, "West Europe")
    assert deleted.service_id.endswith(f"/service/{name}") and deleted.scheduled_purge_date
    assert not c.api_management_service.check_name_availability(
        M.ApiManagementServiceCheckNameAvailabilityParameters(name=name)
    ).name_available
    c.deleted_services.begin_purge(name, "westeurope").result()
    assert c.api_management_service.check_name_availability(
        M.ApiManagementServiceCheckNameAvailabilityParameters(name=name)
    ).name_available
    assert name not in [s.name for s in c.api_management_service.list_by_resource_group(env.rg)]


def test_soft_deleted_service_comes_back_with_restore(env: Env) -> None:
    c = env.client
    name = env.create_service()
    c.named_value.begin_create_or_update(
        env.rg, name, "color", M.NamedValueCreateContract(display_name="color", value="blue")
    ).result()
    c.api_management_service.begin_delete(env.rg, name).result()
    with pytest.raises(HttpResponseError) as info:
        env.create_service(name)
    assert info.value.status_code == 409 and "ServiceAlreadyExistsInSoftDeletedState" in str(info.value)
    restored = c.api_management_service.begin_create_or_update(
        env.rg,
        name,
        M.ApiManagementServiceResource(
            location="West Europe",
            sku=M.ApiManagementServiceSkuProperties(name="Developer", capacity=1),
            publisher_email="ignored@contoso.example",
            publisher_name="Ignored",
            restore=True,
        ),
    ).result()
    assert restored.name == name and restored.publisher_email == "ops@contoso.example"
    assert c.named_value.get(env.rg, name, "color").display_name == "color"
    assert name not in [d.name for d in c.deleted_services.list_by_subscription()]


def test_service_validation(env: Env) -> None:
    c = env.client

    def create(**kw: Any) -> HttpResponseError:
        props: dict[str, Any] = {
            "location": "westeurope",
            "sku": M.ApiManagementServiceSkuProperties(name="Developer", capacity=1),
            "publisher_email": "a@contoso.example",
            "publisher_name": "Contoso",
        }
        props.update(kw)
        with pytest.raises(HttpResponseError) as info:
            c.api_management_service.begin_create_or_update(
                env.rg, unique("bad"), M.ApiManagementServiceResource(**props)
            ).result()
        return info.value

    err = create(sku=M.ApiManagementServiceSkuProperties(name="Consumption", capacity=1))
    assert err.status_code == 400 and "sku.capacity" in str(err) and "0" in str(err)
    err = create(sku=M.ApiManagementServiceSkuProperties(name="Developer", capacity=2))
    assert err.status_code == 400 and "sku.capacity" in str(err)
    err = create(sku=M.ApiManagementServiceSkuProperties(name="Gold", capacity=1))
    assert err.status_code == 400 and "sku.name" in str(err)
    err = create(publisher_email=None)
    assert err.status_code == 400 and "publisherEmail" in str(err)
    err = create(publisher_email="not-an-email")
    assert err.status_code == 400 and "publisherEmail" in str(err)
    err = create(publisher_name="x" * 101)
    assert err.status_code == 400 and "publisherName" in str(err)

    consumption = unique("cons")
    c.api_management_service.begin_create_or_update(
        env.rg,
        consumption,
        M.ApiManagementServiceResource(
            location="westeurope",
            sku=M.ApiManagementServiceSkuProperties(name="Consumption", capacity=0),
            publisher_email="a@contoso.example",
            publisher_name="C",
        ),
    ).result()
    assert c.api_management_service.get(env.rg, consumption).sku.capacity == 0

    with pytest.raises(ResourceNotFoundError) as nf:
        env.create_service(rg=unique("nogroup"))
    assert error_code(nf.value) == "ResourceGroupNotFound"
    with pytest.raises(HttpResponseError) as bad_name:
        env.create_service("-bad-name")
    assert bad_name.value.status_code == 400


# --- APIs, operations, policies ------------------------------------------------------------------


def test_apis_operations_and_policies(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    api = make_api(env, svc)
    assert api.id == f"{env.svc_path(svc)}/apis/echo"
    assert api.path == "echo" and api.display_name == "API echo" and api.subscription_required is True
    op = make_operation(env, svc, "echo", "get-item")
    assert op.method == "GET" and op.url_template == "/items/{id}"
    assert [p.name for p in op.template_parameters] == ["id"]
    make_operation(env, svc, "echo", "create-item", method="post", template="/items")
    ops = {o.name: o for o in c.api_operation.list_by_api(rg, svc, "echo")}
    assert set(ops) == {"get-item", "create-item"} and ops["create-item"].method == "POST"
    assert c.api_operation.get(rg, svc, "echo", "get-item").template_parameters[0].required is True

    # Policies at all four levels.
    c.policy.create_or_update(rg, svc, "policy", M.PolicyContract(value=GLOBAL_POLICY, format="xml"))
    c.api_policy.create_or_update(rg, svc, "echo", "policy", M.PolicyContract(value=POLICY.format("api")))
    c.api_operation_policy.create_or_update(
        rg, svc, "echo", "get-item", "policy", M.PolicyContract(value=POLICY.format("op"))
    )
    c.product.create_or_update(rg, svc, "starter", M.ProductContract(display_name="Starter"))
    c.product_policy.create_or_update(
        rg, svc, "starter", "policy", M.PolicyContract(value=POLICY.format("product"))
    )
    assert "forward-request" in c.policy.get(rg, svc, "policy").value
    assert "x-api" in c.api_policy.get(rg, svc, "echo", "policy").value
    assert "x-op" in c.api_operation_policy.get(rg, svc, "echo", "get-item", "policy").value
    assert "x-product" in c.product_policy.get(rg, svc, "starter", "policy").value
    assert [p.name for p in c.api_policy.list_by_api(rg, svc, "echo").value] == ["policy"]

    with pytest.raises(HttpResponseError) as bad_xml:
        c.api_policy.create_or_update(
            rg, svc, "echo", "policy", M.PolicyContract(value="<policies><inbound>")
        )
    assert bad_xml.value.status_code == 400 and "well-formed" in str(bad_xml.value)
    with pytest.raises(HttpResponseError) as bad_root:
        c.api_policy.create_or_update(rg, svc, "echo", "policy", M.PolicyContract(value="<nope/>"))
    assert bad_root.value.status_code == 400

    # Required fields are validated by the server (the SDK validates nothing).
    with pytest.raises(HttpResponseError) as no_path:
        c.api.begin_create_or_update(
            rg, svc, "nopath", M.ApiCreateOrUpdateParameter(display_name="x")
        ).result()
    assert no_path.value.status_code == 400 and "path" in str(no_path.value)
    with pytest.raises(HttpResponseError) as no_method:
        c.api_operation.create_or_update(
            rg, svc, "echo", "bad", M.OperationContract(display_name="x", url_template="/x")
        )
    assert no_method.value.status_code == 400 and "method" in str(no_method.value)
    with pytest.raises(HttpResponseError) as same_path:
        make_api(env, svc, "echo2", "echo")
    assert same_path.value.status_code == 409
    with pytest.raises(ResourceNotFoundError):
        make_operation(env, svc, "no-such-api", "op")

    # PATCH of an API (If-Match *) merges.
    patched = c.api.update(rg, svc, "echo", "*", M.ApiUpdateContract(description="patched"))
    assert patched.description == "patched" and patched.path == "echo"

    # Names ignore case (both databases): another case is the same API and the same operation.
    assert c.api.get(rg, svc, "ECHO").name == "echo"
    assert c.api_operation.get(rg, svc, "Echo", "GET-ITEM").id.endswith("/apis/echo/operations/get-item")
    renamed = c.api.begin_create_or_update(
        rg, svc, "eCHo", M.ApiCreateOrUpdateParameter(path="echo", display_name="Echo again")
    ).result()
    assert renamed.name == "echo" and renamed.display_name == "Echo again"
    assert [a.name for a in c.api.list_by_service(rg, svc)].count("echo") == 1


def test_delete_api_cascades(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    make_api(env, svc, "orders", "orders")
    make_operation(env, svc, "orders", "get-order")
    c.api_policy.create_or_update(rg, svc, "orders", "policy", M.PolicyContract(value=POLICY.format("a")))
    c.api_operation_policy.create_or_update(
        rg, svc, "orders", "get-order", "policy", M.PolicyContract(value=POLICY.format("o"))
    )
    c.tag.create_or_update(rg, svc, "t1", M.TagCreateUpdateParameters(display_name="T1"))
    c.tag.assign_to_api(rg, svc, "orders", "t1")
    c.tag.assign_to_operation(rg, svc, "orders", "get-order", "t1")
    c.product.create_or_update(rg, svc, "p", M.ProductContract(display_name="P"))
    c.product_api.create_or_update(rg, svc, "p", "orders")
    sub = c.subscription.create_or_update(
        rg, svc, "api-sub", M.SubscriptionCreateParameters(scope="/apis/orders", display_name="S")
    )
    assert sub.scope.endswith("/apis/orders")

    c.api.begin_delete(rg, svc, "orders", "*").result()

    with pytest.raises(ResourceNotFoundError):
        c.api.get(rg, svc, "orders")
    assert list(c.product_api.list_by_product(rg, svc, "p")) == []
    # Re-created with the same id, nothing of the old API comes back.
    make_api(env, svc, "orders", "orders")
    assert list(c.api_operation.list_by_api(rg, svc, "orders")) == []
    assert list(c.tag.list_by_api(rg, svc, "orders")) == []
    with pytest.raises(ResourceNotFoundError):
        c.api_policy.get(rg, svc, "orders", "policy")
    assert [t.name for t in c.tag.list_by_service(rg, svc)] == ["t1"]  # the tag itself stays


# --- products, groups, users ----------------------------------------------------------------------


def test_products_groups_users(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    builtin = {g.name: g for g in c.group.list_by_service(rg, svc)}
    assert set(builtin) == {"administrators", "developers", "guests"}
    assert all(g.built_in and g.type_properties_type == "system" for g in builtin.values())
    for gid in builtin:
        with pytest.raises(HttpResponseError) as info:
            c.group.delete(rg, svc, gid, "*")
        assert info.value.status_code == 400
    assert len(list(c.group.list_by_service(rg, svc))) == 3

    product = c.product.create_or_update(
        rg,
        svc,
        "gold",
        M.ProductContract(
            display_name="Gold", description="Gold tier", state="published", subscriptions_limit=5
        ),
    )
    assert product.subscription_required is True and product.state == "published"
    make_api(env, svc)
    linked = c.product_api.create_or_update(rg, svc, "gold", "echo")
    assert linked.path == "echo"
    assert c.product_api.check_entity_exists(rg, svc, "gold", "echo") is True
    assert [a.name for a in c.product_api.list_by_product(rg, svc, "gold")] == ["echo"]
    with pytest.raises(ResourceNotFoundError):
        c.product_api.create_or_update(rg, svc, "gold", "no-such-api")

    group = c.group.create_or_update(
        rg, svc, "partners", M.GroupCreateParameters(display_name="Partners", description="External partners")
    )
    assert group.built_in is False and group.type_properties_type == "custom"
    c.product_group.create_or_update(rg, svc, "gold", "partners")
    c.product_group.create_or_update(rg, svc, "gold", "developers")
    assert {g.name for g in c.product_group.list_by_product(rg, svc, "gold")} == {"partners", "developers"}
    assert c.product_group.check_entity_exists(rg, svc, "gold", "partners") is True

    user = c.user.create_or_update(
        rg,
        svc,
        "alice",
        M.UserCreateParameters(
            email="alice@contoso.example", first_name="Alice", last_name="Smith", password="S3cret!pass"
        ),
    )
    assert (
        user.email == "alice@contoso.example"
        and user.state == "active"
        and user.registration_date is not None
    )
    raw = env.http.get(f"{env.svc_path(svc)}/users/alice?api-version={API_VERSION}").json()
    assert "password" not in raw["properties"] and "passwordHash" not in raw["properties"]
    with pytest.raises(HttpResponseError) as no_email:
        c.user.create_or_update(rg, svc, "bob", M.UserCreateParameters(first_name="Bob", last_name="B"))
    assert no_email.value.status_code == 400 and "email" in str(no_email.value)

    member = c.group_user.create(rg, svc, "partners", "alice")
    assert member.email == "alice@contoso.example"
    assert c.group_user.check_entity_exists(rg, svc, "partners", "alice") is True
    assert c.group_user.check_entity_exists(rg, svc, "partners", "nobody") is False
    assert [u.name for u in c.group_user.list(rg, svc, "partners")] == ["alice"]
    c.group_user.delete(rg, svc, "partners", "alice")
    assert list(c.group_user.list(rg, svc, "partners")) == []

    # Deleting a user removes its memberships; deleting a group removes its product links.
    c.group_user.create(rg, svc, "developers", "alice")
    c.user.begin_delete(rg, svc, "alice", "*").result()
    assert list(c.group_user.list(rg, svc, "developers")) == []
    c.group.delete(rg, svc, "partners", "*")
    assert {g.name for g in c.product_group.list_by_product(rg, svc, "gold")} == {"developers"}

    c.product_api.delete(rg, svc, "gold", "echo")
    with pytest.raises(ResourceNotFoundError):
        c.product_api.check_entity_exists(rg, svc, "gold", "echo")
    c.product.delete(rg, svc, "gold", "*")
    with pytest.raises(ResourceNotFoundError):
        c.product.get(rg, svc, "gold")


# --- subscriptions and references ----------------------------------------------------------------


def test_subscriptions_keys_and_references(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    c.product.create_or_update(rg, svc, "starter", M.ProductContract(display_name="Starter"))
    owner = c.user.create_or_update(
        rg, svc, "carol", M.UserCreateParameters(email="carol@contoso.example", first_name="C", last_name="D")
    )

    created = c.subscription.create_or_update(
        rg,
        svc,
        "sub1",
        M.SubscriptionCreateParameters(
            scope="/products/starter", display_name="Carol starter", owner_id=owner.id, state="active"
        ),
    )
    base = env.svc_path(svc)
    assert created.scope == f"{base}/products/starter"
    assert created.owner_id == f"{base}/users/carol"
    assert created.state == "active" and created.primary_key is None and created.secondary_key is None

    got = c.subscription.get(rg, svc, "sub1")
    assert got.primary_key is None and got.secondary_key is None  # keys hidden on GET
    raw = env.http.get(f"{base}/subscriptions/sub1?api-version={API_VERSION}").json()["properties"]
    assert "primaryKey" not in raw and "secondaryKey" not in raw
    keys = c.subscription.list_secrets(rg, svc, "sub1")
    assert keys.primary_key and keys.secondary_key and keys.primary_key != keys.secondary_key

    c.subscription.regenerate_primary_key(rg, svc, "sub1")
    after = c.subscription.list_secrets(rg, svc, "sub1")
    assert after.primary_key != keys.primary_key and after.secondary_key == keys.secondary_key
    c.subscription.regenerate_secondary_key(rg, svc, "sub1")
    last = c.subscription.list_secrets(rg, svc, "sub1")
    assert last.secondary_key != keys.secondary_key and last.primary_key == after.primary_key

    # Given keys are kept; relative and full-id references are both accepted and stored alike.
    given = c.subscription.create_or_update(
        rg,
        svc,
        "sub2",
        M.SubscriptionCreateParameters(
            scope=f"{base}/products/starter",
            display_name="Given",
            owner_id="/users/carol",
            primary_key="p" * 32,
            secondary_key="s" * 32,
        ),
    )
    assert given.scope == f"{base}/products/starter" and given.owner_id == f"{base}/users/carol"
    assert c.subscription.list_secrets(rg, svc, "sub2").primary_key == "p" * 32
    all_apis = c.subscription.create_or_update(
        rg, svc, "sub3", M.SubscriptionCreateParameters(scope="/apis", display_name="All")
    )
    assert all_apis.scope == f"{base}/apis" and all_apis.state == "submitted"
    assert {s.name for s in c.subscription.list(rg, svc)} == {"sub1", "sub2", "sub3"}

    updated = c.subscription.update(rg, svc, "sub1", "*", M.SubscriptionUpdateParameters(state="suspended"))
    assert updated.state == "suspended" and updated.scope == f"{base}/products/starter"
    assert c.subscription.list_secrets(rg, svc, "sub1").primary_key == last.primary_key  # PATCH keeps keys

    # References to missing entities are refused.
    for scope, owner_id in (
        ("/products/missing", None),
        ("/apis/missing", None),
        ("/products/starter", "/users/nobody"),
        ("/bogus", None),
    ):
        with pytest.raises(HttpResponseError) as info:
            c.subscription.create_or_update(
                rg,
                svc,
                "bad",
                M.SubscriptionCreateParameters(scope=scope, display_name="Bad", owner_id=owner_id),
            )
        assert info.value.status_code == 400, scope
    with pytest.raises(HttpResponseError) as no_name:
        c.subscription.create_or_update(rg, svc, "bad", M.SubscriptionCreateParameters(scope="/apis"))
    assert no_name.value.status_code == 400 and "displayName" in str(no_name.value)

    # A product with subscriptions is only deleted with deleteSubscriptions=true.
    with pytest.raises(HttpResponseError) as has_subs:
        c.product.delete(rg, svc, "starter", "*")
    assert has_subs.value.status_code == 409
    c.product.delete(rg, svc, "starter", "*", delete_subscriptions=True)
    assert {s.name for s in c.subscription.list(rg, svc)} == {"sub3"}


# --- named values, backends, tags ----------------------------------------------------------------


def test_named_values(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    plain = c.named_value.begin_create_or_update(
        rg, svc, "region", M.NamedValueCreateContract(display_name="region", value="westeurope")
    ).result()
    assert plain.value == "westeurope" and plain.secret is False
    secret = c.named_value.begin_create_or_update(
        rg,
        svc,
        "backend-key",
        M.NamedValueCreateContract(display_name="backend-key", value="hunter2", secret=True, tags=["a", "b"]),
    ).result()
    assert secret.value is None and secret.secret is True and secret.tags == ["a", "b"]
    assert c.named_value.get(rg, svc, "backend-key").value is None
    raw = env.http.get(f"{env.svc_path(svc)}/namedValues/backend-key?api-version={API_VERSION}").text
    assert "hunter2" not in raw
    listed = env.http.get(f"{env.svc_path(svc)}/namedValues?api-version={API_VERSION}").text
    assert "hunter2" not in listed and "westeurope" in listed
    assert c.named_value.list_value(rg, svc, "backend-key").value == "hunter2"
    assert c.named_value.list_value(rg, svc, "region").value == "westeurope"

    patched = c.named_value.begin_update(
        rg, svc, "region", "*", M.NamedValueUpdateParameters(value="northeurope")
    ).result()
    assert patched.value == "northeurope" and patched.display_name == "region"
    with pytest.raises(HttpResponseError) as bad:
        c.named_value.begin_create_or_update(
            rg, svc, "bad", M.NamedValueCreateContract(display_name="has space", value="x")
        ).result()
    assert bad.value.status_code == 400 and "displayName" in str(bad.value)
    with pytest.raises(HttpResponseError) as no_value:
        c.named_value.begin_create_or_update(
            rg, svc, "novalue", M.NamedValueCreateContract(display_name="novalue")
        ).result()
    assert no_value.value.status_code == 400


def test_backends(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    b = c.backend.create_or_update(
        rg,
        svc,
        "orders-be",
        M.BackendContract(
            url="https://orders.internal/api",
            protocol="http",
            title="Orders",
            description="Orders backend",
            tls=M.BackendTlsProperties(validate_certificate_chain=False, validate_certificate_name=False),
            proxy=M.BackendProxyContract(url="http://proxy:3128", username="u", password="proxy-pass"),
        ),
    )
    assert (
        b.url == "https://orders.internal/api"
        and b.protocol == "http"
        and b.tls.validate_certificate_chain is False
    )
    raw = env.http.get(f"{env.svc_path(svc)}/backends/orders-be?api-version={API_VERSION}").text
    assert "proxy-pass" not in raw
    updated = c.backend.update(rg, svc, "orders-be", "*", M.BackendUpdateParameters(description="changed"))
    assert updated.description == "changed" and updated.url == "https://orders.internal/api"
    assert [x.name for x in c.backend.list_by_service(rg, svc)] == ["orders-be"]
    for bad in (
        M.BackendContract(url="https://x", protocol="ftp"),
        M.BackendContract(protocol="http"),
        M.BackendContract(url="not a url", protocol="http"),
    ):
        with pytest.raises(HttpResponseError) as info:
            c.backend.create_or_update(rg, svc, "bad", bad)
        assert info.value.status_code == 400
    c.backend.delete(rg, svc, "orders-be", "*")
    with pytest.raises(ResourceNotFoundError):
        c.backend.get(rg, svc, "orders-be")


def test_tags_and_tag_links(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    make_api(env, svc)
    make_operation(env, svc, "echo", "get-item")
    c.product.create_or_update(rg, svc, "prod", M.ProductContract(display_name="Prod"))
    for tid in ("blue", "green"):
        t = c.tag.create_or_update(rg, svc, tid, M.TagCreateUpdateParameters(display_name=tid.capitalize()))
        assert t.display_name == tid.capitalize()

    on_api = c.tag.assign_to_api(rg, svc, "echo", "blue")
    assert on_api.display_name == "Blue" and on_api.id.endswith("/apis/echo/tags/blue")
    c.tag.assign_to_product(rg, svc, "prod", "blue")
    c.tag.assign_to_product(rg, svc, "prod", "green")
    c.tag.assign_to_operation(rg, svc, "echo", "get-item", "green")
    assert [t.name for t in c.tag.list_by_api(rg, svc, "echo")] == ["blue"]
    assert {t.name for t in c.tag.list_by_product(rg, svc, "prod")} == {"blue", "green"}
    assert [t.name for t in c.tag.list_by_operation(rg, svc, "echo", "get-item")] == ["green"]
    assert c.tag.get_by_api(rg, svc, "echo", "blue").display_name == "Blue"
    assert c.tag.get_entity_state_by_api(rg, svc, "echo", "blue") is True
    assert c.tag.get_entity_state_by_product(rg, svc, "prod", "green") is True
    assert c.tag.get_entity_state_by_operation(rg, svc, "echo", "get-item", "green") is True
    with pytest.raises(ResourceNotFoundError):
        c.tag.assign_to_api(rg, svc, "echo", "no-such-tag")
    with pytest.raises(HttpResponseError) as no_name:
        c.tag.create_or_update(rg, svc, "bad", M.TagCreateUpdateParameters())
    assert no_name.value.status_code == 400

    c.tag.detach_from_product(rg, svc, "prod", "blue")
    assert [t.name for t in c.tag.list_by_product(rg, svc, "prod")] == ["green"]
    # Deleting a tag removes every link to it.
    c.tag.delete(rg, svc, "green", "*")
    assert list(c.tag.list_by_product(rg, svc, "prod")) == []
    assert list(c.tag.list_by_operation(rg, svc, "echo", "get-item")) == []
    assert [t.name for t in c.tag.list_by_api(rg, svc, "echo")] == ["blue"]


# --- paging and $filter --------------------------------------------------------------------------


def test_paging_and_filter(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    for i in range(25):
        c.user.create_or_update(
            rg,
            svc,
            f"user-{i:02d}",
            M.UserCreateParameters(email=f"u{i}@contoso.example", first_name=f"F{i}", last_name="L"),
        )
    for i in range(12):
        c.group.create_or_update(
            rg,
            svc,
            f"team-{i:02d}",
            M.GroupCreateParameters(display_name=f"{'Alpha' if i % 2 else 'Beta'} team {i}"),
        )

    first = env.http.get(f"{env.svc_path(svc)}/users?api-version={API_VERSION}&$top=10").json()
    assert len(first["value"]) == 10 and first["count"] == 25
    assert first["nextLink"].startswith(env.server.url) and "api-version=" in first["nextLink"]
    paged = [u.name for u in c.user.list_by_service(rg, svc, top=10)]
    assert paged == [f"user-{i:02d}" for i in range(25)]
    assert [u.name for u in c.user.list_by_service(rg, svc, top=7, skip=20)] == [
        f"user-{i:02d}" for i in range(20, 25)
    ]

    assert [u.name for u in c.user.list_by_service(rg, svc, filter="name eq 'user-07'")] == ["user-07"]
    assert len(list(c.user.list_by_service(rg, svc, filter="startswith(name,'user-1')", top=4))) == 10
    assert [u.name for u in c.user.list_by_service(rg, svc, filter="contains(name,'-2')")] == [
        f"user-{i}" for i in range(20, 25)
    ]
    assert len(list(c.user.list_by_service(rg, svc, filter="email eq 'U3@CONTOSO.EXAMPLE'"))) == 1
    alpha = [g.name for g in c.group.list_by_service(rg, svc, filter="startswith(displayName,'Alpha')")]
    assert alpha == [f"team-{i:02d}" for i in range(12) if i % 2]
    assert [g.name for g in c.group.list_by_service(rg, svc, filter="displayName eq 'Beta team 4'")] == [
        "team-04"
    ]
    both = c.group.list_by_service(
        rg, svc, filter="contains(displayName,'team 1') and not startswith(name,'team-1')"
    )
    assert [g.name for g in both] == ["team-01"]

    bad = env.http.get(
        f"{env.svc_path(svc)}/users", params={"api-version": API_VERSION, "$filter": "name eq"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidFilter"
    bad_top = env.http.get(f"{env.svc_path(svc)}/users", params={"api-version": API_VERSION, "$top": "0"})
    assert bad_top.status_code == 400


# --- ETags ---------------------------------------------------------------------------------------


def test_etag_conflicts(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    c.product.create_or_update(rg, svc, "p1", M.ProductContract(display_name="One"))
    old = etag_of(c.product.get, rg, svc, "p1")
    c.product.update(rg, svc, "p1", old, M.ProductUpdateParameters(description="first change"))
    new = etag_of(c.product.get, rg, svc, "p1")
    assert new != old

    with pytest.raises(HttpResponseError) as stale:
        c.product.update(rg, svc, "p1", old, M.ProductUpdateParameters(description="lost update"))
    assert stale.value.status_code == 412
    with pytest.raises(HttpResponseError) as stale_delete:
        c.product.delete(rg, svc, "p1", old)
    assert stale_delete.value.status_code == 412
    with pytest.raises(HttpResponseError) as stale_put:
        c.product.create_or_update(rg, svc, "p1", M.ProductContract(display_name="x"), if_match=old)
    assert stale_put.value.status_code == 412
    assert c.product.get(rg, svc, "p1").description == "first change"

    url = f"{env.svc_path(svc)}/products/p1?api-version={API_VERSION}"
    no_header = env.http.patch(url, json={"properties": {"description": "x"}})
    assert no_header.status_code == 400 and no_header.json()["error"]["code"]
    assert env.http.delete(url).status_code == 400
    quoted = env.http.patch(
        url, json={"properties": {"description": "quoted"}}, headers={"If-Match": f'"{new}"'}
    )
    assert quoted.status_code == 200 and quoted.headers["ETag"].strip('"') != new

    c.product.update(rg, svc, "p1", "*", M.ProductUpdateParameters(description="star"))
    assert c.product.get(rg, svc, "p1").description == "star"
    c.product.delete(rg, svc, "p1", "*")
    with pytest.raises(ResourceNotFoundError):
        c.product.get(rg, svc, "p1")
    # ETags of other kinds: stale If-Match on a user PATCH is refused too.
    c.user.create_or_update(
        rg, svc, "dave", M.UserCreateParameters(email="d@contoso.example", first_name="D", last_name="E")
    )
    u_etag = etag_of(c.user.get, rg, svc, "dave")
    c.user.update(rg, svc, "dave", u_etag, M.UserUpdateParameters(note="one"))
    with pytest.raises(HttpResponseError) as stale_user:
        c.user.update(rg, svc, "dave", u_etag, M.UserUpdateParameters(note="two"))
    assert stale_user.value.status_code == 412
    assert c.user.get_entity_tag(rg, svc, "dave") is True


def test_missing_parents_and_services(env: Env, svc: str) -> None:
    c, rg = env.client, env.rg
    with pytest.raises(ResourceNotFoundError):
        c.api.get(rg, unique("nosvc"), "x")
    with pytest.raises(ResourceNotFoundError):
        list(c.api_operation.list_by_api(rg, svc, "missing"))
    with pytest.raises(ResourceNotFoundError):
        c.user.get(rg, svc, "ghost")
    with pytest.raises((ResourceNotFoundError, ResourceExistsError, HttpResponseError)) as info:
        c.group_user.create(rg, svc, "developers", "ghost")
    assert info.value.status_code == 404


# --- robustness on both databases ----------------------------------------------------------------


def test_bad_inputs_are_4xx_on_both_databases(env: Env, svc: str) -> None:
    """Inputs that a database may refuse (NUL characters, overlong strings) are 4xx on PostgreSQL too."""
    base = env.svc_path(svc)
    v = f"api-version={API_VERSION}"
    cases: list[tuple[str, str, Any]] = [
        (
            "PUT",
            f"{base}/products/nul?{v}",
            {"properties": {"displayName": "a\u0000b", "description": "c\u0000d"}},
        ),
        ("PUT", f"{base}/products/a%00b?{v}", {"properties": {"displayName": "x"}}),
        (
            "PUT",
            f"{base}/users/nul?{v}",
            {"properties": {"email": "a@b.c", "firstName": "\u0000", "lastName": "x"}},
        ),
        ("PUT", f"{base}/tags/{'t' * 81}?{v}", {"properties": {"displayName": "x"}}),
        ("PUT", f"{base}/products/{'p' * 300}?{v}", {"properties": {"displayName": "x"}}),
        ("PUT", f"{base}/products/long?{v}", {"properties": {"displayName": "x" * 400}}),
        (
            "PUT",
            f"{base}/subscriptions/long?{v}",
            {"properties": {"scope": "/products/" + "p" * 700, "displayName": "x"}},
        ),
        (
            "PUT",
            f"{env.svc_path(unique('loc'))}?{v}",
            {
                "location": "x" * 200,
                "sku": {"name": "Developer", "capacity": 1},
                "properties": {"publisherEmail": "a@b.c", "publisherName": "n"},
            },
        ),
        (
            "PUT",
            f"{env.svc_path(unique('nul'))}?{v}",
            {
                "location": "west\u0000europe",
                "sku": {"name": "Developer", "capacity": 1},
                "properties": {"publisherEmail": "a@b.c", "publisherName": "n\u0000"},
            },
        ),
        ("PUT", f"{env.rg_path('longloc')}?api-version=2022-09-01", {"location": "x" * 200}),
        (
            "PUT",
            f"{env.rg_path('nulloc')}?api-version=2022-09-01",
            {"location": "a\u0000b", "tags": {"k\u0000": "v\u0000"}},
        ),
        ("PATCH", f"{base}?{v}", {"tags": {"k": "v\u0000"}, "properties": {"publisherName": "p\u0000"}}),
        ("GET", f"{base}/users?{v}&$filter=name%20eq%20'a%00'", None),
        ("GET", f"{base}/users?{v}&$top=99999999999999999999", None),
        ("GET", f"{base}/users?{v}&$skip=99999999999999999999", None),
    ]
    for method, url, body in cases:
        r = env.http.request(method, url, json=body, headers={"If-Match": "*"})
        assert r.status_code < 500, (method, url, r.status_code, r.text)
        if r.status_code >= 400:
            assert r.json()["error"]["code"], r.text


def test_concurrent_writes_of_one_entity(env: Env, svc: str) -> None:
    """Racing PUTs of the same new entity all succeed (one creates, the others replace), and racing
    PATCHes with the same If-Match let exactly one through."""
    import concurrent.futures

    url = f"{env.svc_path(svc)}/products/race?api-version={API_VERSION}"

    def put(i: int) -> int:
        return env.http.put(url, json={"properties": {"displayName": f"Race {i}"}}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(put, range(16)))
    assert all(s in (200, 201) for s in statuses), statuses
    assert statuses.count(201) == 1, statuses

    etag = env.http.get(url).headers["ETag"]

    def patch(i: int) -> int:
        return env.http.patch(
            url, json={"properties": {"description": f"d{i}"}}, headers={"If-Match": etag}
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(patch, range(8)))
    assert sorted(statuses) == [200] + [412] * 7, statuses


def test_concurrent_service_updates(env: Env, svc: str) -> None:
    """PATCHes of different service fields racing each other are all applied (none lost, no deadlock)."""
    import concurrent.futures

    url = f"{env.svc_path(svc)}?api-version={API_VERSION}"
    changes: list[dict[str, Any]] = [
        {"properties": {"publisherName": "Racer"}},
        {"properties": {"notificationSenderEmail": "race@contoso.example"}},
        {"properties": {"apiVersionConstraint": {"minApiVersion": "2019-12-01"}}},
        {"properties": {"customProperties": {"k": "v"}}},
        {"tags": {"t": "v"}},
        {"properties": {"disableGateway": True}},
        {"properties": {"enableClientCertificate": True}},
        {"properties": {"developerPortalStatus": "Disabled"}},
    ]

    def patch(body: dict[str, Any]) -> int:
        return env.http.patch(url, json=body).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(patch, changes * 2))
    assert all(s == 200 for s in statuses), statuses
    final = env.http.get(url).json()
    p = final["properties"]
    assert (
        p["publisherName"],
        p["notificationSenderEmail"],
        p["apiVersionConstraint"],
        p["customProperties"],
    ) == ("Racer", "race@contoso.example", {"minApiVersion": "2019-12-01"}, {"k": "v"})
    assert (
        final["tags"] == {"t": "v"} and p["disableGateway"] is True and p["enableClientCertificate"] is True
    )
    assert p["developerPortalStatus"] == "Disabled" and p["publisherEmail"] == "ops@contoso.example"


def test_concurrent_creates_of_one_service_and_group(env: Env) -> None:
    import concurrent.futures

    rg, name = unique("rg"), unique("race")
    body = {
        "location": "westeurope",
        "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "a@contoso.example", "publisherName": "n"},
    }

    def put_group(_: int) -> int:
        return env.http.put(
            f"{env.rg_path(rg)}?api-version=2022-09-01", json={"location": "westeurope"}
        ).status_code

    def put_service(_: int) -> int:
        return env.http.put(f"{env.svc_path(name, rg)}?api-version={API_VERSION}", json=body).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        groups = list(pool.map(put_group, range(6)))
        services = list(pool.map(put_service, range(6)))
    assert sorted(groups) == [200] * 5 + [201], groups
    assert services.count(201) == 1 and all(s in (200, 201, 409) for s in services), services
