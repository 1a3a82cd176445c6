"""Policy fragments in the gateway: `<include-fragment>` runs the fragment's policies, a change to
the fragment is live without touching the policy, and the management API refuses what Azure
refuses (a missing fragment, deleting one in use)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from tests.gateway.conftest import RG, GatewayEnv, unique
from tests.gateway.test_policies import doc, until

pytestmark = pytest.mark.slow


def _fragment(gw: GatewayEnv, name: str, xml: str) -> None:
    gw.client.policy_fragment.begin_create_or_update(
        RG, gw.service, name, {"properties": {"value": xml, "format": "xml"}}
    ).result()


def test_include_fragment_runs_and_follows_changes(gw: GatewayEnv, backend: str) -> None:
    api = unique("frag")
    gw.api(api, api, backend + "/svc")
    key = gw.subscription(unique("fk"), f"/apis/{api}")
    header = '<set-header name="X-Frag" exists-action="override"><value>{}</value></set-header>'
    _fragment(gw, "inner", f"<fragment>{header.format('one')}</fragment>")
    _fragment(gw, "outer", '<fragment><include-fragment fragment-id="inner" /></fragment>')
    gw.policy(doc(inbound='<base /><include-fragment fragment-id="outer" />'), api=api)
    r = until(
        gw, f"/{api}/x", key, lambda r: r.status_code == 200 and r.json()["headers"].get("x-frag") == "one"
    )
    assert r.json()["headers"]["x-frag"] == "one"
    _fragment(gw, "inner", f"<fragment>{header.format('two')}</fragment>")
    until(gw, f"/{api}/x", key, lambda r: r.json()["headers"].get("x-frag") == "two")

    with pytest.raises(HttpResponseError) as err:
        gw.client.policy_fragment.delete(RG, gw.service, "inner", if_match="*")
    assert err.value.status_code == 409
    with pytest.raises(HttpResponseError) as err:
        gw.policy(doc(inbound='<base /><include-fragment fragment-id="ghost" />'), api=api)
    assert err.value.status_code == 400 and "'ghost'" in str(err.value.message)
    gw.delete_policy(api=api)
    gw.client.policy_fragment.delete(RG, gw.service, "outer", if_match="*")
    gw.client.policy_fragment.delete(RG, gw.service, "inner", if_match="*")
