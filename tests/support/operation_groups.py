"""Which operation groups of azure-mgmt-apimanagement a Portico server answers.

Every operation group of `ApiManagementClient` (workspace groups aside) has its read methods
(`get`, `list*`) called with placeholder names on a fresh service. A group *answers* when one of
its reads succeeds or fails as the resource would (404 for a missing entity, 400 for a bad
argument); it does *not* answer when the server has no such resource type (404 "No resource type
matches"), refuses the method (405) or fails (5xx), or when the SDK cannot read the reply.

Run standalone against a server of its own:  .venv/bin/python -m tests.support.operation_groups
"""

from __future__ import annotations

import inspect
import re
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import HttpResponseError

PLACEHOLDER = "probe"
# Arguments with a meaningful value on a fresh service.
KNOWN_ARGS = {
    "location": "westeurope",
    "group_id": "administrators",
    "access_name": "access",
    "configuration_name": "configuration",
    "settings_type": "public",
    "notification_name": "RequestPublisherNotificationMessage",
    "template_name": "applicationApprovedNotificationMessage",
    "wiki_id": "default",
    "policy_id": "policy",
    "format": "rawxml",
    "export": "true",
}
NO_SUCH_TYPE = "No resource type matches"


@dataclass
class Outcome:
    group: str
    method: str
    ok: bool
    detail: str


def group_names(client: Any) -> list[str]:
    src = inspect.getsource(type(client))
    names = sorted(set(re.findall(r"self\.(\w+) = \w+Operations\(", src)))
    return [n for n in names if not n.startswith("workspace")]


def _read_methods(group: Any) -> list[str]:
    return sorted(
        n
        for n in dir(group)
        if (n == "get" or n.startswith("list")) and not n.startswith("_") and callable(getattr(group, n))
    )


def _call(method: Any, rg: str, svc: str) -> Any:
    args: list[Any] = []
    for p in inspect.signature(method).parameters.values():
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) or p.default is not p.empty:
            continue
        if p.name == "resource_group_name":
            args.append(rg)
        elif p.name in ("service_name", "gateway_name"):
            args.append(svc)
        elif p.name in KNOWN_ARGS:
            args.append(KNOWN_ARGS[p.name])
        elif p.name == "interval":
            args.append(timedelta(hours=1))
        elif p.name == "filter":
            args.append(
                "timestamp ge datetime'2026-01-01T00:00:00' and timestamp le datetime'2026-01-02T00:00:00'"
            )
        elif p.name in ("parameters", "body"):
            raise TypeError(f"needs a request body ({p.name})")
        else:
            args.append(PLACEHOLDER)
    result = method(*args)
    if hasattr(result, "by_page"):  # a pager: fetch the first page
        return next(iter(result), None)
    return result


def probe(client: Any, rg: str, svc: str) -> list[Outcome]:
    out: list[Outcome] = []
    for name in group_names(client):
        group = getattr(client, name)
        for meth in _read_methods(group):
            try:
                _call(getattr(group, meth), rg, svc)
                out.append(Outcome(name, meth, True, "200"))
            except HttpResponseError as exc:
                status = exc.status_code or 0
                message = str(exc.message or "")
                ok = status in (400, 404, 409) and NO_SUCH_TYPE not in message
                out.append(Outcome(name, meth, ok, f"{status} {message.splitlines()[0][:90]}"))
            except Exception as exc:  # the SDK could not use the answer (or the call needs a body)
                out.append(Outcome(name, meth, False, f"{type(exc).__name__}: {str(exc)[:90]}"))
    return out


def answering(outcomes: list[Outcome]) -> dict[str, bool]:
    groups: dict[str, bool] = {}
    for o in outcomes:
        groups[o.group] = groups.get(o.group, False) or o.ok
    return groups


def main() -> int:
    import httpx

    from tests.conftest import sdk_client
    from tests.e2e.conftest import Env, unique
    from tests.support.server import PorticoServer, free_port

    with tempfile.TemporaryDirectory() as tmp:
        server = PorticoServer(
            Path(tmp), free_port(), {"PORTICO_GATEWAY_PORT": "0", "PORTICO_GATEWAY_HTTPS_PORT": "0"}
        ).start()
        try:
            http = httpx.Client(
                base_url=server.url,
                verify=server.ca,
                headers={"Authorization": f"Bearer {server.token()}"},
                timeout=30,
            )
            env = Env(server, sdk_client(server), http, unique("rg"))
            env.create_group(env.rg)
            svc = env.create_service()
            outcomes = probe(env.client, env.rg, svc)
        finally:
            server.stop()
    verbose = "-v" in sys.argv
    for o in outcomes:
        if verbose or not o.ok:
            print(f"{'ok  ' if o.ok else 'FAIL'} {o.group}.{o.method}: {o.detail}")
    groups = answering(outcomes)
    print(f"operation groups answering: {sum(groups.values())}/{len(groups)}")
    for g, ok in sorted(groups.items()):
        if not ok:
            print(f"  not answering: {g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
