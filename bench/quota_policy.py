"""The request-path cost of quota-by-key (counted in the process's ledger, flushed to the database
in the background) against rate-limit-by-key (an in-process counter table), in one run.

    .venv/bin/python -m bench.quota_policy [--runs 200000]

Each policy runs on one request context, once per iteration, over a few counter keys; the best of
five rounds is reported in microseconds per run. No flush runs meanwhile: the request path never
touches the database, which is what this measures.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

from portico.gateway.policies.base import CompileContext, Policy
from portico.gateway.policies.limits import QuotaByKey, RateLimitByKey
from portico.gateway.policies.xmltree import parse
from tests.gateway.unit.harness import FakeBackend, request, service

KEY = "@(context.Request.Headers.GetValueOrDefault(&quot;x-client&quot;, &quot;none&quot;))"


def _per_run(policy: Policy, contexts: list[Any], runs: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for i in range(runs):
            ctx = contexts[i & 7]
            policy.run(ctx)
            with contextlib.suppress(AttributeError):
                del ctx.counted  # a new request: quota-by-key counts a counter once per request
        best = min(best, (time.perf_counter() - started) / runs * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200_000)
    args = parser.parse_args()
    svc, backend = service(), FakeBackend()
    cc = CompileContext(limits=svc.compiling.counters, quotas=svc.compiling.quotas)
    quota = QuotaByKey(
        parse(f'<quota-by-key calls="1000000000" renewal-period="3600" counter-key="{KEY}" />'), "inbound", cc
    )
    rate = RateLimitByKey(
        parse(f'<rate-limit-by-key calls="1000000000" renewal-period="300" counter-key="{KEY}" />'),
        "inbound",
        cc,
    )
    contexts = [request(svc, backend, headers={"x-client": f"client-{i}"}) for i in range(8)]
    q = _per_run(quota, contexts, args.runs)
    r = _per_run(rate, contexts, args.runs)
    print(f"quota-by-key      {q:6.2f} us/run")
    print(f"rate-limit-by-key {r:6.2f} us/run   (quota / rate-limit: {q / r:.2f})")


if __name__ == "__main__":
    main()
