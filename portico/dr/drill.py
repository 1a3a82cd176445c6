"""A measured failover drill between two Portico instances, over their management APIs.

1. Reads the primary's backup status (RPO before the drill: age of its newest recovery point).
2. Backs the primary up, then restores that backup into the standby (another instance, another
   region), timing both.
3. Verifies the standby is equivalent entity by entity: every entity's properties are hashed on
   both sides through the management API — subscription keys (listSecrets) and named values
   (listValue) included — and only the hashes are compared; no secret is kept in the report.
4. Sends sample traffic through the standby's gateway with the primary's subscription keys, when
   the standby has a gateway that answers (given, or its `gatewayUrl`); otherwise reports
   "gateway: not available" and why.
5. Reports RPO (age of the primary's last recovery point before the drill; the drill backup's
   snapshot age when the restore completed) and RTO (backup time, restore time, time from the end
   of the restore to the first successful request).

`COLLECTIONS`, `CHILDREN` and `GRANDCHILDREN` are the entity tables compared: the service's
collections, their child collections, and the children of those children.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

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
    """A step of the drill failed; the message says which and why."""


Progress = Callable[[str], None]
"""Receives one line per change of a step's state."""


class Response(Protocol):
    """What the drill reads of an HTTP answer (an `httpx.Response` is one)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


class ManagementHttp(Protocol):
    """An authenticated HTTP client of one management endpoint (an `httpx.Client` with a bearer
    token is one)."""

    def request(
        self, method: str, url: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> Response: ...

    def get(self, url: str) -> Response: ...


@dataclass
class Side:
    """One instance of the drill: its management endpoint and the service on it."""

    http: ManagementHttp
    url: str
    """The management endpoint (reported)."""
    base: str
    """The service's URL: {url}/subscriptions/.../service/{service}."""
    service: str
    api_version: str
    ca: str | None = None
    """CA certificate of the instance's TLS (also trusted for its gateway)."""

    def call(
        self, method: str, url: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> Response:
        params = dict(params or {})
        if "api-version=" not in url:
            params.setdefault("api-version", self.api_version)
        return self.http.request(method, url, params=params, json=json)


def arm_error(resp: Response) -> str:
    try:
        e = resp.json()["error"]
        return f"({e.get('code')}) {e.get('message')}"
    except Exception:
        return f"HTTP {resp.status_code}"


def _check(resp: Response, what: str) -> Response:
    if resp.status_code >= 400:
        raise DrillError(f"{what}: {arm_error(resp)}")
    return resp


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def run_operation(side: Side, action: str, body: dict[str, Any], progress: Progress | None) -> dict[str, Any]:
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
        if progress is not None:
            line = f"{action} {side.service}: {doc.get('status')} {doc.get('percentComplete', 0):.0f}%"
            if line != last:
                progress(line)
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


def _without_read_status(props: dict[str, Any]) -> dict[str, Any]:
    """Properties without `keyVault.lastStatus`: when a node last read a Key Vault secret is its
    own state, not configuration a standby must share."""
    kv = props.get("keyVault")
    if not isinstance(kv, dict) or "lastStatus" not in kv:
        return props
    return {**props, "keyVault": {k: v for k, v in kv.items() if k != "lastStatus"}}


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
            value: dict[str, Any] = {
                "properties": _without_read_status(_relative(item.get("properties", {}), prefix))
            }
            if coll == "apis":
                material["apis"][item["name"]] = value["properties"]
            if coll == "subscriptions":
                secrets = _check(
                    side.call("POST", f"{base}/{path}/listSecrets"), f"listSecrets {path}"
                ).json()
                value["keys"] = [secrets.get("primaryKey"), secrets.get("secondaryKey")]
                material["subscriptions"][item["name"]] = {**value["properties"], "_keys": value["keys"]}
            # a Key Vault named value's value is the vault's (read again by the standby): its
            # reference is what the standby must have
            if coll == "namedValues" and not value["properties"].get("keyVault"):
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


def run_drill(
    primary: Side,
    standby: Side,
    body: dict[str, Any],
    started: datetime,
    gateway: str | None,
    host: str | None,
    probes: list[str],
    probe_timeout: float,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Back up `primary` with the backup/restore `body`, restore into `standby`, compare both
    entity by entity, probe the standby's gateway; the report (see the module's description).
    Raises `DrillError` when a step fails."""
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
    backup_op = run_operation(primary, "backup", body, progress)
    t1 = time.monotonic()
    restore_op = run_operation(standby, "restore", body, progress)
    t2 = time.monotonic()
    restored_wall = datetime.now(UTC)
    snapshot: datetime | None = None
    lb = standby.call("POST", f"{standby.base}/listBackups", json={**body, "prefix": body["backupName"]})
    if lb.status_code == 200:
        entry = next((e for e in lb.json().get("value", []) if e.get("name") == body["backupName"]), None)
        snapshot = _parse(entry.get("snapshotTime")) if entry else None
    if snapshot is None:
        snapshot = _parse(backup_op.get("startTime"))
    if progress is not None:
        progress("verifying entities on both sides ...")
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
    verify: Any = ssl.create_default_context(cafile=standby.ca) if standby.ca else True
    traffic = send_traffic(gw, host_name, verify, plan, t2, probe_timeout)
    first = traffic.get("firstSuccessSeconds")
    return {
        "primary": {"url": primary.url, "service": primary.service},
        "standby": {"url": standby.url, "service": standby.service},
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
