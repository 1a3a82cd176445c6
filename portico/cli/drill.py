"""`portico drill`: a measured failover drill between two Portico instances (client side).

1. Reads the primary's backup status (RPO before the drill: age of its newest recovery point).
2. Backs the primary up, then restores that backup into the standby (another instance, another
   region), timing both.
3. Verifies the standby is equivalent entity by entity: every entity's properties are hashed on
   both sides through the management API — subscription keys (listSecrets) and named values
   (listValue) included — and only the hashes are compared; no secret is printed.
4. Sends sample traffic through the standby's gateway with the primary's subscription keys, when
   the standby has a gateway that answers (`--standby-gateway`, or its `gatewayUrl`); otherwise
   reports "gateway: not available" and why.
5. Reports RPO (age of the primary's last recovery point before the drill; the drill backup's
   snapshot age when the restore completed) and RTO (backup time, restore time, time from the end
   of the restore to the first successful request) as a table, or JSON with `--json`.

Exit code 0 when the standby is equivalent and (if a gateway was available) a request succeeded.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import typer
from rich.table import Table

from portico.cli.client import TENANT, Endpoint, arm_error, console, err, fail

drill_cli = typer.Typer(
    help="Failover drill: back up the primary, restore into the standby, verify, measure RPO/RTO."
)

COLLECTIONS = [
    "apis",
    "products",
    "groups",
    "users",
    "subscriptions",
    "namedValues",
    "backends",
    "tags",
    "apiVersionSets",
    "policies",
]
CHILDREN = {
    "apis": ["operations", "policies", "schemas", "tags"],
    "products": ["apis", "groups", "policies", "tags"],
    "groups": ["users"],
}
GRANDCHILDREN = {("apis", "operations"): ["policies", "tags"]}
SERVICE_FIELDS = ("publisherEmail", "publisherName", "notificationSenderEmail", "apiVersionConstraint")
MAX_AUTO_PROBES = 5


class DrillError(Exception):
    pass


@dataclass
class Side:
    ep: Endpoint
    service: str
    api_version: str
    http: httpx.Client

    @property
    def base(self) -> str:
        return self.ep.service_url(self.service)

    def call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        params = kw.pop("params", None) or {}
        if "api-version=" not in url:
            params.setdefault("api-version", self.api_version)
        return self.http.request(method, url, params=params, **kw)


def _check(resp: httpx.Response, what: str) -> httpx.Response:
    if resp.status_code >= 400:
        raise DrillError(f"{what}: {arm_error(resp)}")
    return resp


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def run_operation(side: Side, action: str, body: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """POST backup/restore and wait; returns the final operation status resource."""
    resp = _check(side.call("POST", f"{side.base}/{action}", json=body), f"{action} of '{side.service}'")
    if resp.status_code == 200:
        return {"status": "Succeeded", "properties": {}}
    status_url = resp.headers.get("azure-asyncoperation")
    if not status_url:
        raise DrillError(f"{action} of '{side.service}': the server returned no operation to follow")
    last = ""
    while True:
        st = _check(side.http.get(status_url), f"{action} status")
        doc = st.json()
        if not quiet:
            line = f"{action} {side.service}: {doc.get('status')} {doc.get('percentComplete', 0):.0f}%"
            if line != last:
                err.print(line)
                last = line
        if doc.get("status") in ("Succeeded", "Failed", "Canceled"):
            break
        time.sleep(0.1)
    if doc["status"] != "Succeeded":
        e = doc.get("error") or {}
        raise DrillError(f"{action} of '{side.service}' failed: ({e.get('code')}) {e.get('message')}")
    return dict(doc)


# --- equivalence ---------------------------------------------------------------------------------------
def _list(side: Side, url: str) -> list[dict[str, Any]] | None:
    r = side.call("GET", url, params={"$top": "1000"})
    if r.status_code == 404:
        return None  # a collection this server does not have
    _check(r, f"list {url.rsplit('/service/', 1)[-1]}")
    doc = r.json()
    items = list(doc.get("value", []))
    while doc.get("nextLink"):
        doc = _check(side.http.get(doc["nextLink"]), "list (next page)").json()
        items += doc.get("value", [])
    return items


def _relative(value: Any, prefix: str) -> Any:
    """ARM ids of the service made relative (the two services have different names)."""
    text = json.dumps(value, sort_keys=True)
    text = re.sub(re.escape(prefix), "<service>", text, flags=re.IGNORECASE)
    return json.loads(text)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def inventory(side: Side) -> tuple[dict[str, str], dict[str, Any]]:
    """{entity path: sha256 of its properties (+ secrets)} and the material for traffic probes
    (APIs, operations, subscriptions with keys, product APIs) — kept in memory only."""
    base = side.base
    prefix = base.split("/subscriptions/", 1)[1]
    prefix = "/subscriptions/" + prefix
    hashes: dict[str, str] = {}
    material: dict[str, Any] = {"apis": {}, "operations": {}, "subscriptions": {}, "productApis": {}}
    svc = _check(side.call("GET", base), f"read service '{side.service}'").json()
    props = svc.get("properties", {})
    hashes["service"] = _digest(
        {"sku": (svc.get("sku") or {}).get("name"), **{k: props.get(k) for k in SERVICE_FIELDS}}
    )
    material["gatewayUrl"] = props.get("gatewayUrl")
    material["hostnames"] = [
        h.get("hostName") for h in props.get("hostnameConfigurations") or [] if h.get("type") == "Proxy"
    ]
    for coll in COLLECTIONS:
        items = _list(side, f"{base}/{coll}")
        for item in items or []:
            path = f"{coll}/{item['name']}"
            value: dict[str, Any] = {"properties": _relative(item.get("properties", {}), prefix)}
            if coll == "apis":
                material["apis"][item["name"]] = value["properties"]
            if coll == "subscriptions":
                secrets = _check(
                    side.call("POST", f"{base}/{path}/listSecrets"), f"listSecrets {path}"
                ).json()
                value["keys"] = [secrets.get("primaryKey"), secrets.get("secondaryKey")]
                material["subscriptions"][item["name"]] = {**value["properties"], "_keys": value["keys"]}
            if coll == "namedValues":
                v = side.call("POST", f"{base}/{path}/listValue")
                value["value"] = _check(v, f"listValue {path}").json().get("value")
            hashes[path] = _digest(value)
            for child in CHILDREN.get(coll, []):
                for sub in _list(side, f"{base}/{path}/{child}") or []:
                    cpath = f"{path}/{child}/{sub['name']}"
                    cprops = _relative(sub.get("properties", {}), prefix)
                    hashes[cpath] = _digest(cprops)
                    if (coll, child) == ("apis", "operations"):
                        material["operations"].setdefault(item["name"], []).append(cprops)
                    if (coll, child) == ("products", "apis"):
                        material["productApis"].setdefault(item["name"], []).append(sub["name"])
                    for grand in GRANDCHILDREN.get((coll, child), []):
                        for g in _list(side, f"{base}/{cpath}/{grand}") or []:
                            hashes[f"{cpath}/{grand}/{g['name']}"] = _digest(
                                _relative(g.get("properties", {}), prefix)
                            )
    return hashes, material


def compare(primary: dict[str, str], standby: dict[str, str]) -> dict[str, Any]:
    missing = sorted(set(primary) - set(standby))
    extra = sorted(set(standby) - set(primary))
    differ = sorted(k for k in set(primary) & set(standby) if primary[k] != standby[k])
    by_kind: dict[str, dict[str, int]] = {}
    for path in set(primary) | set(standby):
        parts = path.split("/")
        kind = "/".join(parts[0::2]) if len(parts) > 1 else parts[0]
        c = by_kind.setdefault(kind, {"primary": 0, "standby": 0, "equal": 0})
        c["primary"] += path in primary
        c["standby"] += path in standby
        c["equal"] += path in primary and path in standby and primary[path] == standby[path]
    return {
        "equivalent": not (missing or extra or differ),
        "entities": len(primary),
        "byKind": dict(sorted(by_kind.items())),
        "missingOnStandby": missing[:100],
        "extraOnStandby": extra[:100],
        "different": differ[:100],
    }


# --- traffic --------------------------------------------------------------------------------------------
def _rel_scope(scope: str) -> str:
    if scope.startswith("<service>"):
        return scope[len("<service>") :].rstrip("/")
    m = re.search(r"/service/[^/]+(/.*)$", scope or "", flags=re.IGNORECASE)
    return (m.group(1) if m else scope or "").rstrip("/")


def plan_probes(material: dict[str, Any], paths: list[str]) -> list[dict[str, Any]]:
    """(path, api, key) for each probe; keys come from the primary's active subscriptions."""
    apis: dict[str, Any] = material["apis"]
    subs = [s for s in material["subscriptions"].values() if s.get("state", "active") == "active"]

    def key_for(api: str | None) -> str | None:
        for s in subs:
            scope = _rel_scope(s.get("scope", ""))
            if scope == "/apis" or (api and scope.lower() == f"/apis/{api}".lower()):
                return str(s["_keys"][0])
            if api and scope.lower().startswith("/products/"):
                product = scope.split("/", 2)[2]
                if api in material["productApis"].get(product, []):
                    return str(s["_keys"][0])
        return None

    def api_of(path: str) -> str | None:
        best = None
        for name, p in apis.items():
            ap = "/" + str(p.get("path") or "").strip("/")
            if (path == ap or path.startswith(ap.rstrip("/") + "/")) and (
                best is None or len(ap) > len("/" + str(apis[best].get("path") or "").strip("/"))
            ):
                best = name
        return best

    if not paths:
        for name, p in sorted(apis.items()):
            for op in material["operations"].get(name, []):
                template = str(op.get("urlTemplate") or "/")
                if str(op.get("method", "")).upper() == "GET" and "{" not in template and "*" not in template:
                    paths.append(
                        "/"
                        + "/".join(x for x in (str(p.get("path") or "").strip("/"), template.strip("/")) if x)
                    )
                    break
            if len(paths) >= MAX_AUTO_PROBES:
                break
    out = []
    for path in paths:
        api = api_of(path)
        needs_key = api is None or apis[api].get("subscriptionRequired", True)
        out.append({"path": path, "api": api, "key": key_for(api) if needs_key else None})
    return out


def send_traffic(
    gateway: str | None,
    host: str | None,
    verify: Any,
    probes: list[dict[str, Any]],
    restored_at: float,
    timeout: float,
) -> dict[str, Any]:
    if not probes:
        return {
            "available": None,
            "reason": "no probe: the service has no GET operation without parameters (give --probe PATH)",
            "probes": [],
        }
    if not gateway:
        return {
            "available": False,
            "reason": "gateway: not available (the standby service has no gatewayUrl; give --standby-gateway URL)",
            "probes": [],
        }
    headers = {"Host": host} if host else {}
    results: list[dict[str, Any]] = []
    first_ok: float | None = None
    with httpx.Client(verify=verify, timeout=5) as client:
        try:
            client.get(gateway.rstrip("/") + "/", headers=headers)
        except httpx.HTTPError as exc:
            return {
                "available": False,
                "reason": f"gateway: not available ({gateway} does not answer: {type(exc).__name__})",
                "probes": [],
            }
        for probe in probes:
            deadline = time.monotonic() + timeout
            attempts = 0
            status = 0
            while True:
                attempts += 1
                h = dict(headers)
                if probe["key"]:
                    h["Ocp-Apim-Subscription-Key"] = probe["key"]
                try:
                    status = client.get(gateway.rstrip("/") + probe["path"], headers=h).status_code
                except httpx.HTTPError:
                    status = 0
                if 200 <= status < 400 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            ok = 200 <= status < 400
            now = time.monotonic()
            if ok and first_ok is None:
                first_ok = now
            results.append(
                {
                    "path": probe["path"],
                    "api": probe["api"],
                    "withKey": bool(probe["key"]),
                    "status": status,
                    "ok": ok,
                    "keyAccepted": status not in (0, 401, 403),
                    "attempts": attempts,
                }
            )
    return {
        "available": True,
        "gateway": gateway,
        "host": host,
        "probes": results,
        "succeeded": sum(r["ok"] for r in results),
        "firstSuccessSeconds": round(first_ok - restored_at, 3) if first_ok is not None else None,
    }


# --- the command -------------------------------------------------------------------------------------------
@drill_cli.callback(invoke_without_command=True)
def drill(
    primary_url: str = typer.Option(
        ..., "--primary-url", envvar="PORTICO_PRIMARY_URL", help="Primary's management endpoint."
    ),
    primary_service: str = typer.Option(..., "--primary-service", help="Service to back up on the primary."),
    primary_ca: str = typer.Option(
        None, "--primary-ca", envvar="PORTICO_PRIMARY_CA", help="CA certificate of the primary."
    ),
    primary_client_id: str = typer.Option(
        None,
        "--primary-client-id",
        envvar="PORTICO_PRIMARY_CLIENT_ID",
        help="App on the primary (default --client-id).",
    ),
    primary_client_secret: str = typer.Option(
        None, "--primary-client-secret", envvar="PORTICO_PRIMARY_CLIENT_SECRET"
    ),
    primary_subscription: str = typer.Option(None, "--primary-subscription", help="Default: --subscription."),
    primary_resource_group: str = typer.Option(
        None, "--primary-resource-group", help="Default: --resource-group."
    ),
    standby_url: str = typer.Option(
        ..., "--standby-url", envvar="PORTICO_STANDBY_URL", help="Standby's management endpoint."
    ),
    standby_service: str = typer.Option(
        ..., "--standby-service", help="Service to restore into on the standby."
    ),
    standby_ca: str = typer.Option(
        None, "--standby-ca", envvar="PORTICO_STANDBY_CA", help="CA certificate of the standby."
    ),
    standby_client_id: str = typer.Option(
        None,
        "--standby-client-id",
        envvar="PORTICO_STANDBY_CLIENT_ID",
        help="App on the standby (default --client-id).",
    ),
    standby_client_secret: str = typer.Option(
        None, "--standby-client-secret", envvar="PORTICO_STANDBY_CLIENT_SECRET"
    ),
    standby_subscription: str = typer.Option(None, "--standby-subscription", help="Default: --subscription."),
    standby_resource_group: str = typer.Option(
        None, "--standby-resource-group", help="Default: --resource-group."
    ),
    standby_gateway: str = typer.Option(
        None,
        "--standby-gateway",
        help="Standby gateway address, e.g. https://standby.example:8081 (default: the service's gatewayUrl).",
    ),
    host_header: str = typer.Option(
        None, "--host-header", help="Host header for the gateway (default: the standby's gatewayUrl host)."
    ),
    probe: list[str] = typer.Option(
        None,
        "--probe",
        help="Gateway path to request (repeatable); default: up to 5 GET operations without parameters.",
    ),
    probe_timeout: float = typer.Option(
        10.0, "--probe-timeout", help="Seconds to retry a probe until it succeeds."
    ),
    storage_account: str = typer.Option(
        ..., "--storage-account", help="Storage account both instances reach."
    ),
    container: str = typer.Option(..., "--container", help="Blob container (must exist)."),
    access_key: str = typer.Option(
        None, "--access-key", envvar="PORTICO_STORAGE_KEY", help="Storage account key."
    ),
    access_type: str = typer.Option("AccessKey", "--access-type"),
    identity_client_id: str = typer.Option(None, "--identity-client-id"),
    encryption_key: str = typer.Option(None, "--encryption-key", envvar="PORTICO_BACKUP_KEY"),
    name: str = typer.Option(None, "--name", help="Backup name (default drill/<primary>-<UTC time>)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    tenant: str = TENANT,
    client_id: str = typer.Option(
        None, "--client-id", envvar="AZURE_CLIENT_ID", help="App used on both sides unless overridden."
    ),
    client_secret: str = typer.Option(None, "--client-secret", envvar="AZURE_CLIENT_SECRET"),
    subscription: str = typer.Option(None, "--subscription", "-s", envvar="PORTICO_SUBSCRIPTION"),
    resource_group: str = typer.Option(None, "--resource-group", "-g", envvar="PORTICO_RESOURCE_GROUP"),
    api_version: str = typer.Option("2024-05-01", "--api-version"),
) -> None:
    """Back up the primary, restore into the standby, verify entity by entity, probe the gateway,
    report RPO and RTO."""

    def need(value: str | None, opt: str) -> str:
        if not value:
            fail(f"missing {opt}", 2)
        return str(value)

    p_ep = Endpoint(
        primary_url,
        tenant,
        need(primary_client_id or client_id, "--primary-client-id or --client-id"),
        need(primary_client_secret or client_secret, "--primary-client-secret or --client-secret"),
        primary_ca,
        need(primary_subscription or subscription, "--primary-subscription or --subscription"),
        need(primary_resource_group or resource_group, "--primary-resource-group or --resource-group"),
    )
    s_ep = Endpoint(
        standby_url,
        tenant,
        need(standby_client_id or client_id, "--standby-client-id or --client-id"),
        need(standby_client_secret or client_secret, "--standby-client-secret or --client-secret"),
        standby_ca,
        need(standby_subscription or subscription, "--standby-subscription or --subscription"),
        need(standby_resource_group or resource_group, "--standby-resource-group or --resource-group"),
    )
    started = datetime.now(UTC)
    backup_name = name or f"drill/{primary_service}-{started.strftime('%Y%m%dT%H%M%SZ')}"
    body: dict[str, Any] = {
        "storageAccount": storage_account,
        "containerName": container,
        "accessType": access_type,
        "backupName": backup_name,
    }
    if access_key:
        body["accessKey"] = access_key
    if identity_client_id:
        body["clientId"] = identity_client_id
    if encryption_key:
        body["encryptionKey"] = encryption_key
    with p_ep.client() as ph, s_ep.client() as sh:
        primary = Side(p_ep, primary_service, api_version, ph)
        standby = Side(s_ep, standby_service, api_version, sh)
        try:
            report = _drill(
                primary,
                standby,
                body,
                started,
                standby_gateway,
                host_header,
                list(probe or []),
                probe_timeout,
                as_json,
            )
        except DrillError as exc:
            fail(str(exc))
            return
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    traffic = report["traffic"]
    if not report["verification"]["equivalent"] or (
        traffic.get("available") and not traffic.get("succeeded")
    ):
        raise typer.Exit(1)


def _drill(
    primary: Side,
    standby: Side,
    body: dict[str, Any],
    started: datetime,
    gateway: str | None,
    host: str | None,
    probes: list[str],
    probe_timeout: float,
    quiet: bool,
) -> dict[str, Any]:
    rpo_before: float | None = None
    last_before: str | None = None
    st = primary.call("GET", f"{primary.base}/backupStatus")
    if st.status_code == 200:
        last = st.json()["properties"].get("lastSuccess")
        if last and last.get("recoveryPoint"):
            last_before = last["recoveryPoint"]
            rp = _parse(last_before)
            assert rp is not None
            rpo_before = round((started - rp).total_seconds(), 3)
    t0 = time.monotonic()
    backup_op = run_operation(primary, "backup", body, quiet)
    t1 = time.monotonic()
    restore_op = run_operation(standby, "restore", body, quiet)
    t2 = time.monotonic()
    restored_wall = datetime.now(UTC)
    snapshot: datetime | None = None
    lb = standby.call("POST", f"{standby.base}/listBackups", json={**body, "prefix": body["backupName"]})
    if lb.status_code == 200:
        entry = next((e for e in lb.json().get("value", []) if e.get("name") == body["backupName"]), None)
        snapshot = _parse(entry.get("snapshotTime")) if entry else None
    if snapshot is None:
        snapshot = _parse(backup_op.get("startTime"))
    if not quiet:
        err.print("verifying entities on both sides ...")
    p_hashes, material = inventory(primary)
    s_hashes, s_material = inventory(standby)
    verification = compare(p_hashes, s_hashes)
    plan = plan_probes(material, probes)
    gw = gateway or s_material.get("gatewayUrl")
    host_name = host or (
        re.sub(r"^https?://", "", s_material["gatewayUrl"]).split("/")[0].split(":")[0]
        if s_material.get("gatewayUrl")
        else None
    )
    verify: Any = ssl.create_default_context(cafile=standby.ep.ca) if standby.ep.ca else True
    traffic = send_traffic(gw, host_name, verify, plan, t2, probe_timeout)
    first = traffic.get("firstSuccessSeconds")
    return {
        "primary": {"url": primary.ep.url, "service": primary.service},
        "standby": {"url": standby.ep.url, "service": standby.service},
        "backup": {
            "name": body["backupName"],
            "storageAccount": body["storageAccount"],
            "containerName": body["containerName"],
            "snapshotTime": _iso(snapshot) if snapshot else None,
            "operationId": backup_op.get("name"),
        },
        "restore": {"operationId": restore_op.get("name"), "completedTime": _iso(restored_wall)},
        "rpo": {
            "lastRecoveryPointBeforeDrill": last_before,
            "sinceLastBackupBeforeDrillSeconds": rpo_before,
            "snapshotAgeAtRestoreSeconds": round((restored_wall - snapshot).total_seconds(), 3)
            if snapshot
            else None,
        },
        "rto": {
            "backupSeconds": round(t1 - t0, 3),
            "restoreSeconds": round(t2 - t1, 3),
            "firstSuccessfulRequestSeconds": first,
            "failoverSeconds": round(t2 - t1 + first, 3) if first is not None else None,
        },
        "verification": verification,
        "traffic": traffic,
    }


def _secs(v: float | None, none: str = "-") -> str:
    return none if v is None else f"{v:.3f} s"


def _print(r: dict[str, Any]) -> None:
    t = Table(
        "measure", "value", title=f"failover drill {r['primary']['service']} → {r['standby']['service']}"
    )
    rpo, rto, v, tr = r["rpo"], r["rto"], r["verification"], r["traffic"]
    t.add_row(
        "RPO: since the primary's last backup (before the drill)",
        _secs(rpo["sinceLastBackupBeforeDrillSeconds"], "no earlier backup"),
    )
    t.add_row("RPO: drill snapshot age when the restore completed", _secs(rpo["snapshotAgeAtRestoreSeconds"]))
    t.add_row("RTO: backup time", _secs(rto["backupSeconds"]))
    t.add_row("RTO: restore time", _secs(rto["restoreSeconds"]))
    t.add_row("RTO: restore end → first successful request", _secs(rto["firstSuccessfulRequestSeconds"]))
    t.add_row("RTO: failover (restore + first request)", _secs(rto["failoverSeconds"]))
    verdict = "[green]equivalent[/]" if v["equivalent"] else "[red]DIFFERENT[/]"
    t.add_row("verification", f"{verdict}: {v['entities']} entities hashed on both sides")
    if tr.get("available"):
        t.add_row(
            "gateway traffic",
            f"{tr['succeeded']}/{len(tr['probes'])} probes succeeded via {tr['gateway']} (Host {tr['host']})",
        )
    else:
        t.add_row("gateway traffic", str(tr.get("reason")))
    t.add_row(
        "backup", f"{r['backup']['storageAccount']}/{r['backup']['containerName']}/{r['backup']['name']}"
    )
    console.print(t)
    if not v["equivalent"]:
        for label in ("missingOnStandby", "extraOnStandby", "different"):
            if v[label]:
                console.print(f"[red]{label}[/]: " + ", ".join(v[label][:20]))
    for p in tr.get("probes", []):
        mark = "[green]ok[/]" if p["ok"] else "[red]failed[/]"
        console.print(
            f"  probe GET {p['path']} → {p['status']} {mark} ({p['attempts']} attempts, key {'sent' if p['withKey'] else 'none'})"
        )
