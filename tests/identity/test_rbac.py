"""Built-in roles, scope inheritance and `authorize`."""

from __future__ import annotations

import pytest

from portico.arm.errors import ArmError
from portico.identity import rbac
from portico.identity.rbac import (
    arm_action,
    assign_role,
    authorize,
    delete_assignment,
    find_role,
    list_assignments,
)
from portico.identity.validation import Principal
from portico.store.db import Database

SUB = "/subscriptions/00000000-0000-0000-0000-000000000001"
RG = f"{SUB}/resourceGroups/rg1"
SVC = f"{RG}/providers/Microsoft.ApiManagement/service/svc1"
OTHER_SVC = f"{SUB}/resourceGroups/rg2/providers/Microsoft.ApiManagement/service/svc2"

READ = "Microsoft.ApiManagement/service/read"
WRITE = "Microsoft.ApiManagement/service/write"
API_WRITE = "Microsoft.ApiManagement/service/apis/write"
API_READ = "Microsoft.ApiManagement/service/apis/read"
BACKUP = "Microsoft.ApiManagement/service/backup/action"
RESTORE = "Microsoft.ApiManagement/service/restore/action"
USER_KEYS = "Microsoft.ApiManagement/service/users/keys/read"


IDP = "https://idp.example/tenant-x/v2.0"


def who(pid: str, issuer: str | None = None) -> Principal:
    """A local principal (Portico's own token), or one of the outside `issuer`."""
    if issuer is None:
        return Principal(
            principal_id=pid, issuer="https://portico.test/t/v2.0", tenant_id="t", claims={}, local=True
        )
    return Principal(principal_id=pid, issuer=issuer, tenant_id=None, claims={})


async def allowed(db: Database, pid: str, action: str, scope: str, issuer: str | None = None) -> bool:
    try:
        await authorize(db, who(pid, issuer), action, scope)
    except ArmError as e:
        assert e.status == 403 and e.code == "AuthorizationFailed"
        return False
    return True


def test_role_data() -> None:
    assert find_role("owner") is find_role("OWNER") is find_role("8e3af657-a8ff-443c-a75c-2fe8c4bcb635")
    assert find_role("Contributor").id == "b24988ac-6180-42a0-ab88-20f7382dd24c"  # type: ignore[union-attr]
    assert find_role("api management service operator role").id == "e022efe7-f5ba-4159-bbe4-b44f577e9b61"  # type: ignore[union-attr]
    assert find_role("Superuser") is None
    owner, contributor, reader = find_role("Owner"), find_role("Contributor"), find_role("Reader")
    assert owner and contributor and reader
    assert owner.permits("Microsoft.Authorization/roleAssignments/write")
    assert not contributor.permits("Microsoft.Authorization/roleAssignments/write")
    assert not contributor.permits("microsoft.authorization/roleassignments/DELETE")
    assert contributor.permits(API_WRITE) and contributor.permits(
        "Microsoft.Authorization/roleAssignments/read"
    )
    assert reader.permits(API_READ) and reader.permits(
        "Microsoft.Resources/subscriptions/resourceGroups/read"
    )
    assert not reader.permits(API_WRITE) and not reader.permits(BACKUP)
    svc_contrib = find_role("API Management Service Contributor")
    assert svc_contrib and svc_contrib.permits(API_WRITE) and svc_contrib.permits(BACKUP)
    assert not svc_contrib.permits("Microsoft.Storage/storageAccounts/write")
    svc_reader = find_role("API Management Service Reader Role")
    assert svc_reader and svc_reader.permits(API_READ) and svc_reader.permits(READ)
    assert (
        not svc_reader.permits(USER_KEYS) and not svc_reader.permits(BACKUP) and not svc_reader.permits(WRITE)
    )


async def test_reader_reads_but_does_not_write(db: Database) -> None:
    await assign_role(db, "reader-app", "Reader", SVC)
    assert await allowed(db, "reader-app", READ, SVC)
    assert await allowed(db, "reader-app", API_READ, f"{SVC}/apis/echo")
    assert not await allowed(db, "reader-app", WRITE, SVC)
    assert not await allowed(db, "reader-app", API_WRITE, f"{SVC}/apis/echo")
    assert not await allowed(db, "reader-app", BACKUP, SVC)


async def test_operator(db: Database) -> None:
    await assign_role(db, "op", "API Management Service Operator Role", SVC)
    for action in (
        BACKUP,
        RESTORE,
        WRITE,
        READ,
        API_READ,
        "Microsoft.ApiManagement/service/delete",
        "Microsoft.ApiManagement/service/operationresults/read",
    ):
        assert await allowed(db, "op", action, SVC), action
    assert not await allowed(db, "op", API_WRITE, f"{SVC}/apis/echo")
    assert not await allowed(db, "op", "Microsoft.ApiManagement/service/apis/delete", f"{SVC}/apis/echo")
    assert not await allowed(db, "op", USER_KEYS, f"{SVC}/users/u1/keys")


async def test_scope_inheritance(db: Database) -> None:
    await assign_role(db, "sub-contrib", "Contributor", SUB)
    assert await allowed(db, "sub-contrib", API_WRITE, f"{SVC}/apis/echo")
    assert await allowed(db, "sub-contrib", BACKUP, SVC.upper())  # ARM paths are case-insensitive
    assert not await allowed(
        db, "sub-contrib", BACKUP, "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg1"
    )
    # A prefix that is not a segment boundary does not count.
    assert not await allowed(db, "sub-contrib", BACKUP, SUB + "9/resourceGroups/rg1")

    await assign_role(db, "rg1-op", "API Management Service Operator Role", RG)
    assert await allowed(db, "rg1-op", BACKUP, SVC)
    assert not await allowed(db, "rg1-op", BACKUP, OTHER_SVC)
    assert not await allowed(
        db, "rg1-op", BACKUP, f"{SUB}/resourceGroups/rg10/providers/Microsoft.ApiManagement/service/x"
    )

    await assign_role(db, "root", "Owner", "/")
    assert await allowed(db, "root", "Microsoft.Authorization/roleAssignments/write", OTHER_SVC)
    assert not await allowed(db, "nobody", READ, SVC)


async def test_error_message(db: Database) -> None:
    with pytest.raises(ArmError) as info:
        await authorize(db, who("p-1"), WRITE, SVC)
    assert info.value.message == (
        f"The client 'p-1' with object id 'p-1' does not have authorization to perform action '{WRITE}' "
        f"over scope '{SVC}' or the scope is invalid. If access was recently granted, please refresh your credentials."
    )


async def test_assignment_crud_and_validation(db: Database) -> None:
    a = await assign_role(db, "p", "reader", SVC + "/")
    assert a.role == "Reader" and a.scope == SVC
    again = await assign_role(db, "p", "READER", SVC.lower())
    assert again.id == a.id  # idempotent
    b = await assign_role(db, "p", "api management service reader role", RG)
    assert [x.id for x in await list_assignments(db, "p")] == [a.id, b.id]
    assert len(await list_assignments(db)) == 2
    assert await delete_assignment(db, a.id)
    assert not await delete_assignment(db, a.id)
    with pytest.raises(ValueError, match="Unknown role"):
        await assign_role(db, "p", "Superuser", SVC)
    for bad in (
        "",
        "subscriptions/x",
        "/subscriptions/",
        f"{SUB}/resourceGroups",
        f"{SVC}/apis/echo",
        f"{RG}/providers/Microsoft.Storage/storageAccounts/s",
    ):
        with pytest.raises(ValueError, match="Invalid scope"):
            await assign_role(db, "p", "Reader", bad)
    with pytest.raises(ValueError, match="principal"):
        await assign_role(db, " ", "Reader", SVC)


async def test_assignments_are_keyed_by_issuer(db: Database) -> None:
    """An outside principal whose oid equals a local app's client id gets none of the app's roles,
    and only its own assignments (by issuer); deleting the local app keeps the outside ones."""
    await assign_role(db, "shared-id", "Owner", "/")
    assert await allowed(db, "shared-id", WRITE, SVC)
    assert not await allowed(db, "shared-id", READ, SVC, issuer=IDP)
    outside = await assign_role(db, "shared-id", "Reader", SVC, issuer=IDP)
    assert outside.issuer == IDP and outside.as_dict()["issuer"] == IDP
    assert await allowed(db, "shared-id", READ, SVC, issuer=IDP)
    assert not await allowed(db, "shared-id", WRITE, SVC, issuer=IDP)
    assert not await allowed(db, "shared-id", READ, SVC, issuer="https://other.example/v2.0")
    assert [a.issuer for a in await list_assignments(db, "shared-id")] == ["local", IDP]
    assert [a.id for a in await list_assignments(db, "shared-id", issuer=IDP)] == [outside.id]
    async with db.write() as conn:
        await rbac.delete_assignments_of(conn, "shared-id")  # what deleting the local app does
    assert [a.id for a in await list_assignments(db, "shared-id")] == [outside.id]
    assert not await allowed(db, "shared-id", WRITE, SVC)
    for bad in ("", "idp.example", "x" * 601, "ftp://idp"):
        with pytest.raises(ValueError, match="issuer"):
            await assign_role(db, "p", "Reader", SVC, issuer=bad)


async def test_role_changes_visible_quickly(db: Database) -> None:
    assert not await allowed(db, "late", READ, SVC)  # cached: no grants
    a = await assign_role(db, "late", "Reader", SVC)
    assert await allowed(db, "late", READ, SVC)  # this process cleared its cache at once
    await delete_assignment(db, a.id)
    assert not await allowed(db, "late", READ, SVC)


async def test_change_by_another_node_visible_after_ttl(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time as _time

    assert not await allowed(db, "remote", READ, SVC)
    from datetime import UTC, datetime

    from portico.store.schema import role_assignments

    async with db.write() as conn:  # another node writes directly; our cache is not told
        await conn.execute(
            role_assignments.insert().values(
                id="x1", principal_id="remote", role="Reader", scope=SVC, created_at=datetime.now(UTC)
            )
        )
    assert not await allowed(db, "remote", READ, SVC)
    real = _time.monotonic
    monkeypatch.setattr(rbac.time, "monotonic", lambda: real() + 2.0)
    assert await allowed(db, "remote", READ, SVC)


def test_arm_action() -> None:
    assert arm_action("POST", f"{SVC}/backup") == BACKUP
    assert arm_action("post", f"{SVC}/restore?api-version=2024-05-01") == RESTORE
    assert arm_action("GET", SVC) == READ
    assert arm_action("PUT", SVC) == WRITE
    assert arm_action("PATCH", SVC) == WRITE
    assert arm_action("DELETE", SVC) == "Microsoft.ApiManagement/service/delete"
    assert arm_action("GET", f"{SVC}/apis") == API_READ
    assert arm_action("PUT", f"{SVC}/apis/echo") == API_WRITE
    assert (
        arm_action("HEAD", f"{SVC}/apis/echo/operations/op1")
        == "Microsoft.ApiManagement/service/apis/operations/read"
    )
    assert (
        arm_action("POST", f"{SVC}/subscriptions/s1/listSecrets")
        == "Microsoft.ApiManagement/service/subscriptions/listSecrets/action"
    )
    assert (
        arm_action("GET", f"{SVC}/operationresults/op-1")
        == "Microsoft.ApiManagement/service/operationresults/read"
    )
    assert arm_action("GET", RG) == "Microsoft.Resources/subscriptions/resourceGroups/read"
    assert arm_action("GET", f"{SUB}/providers/Microsoft.ApiManagement/service") == READ
