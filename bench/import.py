"""API import: a generated OpenAPI document of N operations imported with one PUT, against the
baseline of creating the same API and operations with one PUT each (what a pipeline does without
import), on one server over HTTPS.

    .venv/bin/python bench/import.py [--operations 1000] [--rounds 3] [--db sqlite|postgres]

Per round: a first import (creates everything), a re-import where every operation changed
(each is rewritten in place), a re-import of that same document again (nothing to rewrite), and
the baseline into another API. Prints seconds per step; the target is a
1,000-operation import under 2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from portico.resources.api_import import parse_checked  # noqa: E402
from portico.resources.importers import Options  # noqa: E402
from tests.resources.test_importers import generated  # noqa: E402
from tests.support.postgres import create_database, postgres_cluster  # noqa: E402
from tests.support.server import PorticoServer, free_port  # noqa: E402

SUB = "00000000-0000-0000-0000-00000000beef"
API = "2024-05-01"
TARGET_SECONDS = 2.0


@contextlib.contextmanager
def server(db: str) -> Iterator[PorticoServer]:
    env = {"PORTICO_GATEWAY_PORT": "0", "PORTICO_GATEWAY_HTTPS_PORT": "0", "PORTICO_SUBSCRIPTIONS": SUB}
    with contextlib.ExitStack() as stack:
        if db == "postgres":
            env["PORTICO_DATABASE_URL"] = create_database(
                stack.enter_context(postgres_cluster()), "bench_import"
            )
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        s = PorticoServer(tmp / "data", free_port(), env).start()
        try:
            yield s
        finally:
            s.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--operations", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = ap.parse_args()
    doc = generated(args.operations)
    text = json.dumps(doc)
    for item in doc["paths"].values():  # the same operations, every one of them changed
        for op in item.values():
            op["summary"] = "changed " + op["operationId"]
    changed = json.dumps(doc)
    start = time.perf_counter()
    ops = parse_checked("openapi+json", text, Options(), None).operations
    parse_s = time.perf_counter() - start
    with server(args.db) as s:
        http = httpx.Client(
            verify=ssl.create_default_context(cafile=s.ca),
            headers={"Authorization": f"Bearer {s.token()}"},
            timeout=120,
            params={"api-version": API},
        )
        rg = f"{s.url}/subscriptions/{SUB}/resourceGroups/bench"
        http.put(rg, params={"api-version": "2021-04-01"}, json={"location": "westeurope"}).raise_for_status()
        svc = f"{rg}/providers/Microsoft.ApiManagement/service/bench"
        body: dict[str, Any] = {
            "location": "westeurope",
            "sku": {"name": "Developer", "capacity": 1},
            "properties": {"publisherEmail": "ops@contoso.com", "publisherName": "Contoso"},
        }
        http.put(svc, json=body).raise_for_status()
        first, again, same, baseline = [], [], [], []
        for r in range(args.rounds):
            props = {"format": "openapi+json", "value": text, "path": f"gen{r}"}
            t = time.perf_counter()
            http.put(f"{svc}/apis/gen{r}", json={"properties": props}).raise_for_status()
            first.append(time.perf_counter() - t)
            t = time.perf_counter()
            http.put(
                f"{svc}/apis/gen{r}", json={"properties": {**props, "value": changed}}
            ).raise_for_status()
            again.append(time.perf_counter() - t)
            t = time.perf_counter()
            http.put(
                f"{svc}/apis/gen{r}", json={"properties": {**props, "value": changed}}
            ).raise_for_status()
            same.append(time.perf_counter() - t)
            t = time.perf_counter()
            http.put(
                f"{svc}/apis/manual{r}", json={"properties": {"path": f"manual{r}", "displayName": "Manual"}}
            ).raise_for_status()
            for name, op in ops:
                http.put(
                    f"{svc}/apis/manual{r}/operations/{name}", json={"properties": op}
                ).raise_for_status()
            baseline.append(time.perf_counter() - t)
            count = http.get(f"{svc}/apis/gen{r}/operations", params={"api-version": API, "$top": 1}).json()[
                "count"
            ]
            assert count == args.operations, count
    med = statistics.median
    print(
        f"{args.operations} operations, {args.db}, {args.rounds} rounds; parse+validate alone {parse_s:.2f} s"
    )
    print(f"import (new API)      : {', '.join(f'{x:.2f}' for x in first)} s (median {med(first):.2f})")
    print(f"re-import, all changed: {', '.join(f'{x:.2f}' for x in again)} s (median {med(again):.2f})")
    print(f"re-import, unchanged  : {', '.join(f'{x:.2f}' for x in same)} s (median {med(same):.2f})")
    print(f"baseline, 1 PUT per op: {', '.join(f'{x:.2f}' for x in baseline)} s (median {med(baseline):.2f})")
    print(
        f"ratio baseline/import : {med(baseline) / med(first):.1f}x; target < {TARGET_SECONDS} s: "
        f"{'met' if med(first) < TARGET_SECONDS else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
