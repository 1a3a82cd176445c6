"""ARM template deployment: a template with N APIs x M operations, deployed end to end.

    .venv/bin/python bench/deploy.py [--apis 200] [--operations 10] [--db sqlite|postgres|both]

Starts its own Portico server (HTTPS; PostgreSQL in a throwaway cluster), then per backend:
1. deploys the template (one service, N APIs, N*M operations, as copy loops) through
   `PUT .../providers/Microsoft.Resources/deployments/{name}` and polls the Azure-AsyncOperation
   status, as the SDK and az do: the time from the PUT to Succeeded;
2. as the baseline, creates the same resources in another service by PUTting them directly over
   HTTPS with 8 concurrent keep-alive clients (what a script would do without a template).
Goal: 200 x 10 deploys in under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.postgres import create_database, postgres_cluster  # noqa: E402
from tests.support.server import PorticoServer, free_port  # noqa: E402

SUB = "00000000-0000-0000-0000-000000000001"
V = "2024-05-01"
RV = "2025-04-01"
APIM = "Microsoft.ApiManagement/service"
GOAL_SECONDS = 10.0


def template(apis: int, operations: int) -> dict[str, Any]:
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"serviceName": {"type": "string"}, "apis": {"type": "int"}, "ops": {"type": "int"}},
        "resources": [
            {
                "type": APIM,
                "apiVersion": V,
                "name": "[parameters('serviceName')]",
                "location": "westeurope",
                "sku": {"name": "Developer", "capacity": 1},
                "properties": {"publisherEmail": "ops@contoso.example", "publisherName": "Contoso"},
            },
            {
                "type": f"{APIM}/apis",
                "apiVersion": V,
                "name": "[format('{0}/api{1}', parameters('serviceName'), copyIndex())]",
                "copy": {"name": "apis", "count": "[parameters('apis')]"},
                "dependsOn": ["[resourceId('Microsoft.ApiManagement/service', parameters('serviceName'))]"],
                "properties": {
                    "displayName": "[format('API {0}', copyIndex())]",
                    "path": "[format('api{0}', copyIndex())]",
                    "protocols": ["https"],
                },
            },
            {
                "type": f"{APIM}/apis/operations",
                "apiVersion": V,
                "name": "[format('{0}/api{1}/op{2}', parameters('serviceName'), div(copyIndex(), parameters('ops')), mod(copyIndex(), parameters('ops')))]",
                "copy": {"name": "operations", "count": "[mul(parameters('apis'), parameters('ops'))]"},
                "dependsOn": [
                    "[resourceId('Microsoft.ApiManagement/service/apis', parameters('serviceName'), format('api{0}', div(copyIndex(), parameters('ops'))))]"
                ],
                "properties": {
                    "displayName": "[format('Op {0}', copyIndex())]",
                    "method": "GET",
                    "urlTemplate": "[format('/r/{0}', copyIndex())]",
                },
            },
        ],
    }


def _split(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


async def deploy(client: httpx.AsyncClient, rg: str, svc: str, apis: int, ops: int) -> float:
    if apis * ops > 800:  # a copy loop counts at most 800: split the operations over several loops
        tpl = template(apis, ops)
        loop = tpl["resources"].pop()
        per = max(1, 800 // ops)
        for chunk, group in enumerate(_split(apis, per)):
            part = dict(loop)
            part["copy"] = {"name": f"operations{chunk}", "count": len(group) * ops}
            first = group[0]
            part["name"] = (
                f"[format('{{0}}/api{{1}}/op{{2}}', parameters('serviceName'), add({first}, div(copyIndex(), parameters('ops'))), mod(copyIndex(), parameters('ops')))]"
            )
            part["dependsOn"] = [
                f"[resourceId('Microsoft.ApiManagement/service/apis', parameters('serviceName'), format('api{{0}}', add({first}, div(copyIndex(), parameters('ops')))))]"
            ]
            tpl["resources"].append(part)
        loops = max(1, (apis + 799) // 800)
        tpl["resources"][1]["copy"]["count"] = min(apis, 800)
        if loops > 1:
            raise SystemExit("at most 800 APIs in this benchmark")
    else:
        tpl = template(apis, ops)
    body = {
        "properties": {
            "mode": "Incremental",
            "template": tpl,
            "parameters": {"serviceName": {"value": svc}, "apis": {"value": apis}, "ops": {"value": ops}},
        }
    }
    path = f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Resources/deployments/bench-{svc}?api-version={RV}"
    t0 = time.perf_counter()
    r = await client.put(path, json=body)
    r.raise_for_status()
    status = r.headers["Azure-AsyncOperation"]
    while True:
        s = (await client.get(status)).json()
        if s["status"] not in ("Accepted", "Running"):
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    if s["status"] != "Succeeded":
        raise SystemExit(f"deployment {s['status']}: {s.get('error')}")
    return elapsed


async def direct(client: httpx.AsyncClient, rg: str, svc: str, apis: int, ops: int) -> float:
    base = f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{svc}"
    t0 = time.perf_counter()
    r = await client.put(
        f"{base}?api-version={V}",
        json={
            "location": "westeurope",
            "sku": {"name": "Developer", "capacity": 1},
            "properties": {"publisherEmail": "ops@contoso.example", "publisherName": "Contoso"},
        },
    )
    r.raise_for_status()
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def worker() -> None:
        while not queue.empty():
            path, body = queue.get_nowait()
            (await client.put(f"{base}/{path}?api-version={V}", json=body)).raise_for_status()

    for i in range(apis):
        queue.put_nowait(
            (
                f"apis/api{i}",
                {"properties": {"displayName": f"API {i}", "path": f"api{i}", "protocols": ["https"]}},
            )
        )
    await asyncio.gather(*(worker() for _ in range(8)))
    for i in range(apis):
        for j in range(ops):
            queue.put_nowait(
                (
                    f"apis/api{i}/operations/op{j}",
                    {
                        "properties": {
                            "displayName": f"Op {i * ops + j}",
                            "method": "GET",
                            "urlTemplate": f"/r/{i * ops + j}",
                        }
                    },
                )
            )
    await asyncio.gather(*(worker() for _ in range(8)))
    return time.perf_counter() - t0


@contextlib.contextmanager
def server(db: str, tmp: Path) -> Iterator[PorticoServer]:
    extra: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if db == "postgres":
            url = stack.enter_context(postgres_cluster())
            extra["PORTICO_DATABASE_URL"] = create_database(url, "bench_deploy")
        s = PorticoServer(tmp / db, free_port(), extra).start()
        try:
            yield s
        finally:
            s.stop()


async def run(s: PorticoServer, apis: int, ops: int) -> tuple[float, float]:
    headers = {"Authorization": f"Bearer {s.token()}"}
    ctx = ssl.create_default_context(cafile=s.ca)
    async with httpx.AsyncClient(
        base_url=s.url, verify=ctx, headers=headers, timeout=120, limits=httpx.Limits(max_connections=8)
    ) as client:
        rg = "bench"
        (
            await client.put(
                f"/subscriptions/{SUB}/resourceGroups/{rg}?api-version=2022-09-01",
                json={"location": "westeurope"},
            )
        ).raise_for_status()
        baseline = await direct(client, rg, "benchdirect", apis, ops)
        deployed = await deploy(client, rg, "benchtemplate", apis, ops)
        return deployed, baseline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--apis", type=int, default=200)
    ap.add_argument("--operations", type=int, default=10)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    args = ap.parse_args()
    n = args.apis * (args.operations + 1) + 1
    for db in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        with tempfile.TemporaryDirectory() as tmp, server(db, Path(tmp)) as s:
            deployed, baseline = asyncio.run(run(s, args.apis, args.operations))
        verdict = "met" if deployed < GOAL_SECONDS else "NOT met"
        print(
            f"{db}: template with {args.apis} APIs x {args.operations} operations ({n} resources): "
            f"{deployed:.2f} s (goal < {GOAL_SECONDS:.0f} s: {verdict}); the same PUTs directly, 8 clients: "
            f"{baseline:.2f} s; ratio {deployed / baseline:.2f}"
        )


if __name__ == "__main__":
    main()
