"""Protocol hardening: polling hints on long-running operations, and deeply nested JSON bodies."""

from __future__ import annotations

import time

import pytest

from portico.jobs import store as J
from portico.store import services as S

from .inproc import SUB, InProc, assert_arm_error


async def test_every_in_progress_poll_says_when_to_poll_again(node: InProc, rg: str, svc: str) -> None:
    # An operation record held in progress by this node (its lease is renewed by the heartbeat).
    async with node.rt.db.write() as conn:
        service = await S.get_service(conn, SUB, rg, svc)
        assert service is not None
        op = await J.create(
            conn,
            op_id=J.new_id(),
            kind="backup",
            service_id=service.id,
            service_path=service.arm_id,
            params={},
            owner=node.rt.jobs.node_id,
            lease=60.0,
        )
    try:
        base = node.svc_path(rg, svc)
        result = await node.get(f"{base}/operationResults/{op.id}")
        assert result.status_code == 202, result.text
        assert result.headers["Retry-After"] == "1"
        status = await node.get(f"{base}/operationStatuses/{op.id}")
        assert status.status_code == 200, status.text
        assert status.json()["status"] == "InProgress"
        assert status.headers.get("Retry-After") == "1"
        # the same operation through the location-scoped URLs ARM also serves
        loc = f"/subscriptions/{SUB}/providers/Microsoft.ApiManagement/locations/westeurope"
        by_location = await node.get(f"{loc}/operationResults/{op.id}")
        assert by_location.status_code == 202 and by_location.headers["Retry-After"] == "1"
        by_location = await node.get(f"{loc}/operationStatuses/{op.id}")
        assert by_location.json()["status"] == "InProgress", by_location.text
    finally:
        async with node.rt.db.write() as conn:
            await J.finish(conn, op.id, None, J.SUCCEEDED)
    # A finished operation needs no further polling.
    done = await node.get(f"{base}/operationStatuses/{op.id}")
    assert done.status_code == 200 and done.json()["status"] == "Succeeded"
    assert "Retry-After" not in done.headers


@pytest.mark.parametrize("depth", [70, 300, 900, 2_000, 10_000])
@pytest.mark.parametrize(("opener", "closer"), [("[", "]"), ('{"a":', "}")])
async def test_deeply_nested_json_is_a_clear_400(
    node: InProc, rg: str, svc: str, depth: int, opener: str, closer: str
) -> None:
    nested = opener * depth + "1" + closer * depth
    body = (
        '{"properties":{"displayName":"Deep","path":"deep","protocols":["https"],"contact":' + nested + "}}"
    )
    started = time.monotonic()
    r = await node.request(
        "PUT",
        f"{node.svc_path(rg, svc)}/apis/deep",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert time.monotonic() - started < 2.0
    err = assert_arm_error(r, 400, "InvalidRequestContent")
    assert "too deeply" in err["message"] and "64 levels" in err["message"]
    if depth < 1000:
        assert "properties.contact" in err["message"]


async def test_nesting_within_the_limit_is_accepted(node: InProc, rg: str, svc: str) -> None:
    contact: dict[str, object] = {"name": "Ops", "x": [[[[{"y": 1}]]]]}
    r = await node.put(
        f"{node.svc_path(rg, svc)}/apis/shallow",
        {
            "properties": {
                "displayName": "Shallow",
                "path": "shallow",
                "protocols": ["https"],
                "contact": contact,
            }
        },
    )
    assert r.status_code in (200, 201), r.text


async def test_workspaces_are_refused_naming_the_feature(node: InProc, rg: str, svc: str) -> None:
    base = node.svc_path(rg, svc)
    listed = await node.get(f"{base}/workspaces")
    assert listed.status_code == 200 and listed.json()["value"] == []
    assert_arm_error(await node.get(f"{base}/workspaces/team-a"), 404, "ResourceNotFound")
    for path in ("workspaces/team-a", "workspaces/team-a/apis/echo"):
        r = await node.put(f"{base}/{path}", {"properties": {"displayName": "Team A"}})
        assert "Workspaces are not supported" in assert_arm_error(r, 400, "FeatureNotSupported")["message"]
