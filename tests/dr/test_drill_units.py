"""The failover drill's comparison and probe planning, on their own (`portico.dr.drill`)."""

from __future__ import annotations

from portico.dr.drill import compare, plan_probes


def test_compare_and_probe_planning() -> None:
    r = compare({"service": "1", "apis/a": "x", "apis/a/operations/o": "y", "users/u": "z"},
                {"service": "1", "apis/a": "x", "apis/a/operations/o": "CHANGED", "tags/t": "w"})  # fmt: skip
    assert not r["equivalent"]
    assert r["missingOnStandby"] == ["users/u"] and r["extraOnStandby"] == ["tags/t"]
    assert r["different"] == ["apis/a/operations/o"]
    assert r["byKind"]["apis/operations"] == {"primary": 1, "standby": 1, "equal": 0}
    material = {
        "apis": {"a": {"path": "shop"}, "b": {"path": "shop/admin"}, "open": {"path": "open", "subscriptionRequired": False}},
        "operations": {
            "a": [{"method": "GET", "urlTemplate": "/items/{id}"}, {"method": "GET", "urlTemplate": "/items"}],
            "b": [{"method": "POST", "urlTemplate": "/x"}],
            "open": [{"method": "GET", "urlTemplate": "/"}],
        },
        "subscriptions": {
            "prod": {"scope": "/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/x/products/p", "state": "active", "_keys": ["kp", "kp2"]},
            "off": {"scope": "/apis", "state": "suspended", "_keys": ["ko", "ko2"]},
        },
        "productApis": {"p": ["a"]},
    }  # fmt: skip
    plan = plan_probes(material, [])
    assert plan == [
        {"path": "/shop/items", "api": "a", "key": "kp"},
        {"path": "/open", "api": "open", "key": None},
    ]
    assert plan_probes(material, ["/shop/admin/x"]) == [{"path": "/shop/admin/x", "api": "b", "key": None}]
