"""Usage analytics: the reports the Azure SDK reads match the traffic sent; export to CSV/JSON."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from tests.gateway.conftest import RG, GatewayEnv, eventually
from tests.support.server import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def traffic(gw: GatewayEnv, backend: str) -> dict[str, Any]:
    """Known traffic: 6 OK + 2 blocked on 'shop' (through a product), 3 OK on 'news', 1 failed."""
    start = datetime.now(UTC) - timedelta(seconds=2)
    gw.client.user.create_or_update(
        RG,
        gw.service,
        "alice",
        {"properties": {"email": "alice@contoso.com", "firstName": "Alice", "lastName": "Smith"}},
    )
    gw.api("shop", "shop", backend, ops=[("list", "GET", "/items"), ("buy", "POST", "/items")])
    gw.api("news", "news", backend, ops=[("read", "GET", "/*")])
    gw.client.product.create_or_update(
        RG, gw.service, "retail", {"properties": {"displayName": "Retail", "state": "published"}}
    )
    gw.client.product_api.create_or_update(RG, gw.service, "retail", "shop")
    shop_key = gw.subscription("alice-retail", "/products/retail", owner="/users/alice")
    news_key = gw.subscription("news-all", "/apis")
    eventually(lambda: _code(gw.get("/news/warmup", key=news_key), 200), timeout=3)
    eventually(lambda: _code(gw.get("/shop/items", key=shop_key), 200), timeout=3)  # 1 OK
    for _ in range(3):
        assert gw.get("/shop/items", key=shop_key).status_code == 200
    for _ in range(2):
        assert gw.call("POST", "/shop/items", key=shop_key, content=b"0123456789").status_code == 200
    for _ in range(2):
        assert gw.get("/shop/items", key="wrong").status_code == 401
    for i in range(2):
        assert gw.get(f"/news/{i}", key=news_key).status_code == 200
    assert gw.get("/news/status/500", key=news_key).status_code == 500
    return {"start": start, "filter": f"timestamp ge datetime'{start.strftime('%Y-%m-%dT%H:%M:%S')}'"}


def _code(r: Any, code: int) -> Any:
    assert r.status_code == code, r.text
    return r


def test_reports_match_traffic(gw: GatewayEnv, traffic: dict[str, Any]) -> None:
    f = traffic["filter"]
    reports = gw.client.reports

    def by_api() -> dict[str, Any]:
        rows = {r.api_id: r for r in reports.list_by_api(RG, gw.service, f)}
        assert rows.get("/apis/shop") is not None and rows["/apis/shop"].call_count_total == 8, {
            k: v.call_count_total for k, v in rows.items()
        }
        # news also counts the 404s its warm-up met before its operation existed: wait for the
        # last request's record rather than for a total
        assert rows.get("/apis/news") is not None and rows["/apis/news"].call_count_failed >= 1
        return rows

    rows = eventually(by_api, timeout=5)
    shop = rows["/apis/shop"]
    assert (
        shop.name == "Shop"
        and shop.call_count_success == 6
        and shop.call_count_blocked == 2
        and shop.call_count_failed == 0
    )
    assert shop.bandwidth > 20 and shop.api_time_max >= shop.api_time_avg >= shop.api_time_min > 0
    news = rows["/apis/news"]
    assert news.call_count_failed == 1
    ops = {r.operation_id: r for r in reports.list_by_operation(RG, gw.service, f)}
    assert (
        ops["/apis/shop/operations/list"].call_count_total == 6
        and ops["/apis/shop/operations/buy"].call_count_total == 2
    )
    assert ops["/apis/shop/operations/buy"].name == "buy"
    products = {r.product_id: r for r in reports.list_by_product(RG, gw.service, f)}
    assert (
        products["/products/retail"].call_count_total == 6 and products["/products/retail"].name == "Retail"
    )
    subs = {r.subscription_id: r for r in reports.list_by_subscription(RG, gw.service, f)}
    assert (
        subs["/subscriptions/alice-retail"].call_count_total == 6
        and subs["/subscriptions/alice-retail"].user_id == "/users/alice"
    )
    users = {r.user_id: r for r in reports.list_by_user(RG, gw.service, f)}
    assert users["/users/alice"].call_count_total == 6 and users["/users/alice"].name == "Alice Smith"
    # shop calls in time buckets of one minute, and filtered by API
    buckets = list(
        reports.list_by_time(RG, gw.service, f + " and apiId eq '/apis/shop'", interval=timedelta(minutes=1))
    )
    assert sum(b.call_count_total for b in buckets) == 8 and all(b.interval == "PT1M" for b in buckets)
    # request by request, with the key stripped from recorded URLs
    reqs = list(reports.list_by_request(RG, gw.service, f + " and apiId eq '/apis/shop'", top=100))
    assert len(reqs) == 8
    assert {r.response_code for r in reqs} == {200, 401}
    posted = [r for r in reqs if r.method == "POST"]
    assert len(posted) == 2 and all(r.request_size == 10 and r.backend_response_code == "200" for r in posted)
    assert all(r.request_id and r.url.startswith("http://") for r in reqs)
    # paging: $top/$skip with nextLink, followed by the SDK
    paged = list(reports.list_by_request(RG, gw.service, f, top=3))
    assert len(paged) == 3  # the SDK reads one page of byRequest (it ignores nextLink there)
    all_ops = list(reports.list_by_operation(RG, gw.service, f, top=1))
    assert len(all_ops) == len(ops)  # other reports follow nextLink page by page


def test_report_errors_are_clear(gw: GatewayEnv, traffic: dict[str, Any]) -> None:
    with pytest.raises(HttpResponseError) as err:
        list(gw.client.reports.list_by_api(RG, gw.service, "timestamp ge datetime'yesterday'"))
    assert err.value.status_code == 400 and "ISO 8601" in str(err.value.message)
    with pytest.raises(HttpResponseError) as err:
        list(gw.client.reports.list_by_api(RG, gw.service, "colour eq 'red'"))
    assert "not supported" in str(err.value.message)
    with pytest.raises(HttpResponseError) as err:
        list(
            gw.client.reports.list_by_time(RG, gw.service, traffic["filter"], interval=timedelta(seconds=30))
        )
    assert "whole number of minutes" in str(err.value.message)


def test_export_csv_and_json(gw: GatewayEnv, traffic: dict[str, Any], tmp_path: Any) -> None:
    creds = gw.server.admin()
    common = [
        "--service",
        gw.service,
        "--url",
        gw.server.url,
        "--ca",
        gw.server.ca,
        "--client-id",
        creds["client_id"],
        "--client-secret",
        creds["client_secret"],
        "-s",
        "00000000-0000-0000-0000-000000000001",
        "-g",
        RG,
        "--from",
        traffic["start"].strftime("%Y-%m-%dT%H:%M:%S"),
        "--page-size",
        "5",
    ]
    launcher = (
        "import typer; from portico.cli.gateway import register; app = typer.Typer(); register(app); app()"
    )
    out = tmp_path / "usage.csv"
    subprocess.run(
        [sys.executable, "-c", launcher, "analytics", "export", *common, "--format", "csv", "-o", str(out)],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) >= 12 and {"apiId", "responseCode", "requestId", "url"} <= set(rows[0])
    assert sum(1 for r in rows if r["apiId"] == "/apis/shop") == 8
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            launcher,
            "analytics",
            "export",
            *common,
            "--report",
            "byApi",
            "--format",
            "json",
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    doc = json.loads(res.stdout)
    assert {d["apiId"]: d["callCountTotal"] for d in doc}["/apis/shop"] == 8
