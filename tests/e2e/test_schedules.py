"""Backup schedules end to end: real servers over HTTPS, Azurite, a controllable scheduler clock
(PORTICO_SCHEDULER_CLOCK_FILE) and a 0.2 s tick — no long sleeps."""

from __future__ import annotations

import base64
import os
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from tests.e2e.dr_support import Rest, seed_bulk
from tests.e2e.sched_support import (
    API,
    Schedules,
    container,
    metric,
    parse_metrics,
    parse_time,
    sched_env,
    set_clock,
    wait_for,
)
from tests.support.azurite import AzuriteServer
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow
CONTAINER = "schedules"
_n = iter(range(10_000))


def uniq(prefix: str) -> str:
    return f"{prefix}{next(_n)}{os.getpid() % 1000}"


@pytest.fixture(scope="module")
def storage(azurite: AzuriteServer) -> Iterator[tuple[str, str, BlobServiceClient]]:
    account, key, client = container(azurite, CONTAINER)
    yield account, key, client
    client.close()


@pytest.fixture(scope="module")
def server(
    server_factory: Callable[..., PorticoServer],
    azurite: AzuriteServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PorticoServer]:
    data_dir = tmp_path_factory.mktemp("sched")
    server = server_factory(db="sqlite", env=sched_env(azurite, data_dir), data_dir=data_dir)
    yield server
    server.stop()  # its scheduler ticks fast: do not leave it running for the rest of the session


@pytest.fixture
def svc(server: PorticoServer) -> Iterator[Schedules]:
    rest = Rest(server)
    name = uniq("sch")
    rest.service("rg-s", name)
    s = Schedules(rest, "rg-s", name)
    yield s
    for item in rest.http.get(s.url("backupSchedules"), params={"api-version": API}).json().get("value", []):
        s.delete(item["name"])
    set_clock(server, None)
    rest.http.close()


def props(account: str, key: str | None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cron": "0 3 * * *",
        "timeZone": "Europe/Paris",
        "storageAccount": account,
        "containerName": CONTAINER,
        "namePrefix": "nightly/",
    }
    if key is not None:
        out["accessKey"] = key
    out.update(kw)
    return out


def blobs(client: BlobServiceClient, prefix: str) -> list[str]:
    return sorted(b.name for b in client.get_container_client(CONTAINER).list_blobs(name_starts_with=prefix))


# --- the resource ------------------------------------------------------------------------------------------
def test_crud_secret_handling_and_service_deletion(
    server: PorticoServer, svc: Schedules, storage: Any
) -> None:
    account, key, _ = storage
    r = svc.put("nightly", props(account, key, retention={"keepLast": 7, "keepDays": 14}))
    assert r.status_code == 201 and r.headers["etag"]
    body = r.json()
    assert body["name"] == "nightly" and body["type"] == "Microsoft.ApiManagement/service/backupSchedules"
    assert body["id"].endswith(f"/service/{svc.service}/backupSchedules/nightly")
    p = body["properties"]
    assert p["hasAccessKey"] is True and "accessKey" not in p and key not in r.text
    assert p["retention"] == {"keepLast": 7, "keepDays": 14} and p["enabled"] is True
    # 03:00 in Paris, in UTC, strictly in the future
    nxt = parse_time(p["nextRun"])
    assert (
        nxt > datetime.now(UTC) and nxt.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris")).hour == 3
    )
    # a replacement without a key keeps the stored one (same account); names are case-insensitive
    r = svc.put("NIGHTLY", props(account, None, cron="30 2 * * 1-5"))
    assert r.status_code == 200 and r.json()["name"] == "nightly" and r.json()["properties"]["hasAccessKey"]
    listed = svc.rest.http.get(svc.url("backupSchedules"), params={"api-version": API}).json()
    assert [i["name"] for i in listed["value"]] == ["nightly"] and key not in str(listed)
    # managed identity: no key stored
    svc.rest.call("PATCH", svc.rest.svc(svc.rg, svc.service), {"identity": {"type": "SystemAssigned"}})
    r = svc.put("mi", props(account, None, accessType="SystemAssignedManagedIdentity"))
    assert r.json()["properties"]["hasAccessKey"] is False
    # the key is sealed in the database and the server key file is private
    db_bytes = (server.data_dir / "portico.db").read_bytes() + (
        (server.data_dir / "portico.db-wal").read_bytes()
        if (server.data_dir / "portico.db-wal").exists()
        else b""
    )
    assert key.encode() not in db_bytes
    assert stat.S_IMODE(os.stat(server.data_dir / "secret.key").st_mode) == 0o600
    assert svc.delete("mi") == 200 and svc.delete("mi") == 204
    r = svc.rest.http.get(svc.url("backupSchedules/mi"), params={"api-version": API})
    assert r.status_code == 404 and "'mi' was not found" in r.json()["error"]["message"]
    # deleting the service removes its schedules (a new service of that name has none)
    svc.rest.call("DELETE", svc.rest.svc(svc.rg, svc.service))
    purge = f"providers/Microsoft.ApiManagement/locations/westeurope/deletedservices/{svc.service}"
    svc.rest.call("DELETE", svc.rest.url(purge))  # soft-deleted: purge frees the name
    svc.rest.service(svc.rg, svc.service)
    wait_for(
        lambda: (
            svc.rest.http.get(svc.url("backupSchedules"), params={"api-version": API}).json()["value"] == []
        ),
        timeout=5,
    )
    assert key not in server.log_path.read_text()


def test_patch_changes_only_what_it_names(server: PorticoServer, svc: Schedules, storage: Any) -> None:
    account, key, _ = storage
    created = svc.put("weekly", props(account, key, retention={"keepLast": 7, "keepDays": 14}))
    etag = created.headers["etag"]
    before = created.json()["properties"]
    # a JSON merge patch: the cron and one retention field change, the rest (the sealed key too) stays
    r = svc.patch("weekly", {"cron": "0 4 * * 0", "retention": {"keepDays": None}}, etag=etag)
    assert r.status_code == 200, r.text
    p = r.json()["properties"]
    assert p["cron"] == "0 4 * * 0" and p["retention"] == {"keepLast": 7}
    assert (p["timeZone"], p["namePrefix"], p["hasAccessKey"]) == ("Europe/Paris", "nightly/", True)
    assert p["nextRun"] != before["nextRun"] and r.headers["etag"] != etag
    assert key not in r.text
    # disabling keeps everything else and clears the next run; '*' matches any state
    r = svc.patch("weekly", {"enabled": False}, etag="*")
    assert r.status_code == 200 and r.json()["properties"]["enabled"] is False
    assert r.json()["properties"]["nextRun"] is None and svc.get("weekly")["cron"] == "0 4 * * 0"
    # a stale ETag is refused and changes nothing
    r = svc.patch("weekly", {"enabled": True}, etag=etag)
    assert r.status_code == 412 and r.json()["error"]["code"] == "PreconditionFailed"
    assert svc.get("weekly")["enabled"] is False
    # the merged body is validated like a PUT body
    r = svc.patch("weekly", {"cron": "every day"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "ValidationError"
    r = svc.patch("weekly", {"colour": "red"})
    assert r.status_code == 400 and "unknown property" in r.json()["error"]["message"]
    r = svc.rest.http.patch(svc.url("backupSchedules/weekly"), params={"api-version": API}, json=[1])
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidRequestContent"
    # there is nothing to patch in a schedule that does not exist
    r = svc.patch("nosuch", {"enabled": False})
    assert r.status_code == 404 and "'nosuch' was not found" in r.json()["error"]["message"]
    assert svc.delete("weekly") == 200


@pytest.mark.parametrize(
    ("change", "target", "fragment"),
    [
        ({"cron": "61 * * * *"}, "cron", "not a valid cron expression"),
        ({"cron": "* * * *"}, "cron", "not a 5-field cron expression"),
        ({"cron": "0 0 * * * *"}, "cron", "not a 5-field cron expression"),
        ({"cron": "0 0 30 2 *"}, "cron", "not a valid cron expression"),
        ({"cron": None}, "cron", "is required"),
        ({"timeZone": "Mars/Olympus"}, "timeZone", "unknown time zone 'Mars/Olympus'"),
        (
            {"retention": {"keepDays": 31}},
            "retention.keepDays",
            "longer than the backup validity period (30 days)",
        ),
        ({"retention": {"keepLast": 0}}, "retention.keepLast", "integer from 1"),
        ({"retention": {"keep": 3}}, "retention.keep", "unknown field"),
        ({"accessKey": None}, "accessKey", "is required with accessType AccessKey"),
        ({"accessType": "SystemAssignedManagedIdentity"}, "accessKey", "must not be sent"),
        ({"accessType": "Magic"}, "accessType", "not one of"),
        ({"storageAccount": "Bad_Account"}, "storageAccount", "not a storage account name"),
        ({"containerName": "x"}, "containerName", "not a container name"),
        ({"namePrefix": "../up/"}, "namePrefix", "not a valid blob name prefix"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"encryptionKey": "short"}, "encryptionKey", "base64"),
        ({"colour": "blue"}, "colour", "unknown property"),
    ],
)
def test_bad_inputs_get_clear_400s(
    svc: Schedules, storage: Any, change: dict[str, Any], target: str, fragment: str
) -> None:
    account, key, _ = storage
    body = props(account, key, **change)
    body = {k: v for k, v in body.items() if v is not None}
    r = svc.put("bad", body, expect=(400,))
    e = r.json()["error"]
    assert e["target"] == target and fragment in e["message"], e
    assert key not in r.text


def test_bad_schedule_name_and_unknown_service(svc: Schedules, storage: Any) -> None:
    account, key, _ = storage
    r = svc.put("-bad-", props(account, key), expect=(400,))
    assert "Schedule name '-bad-' is invalid" in r.json()["error"]["message"]
    other = Schedules(svc.rest, svc.rg, "nosuchservice")
    r = other.put("x", props(account, key), expect=(404,))
    assert r.json()["error"]["code"] == "ResourceNotFound"


# --- firing ---------------------------------------------------------------------------------------------------
def test_fires_on_time_with_controllable_clock(server: PorticoServer, svc: Schedules, storage: Any) -> None:
    account, key, client = storage
    p = svc.put("nightly", props(account, key)).json()["properties"]
    due = parse_time(p["nextRun"])
    set_clock(server, due - timedelta(seconds=3))
    import time

    time.sleep(1.0)  # five ticks before the time: nothing runs
    assert svc.get("nightly")["runs"] == []
    set_clock(server, due + timedelta(seconds=0.3))
    [run] = svc.wait_run("nightly", 1)
    assert run["status"] == "Succeeded" and run["trigger"] == "Schedule", run
    assert parse_time(run["scheduledTime"]) == due
    assert abs((parse_time(run["time"]) - due).total_seconds()) < 5
    assert run["backupName"].startswith(f"nightly/{svc.service}-{due.strftime('%Y%m%dT%H%M')}")
    assert blobs(client, f"nightly/{svc.service}-") == [run["backupName"]]
    after = svc.get("nightly")
    assert parse_time(after["nextRun"]) == due + timedelta(days=1)
    assert after["lastRun"]["runId"] == run["runId"] and after["running"] is None
    # the operation is an ordinary backup operation with a status resource
    st = svc.rest.http.get(
        svc.url(f"operationstatuses/{run['operationId']}"), params={"api-version": API}
    ).json()
    assert st["status"] == "Succeeded" and st["properties"]["backupName"] == run["backupName"]
    status = svc.status()
    assert (
        status["lastSuccess"]["schedule"] == "nightly"
        and status["lastSuccess"]["backupName"] == run["backupName"]
    )
    assert status["nextScheduledRun"] == {"time": after["nextRun"], "schedule": "nightly"}


def test_disabled_schedule_does_not_fire(server: PorticoServer, svc: Schedules, storage: Any) -> None:
    account, key, _ = storage
    p = svc.put("off", props(account, key, cron="*/5 * * * *", enabled=False)).json()["properties"]
    assert p["nextRun"] is None
    set_clock(server, datetime.now(UTC) + timedelta(hours=2))
    import time

    time.sleep(0.8)
    assert svc.get("off")["runs"] == []


def test_run_now_and_overlap_prevention(server: PorticoServer, svc: Schedules, storage: Any) -> None:
    """A run while the previous one is in progress: run-now gets 409, a scheduled time is skipped
    and recorded."""
    account, key, _ = storage
    seed_bulk(server, svc.service, 2000, 1)
    p = svc.put("busy", props(account, key, cron="*/10 * * * *")).json()["properties"]
    due = parse_time(p["nextRun"])
    hold = server.data_dir / "hold-backups"
    hold.touch()  # the run-now's backup holds mid-way until the file goes (PORTICO_PAUSEPOINTS)
    try:
        first = svc.run_now("busy")
        assert (
            first.headers["location"].startswith("https://")
            and "/operationresults/" in first.headers["location"]
        )
        set_clock(server, due + timedelta(seconds=0.2))  # the scheduled time passes during the run
        again = svc.run_now("busy", expect=409)
        assert again.json()["error"]["code"] == "ScheduleRunInProgress"
        deadline = time.monotonic() + 30
        while len([r for r in svc.get("busy")["runs"] if r["status"] == "Skipped"]) < 2:
            assert time.monotonic() < deadline, svc.get("busy")["runs"]
            time.sleep(0.1)
    finally:
        hold.unlink(missing_ok=True)
    runs = svc.wait_run("busy", 3, timeout=60)
    skipped = [r for r in runs if r["status"] == "Skipped"]
    done = [r for r in runs if r["status"] == "Succeeded"]
    assert len(skipped) == 2 and len(done) == 1, runs  # the refused run-now is recorded too
    assert {r["trigger"] for r in skipped} == {"Schedule", "RunNow"}
    assert all(r["error"]["code"] == "PreviousRunInProgress" for r in skipped)
    assert all("still in progress" in r["error"]["message"] for r in skipped)
    assert done[0]["trigger"] == "RunNow" and done[0]["operationId"] in first.headers["location"]
    assert parse_time(svc.get("busy")["nextRun"]) > due
    final = svc.rest.wait(first.headers["location"])
    assert final.status_code == 200


def test_busy_service_skips_the_scheduled_run(server: PorticoServer, svc: Schedules, storage: Any) -> None:
    """A backup or restore of the service running (here: marked, as another node's would be) when
    the schedule fires: the run is skipped and recorded with the reason."""
    import sqlite3

    account, key, _ = storage
    p = svc.put("b", props(account, key, cron="*/10 * * * *")).json()["properties"]
    db = sqlite3.connect(server.data_dir / "portico.db", timeout=30)
    try:
        with db:
            db.execute(
                "UPDATE services SET busy = 'restore:feedc0de' WHERE name_key = ?", (svc.service.lower(),)
            )
        set_clock(server, parse_time(p["nextRun"]) + timedelta(seconds=0.2))
        [run] = svc.wait_run("b", 1, timeout=30)
    finally:
        with db:
            db.execute("UPDATE services SET busy = NULL WHERE name_key = ?", (svc.service.lower(),))
        db.close()
    assert run["status"] == "Skipped" and run["error"]["code"] == "ServiceBusy", run
    assert "already running a restore (operation feedc0de)" in run["error"]["message"]


# --- retention ------------------------------------------------------------------------------------------------
def _age(
    client: BlobServiceClient, name: str, created: datetime | None = None, expires: datetime | None = None
) -> None:
    """Rewrite a backup's catalog times, as if it had been made earlier (or had expired)."""
    blob = client.get_blob_client(CONTAINER, name)
    md = dict(blob.get_blob_properties().metadata)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    if created is not None:
        md["created"] = created.strftime(fmt)
        md["snapshot"] = created.strftime(fmt)
    if expires is not None:
        md["expires"] = expires.strftime(fmt)
    blob.set_blob_metadata(md)


def test_retention_keep_last_keep_days_and_expired(
    server: PorticoServer, svc: Schedules, storage: Any
) -> None:
    account, key, client = storage
    prefix = f"ret{next(_n)}/"
    head = f"{prefix}{svc.service}-"
    # Things retention must never touch: not a Portico backup; a Portico backup of another
    # service under a matching name; a name that is not the schedule's pattern.
    cc = client.get_container_client(CONTAINER)
    cc.upload_blob(f"{head}20200101T000000Z", b"not a backup")
    other = uniq("other")
    svc.rest.service(svc.rg, other)
    body = {"storageAccount": account, "containerName": CONTAINER, "accessKey": key}
    r = svc.rest.call(
        "POST", svc.rest.svc(svc.rg, other, "backup"), {**body, "backupName": f"{head}20200102T000000Z"}
    )
    assert svc.rest.wait(r.headers["location"]).status_code == 200
    r = svc.rest.call("POST", svc.url("backup"), {**body, "backupName": f"{head}manual"})
    assert svc.rest.wait(r.headers["location"]).status_code == 200
    foreign = {f"{head}20200101T000000Z", f"{head}20200102T000000Z", f"{head}manual"}

    svc.put("ret", props(account, key, namePrefix=prefix, retention={"keepLast": 3}))
    made = []
    for i in range(5):
        svc.run_now("ret")
        runs = svc.wait_run("ret", i + 1)
        assert runs[0]["status"] == "Succeeded", runs[0]
        made.append(runs[0]["backupName"])
        assert runs[0]["retention"]["deleted"] == (1 if i >= 3 else 0), runs[0]
    ours = set(blobs(client, head)) - foreign
    assert ours == set(made[-3:])  # the three newest
    assert foreign <= set(blobs(client, head))

    # keepDays: a backup made "3 days ago" goes; expired ones go whatever the policy
    now = datetime.now(UTC)
    _age(client, made[-3], created=now - timedelta(days=3))
    svc.put("ret", props(account, None, namePrefix=prefix, retention={"keepDays": 2}))
    svc.run_now("ret")
    runs = svc.wait_run("ret", 6)
    assert runs[0]["retention"] == {"deleted": 1, "expired": 0, "kept": 3}, runs[0]
    assert made[-3] not in blobs(client, head)
    _age(client, made[-2], expires=now - timedelta(minutes=1))
    svc.put("ret", props(account, None, namePrefix=prefix))  # no retention policy at all
    svc.run_now("ret")
    runs = svc.wait_run("ret", 7)
    assert runs[0]["retention"]["expired"] == 1 and runs[0]["retention"]["deleted"] == 1, runs[0]
    left = set(blobs(client, head))
    assert made[-2] not in left and made[-1] in left and runs[0]["backupName"] in left
    assert foreign <= left


# --- failures -----------------------------------------------------------------------------------------------------
def test_unknown_storage_account_fails_with_clear_error(
    server: PorticoServer, svc: Schedules, storage: Any
) -> None:
    _, key, _ = storage
    svc.put("lost", props("nosuchaccount", key))
    r = svc.run_now("lost")
    final = svc.rest.wait(r.headers["location"])
    assert final.status_code == 400
    [run] = svc.wait_run("lost", 1)
    assert run["status"] == "Failed" and run["error"]["code"] == "BackupFailed"
    assert "storage account 'nosuchaccount' was not found or is unreachable" in run["error"]["message"]
    st = svc.status()
    assert st["lastSuccess"] is None and st["rpoSeconds"] is None
    assert (
        st["lastFailure"]["schedule"] == "lost" and "nosuchaccount" in st["lastFailure"]["error"]["message"]
    )
    assert key not in str(st)


# --- status and metrics ----------------------------------------------------------------------------------------------
def test_status_and_metrics(server: PorticoServer, svc: Schedules, storage: Any) -> None:
    account, key, _ = storage
    ctx = server.ssl_context()

    def scrape() -> dict[Any, float]:
        r = httpx.get(f"{server.url}/metrics", verify=ctx)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse_metrics(r.text)

    m = scrape()
    assert metric(m, "portico_backup_rpo_seconds", service=svc.service) == float("inf")
    assert metric(m, "portico_backup_last_success_timestamp_seconds", service=svc.service) == 0
    st = svc.status()
    assert st["lastSuccess"] is None and st["rpoSeconds"] is None and st["nextScheduledRun"] is None
    before = metric(m, "portico_operations_total", kind="backup", outcome="succeeded") or 0
    r = svc.rest.call(
        "POST",
        svc.url("backup"),
        {
            "storageAccount": account,
            "containerName": CONTAINER,
            "backupName": uniq("status-"),
            "accessKey": key,
        },
    )
    assert svc.rest.wait(r.headers["location"]).status_code == 200
    st = svc.status()
    last = st["lastSuccess"]
    assert last["schedule"] is None and last["operationId"] in r.headers["location"]
    assert parse_time(last["recoveryPoint"]) <= parse_time(last["time"])
    assert 0 <= st["rpoSeconds"] < 30
    p = svc.put("s", props(account, key)).json()["properties"]
    assert svc.status()["nextScheduledRun"]["time"] == p["nextRun"]
    m = scrape()
    ts = metric(m, "portico_backup_last_success_timestamp_seconds", service=svc.service)
    assert ts is not None and abs(ts - parse_time(last["time"]).timestamp()) < 0.01
    rpo = metric(m, "portico_backup_rpo_seconds", service=svc.service, resource_group="rg-s")
    assert rpo is not None and 0 <= rpo < 60
    assert (
        metric(m, "portico_backup_next_run_timestamp_seconds", service=svc.service)
        == parse_time(p["nextRun"]).timestamp()
    )
    assert (metric(m, "portico_operations_total", kind="backup", outcome="succeeded") or 0) >= before + 1
    n = metric(m, "portico_operation_duration_seconds_count", kind="backup", outcome="succeeded")
    inf = metric(
        m, "portico_operation_duration_seconds_bucket", kind="backup", outcome="succeeded", le="+Inf"
    )
    assert n is not None and n == inf and n >= 1
    assert (metric(m, "portico_operation_duration_seconds_sum", kind="backup", outcome="succeeded") or 0) > 0


# --- restarts: missed runs, another server key ------------------------------------------------------------------------
def test_missed_run_runs_once_at_start_and_key_mismatch_is_clear(
    server_factory: Callable[..., PorticoServer],
    azurite: AzuriteServer,
    storage: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    account, key, client = storage
    data_dir = tmp_path_factory.mktemp("missed")
    node = server_factory(db="sqlite", env=sched_env(azurite, data_dir), data_dir=data_dir)
    rest = Rest(node)
    name = uniq("miss")
    rest.service("rg-m", name)
    s = Schedules(rest, "rg-m", name)
    p = s.put("hourly", props(account, key, cron="15 * * * *", timeZone="UTC")).json()["properties"]
    due = parse_time(p["nextRun"])
    node.stop()
    set_clock(node, due + timedelta(hours=5, minutes=2))  # five runs missed while down
    node.start()
    s.rest = Rest(node)
    runs = s.wait_run("hourly", 1)
    import time

    time.sleep(0.6)  # more ticks: still one run
    runs = s.get("hourly")["runs"]
    assert len(runs) == 1 and runs[0]["trigger"] == "Missed" and runs[0]["status"] == "Succeeded", runs
    assert parse_time(runs[0]["scheduledTime"]) == due
    assert parse_time(s.get("hourly")["nextRun"]) == due + timedelta(hours=6)
    assert runs[0]["backupName"] in blobs(client, f"nightly/{name}-")

    # another server secret key: the node refuses to start, saying why (the secrets of the
    # service's entities were sealed with the first key, as the schedule's access key was)
    node.stop()
    node.env["PORTICO_SECRET_KEY"] = base64.b64encode(os.urandom(32)).decode()
    set_clock(node, None)
    with pytest.raises(RuntimeError, match="another server secret key"):
        node.start()
    assert key not in node.log_path.read_text()
    node.stop()


def test_two_nodes_fire_exactly_once(
    server_factory: Callable[..., PorticoServer],
    azurite: AzuriteServer,
    storage: Any,
    pg_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two nodes on one PostgreSQL database, same clock: each due time fires once, on one node."""
    from tests.support.postgres import create_database

    account, key, _ = storage
    url = create_database(pg_url, uniq("sched_"))
    secret = base64.b64encode(os.urandom(32)).decode()
    shared_clock = tmp_path_factory.mktemp("clock")
    nodes = []
    for i in (1, 2):
        d = tmp_path_factory.mktemp(f"node{i}")
        env = sched_env(
            azurite,
            shared_clock,
            PORTICO_NODE_ID=f"node{i}",
            PORTICO_SECRET_KEY=secret,
            PORTICO_SCHEDULER_TICK_SECONDS="0.05",
        )
        nodes.append(server_factory(env=env, database_url=url, data_dir=d))
    (nodes[1].data_dir / "admin-credentials.json").write_text(
        (nodes[0].data_dir / "admin-credentials.json").read_text()
    )
    rest = Rest(nodes[0])
    name = uniq("multi")
    rest.service("rg-p", name)
    s = Schedules(rest, "rg-p", name)
    p = s.put("five", props(account, key, cron="*/5 * * * *", timeZone="UTC")).json()["properties"]
    due = parse_time(p["nextRun"])
    clock = shared_clock / "clock"
    for k in range(3):  # three due times in a row
        offset = (due + timedelta(minutes=5 * k, seconds=0.1) - datetime.now(UTC)).total_seconds()
        clock.write_text(f"{offset:.6f}")
        runs = s.wait_run("five", k + 1, timeout=30)
        assert runs[0]["status"] == "Succeeded", runs[0]
    runs = s.get("five")["runs"]
    assert len(runs) == 3 and len({r["operationId"] for r in runs}) == 3
    assert sorted(parse_time(r["scheduledTime"]) for r in runs) == [
        due + timedelta(minutes=5 * k) for k in range(3)
    ]
    # both nodes answer the same status
    other = Schedules(Rest(nodes[1]), "rg-p", name)
    assert other.status()["lastSuccess"] == s.status()["lastSuccess"]
    for n in nodes:
        n.stop()


def test_schedule_and_status_cli(server: PorticoServer, svc: Schedules, storage: Any, tmp_path: Path) -> None:
    account, key, _ = storage
    creds = server.admin()
    env = {
        **os.environ,
        "PORTICO_URL": server.url,
        "PORTICO_CA": server.ca,
        "AZURE_CLIENT_ID": creds["client_id"],
        "AZURE_CLIENT_SECRET": creds["client_secret"],
        "PORTICO_SUBSCRIPTION": svc.rest.sub,
        "PORTICO_RESOURCE_GROUP": svc.rg,
        "PORTICO_STORAGE_KEY": key,
        "COLUMNS": "200",
    }
    from typer.testing import CliRunner

    from portico.cli.main import app

    runner = CliRunner()

    class Result:
        def __init__(self, stdout: str, stderr: str) -> None:
            self.stdout, self.stderr = stdout, stderr

    def cli(*args: str, ok: bool = True) -> Result:
        # In process (one import for all the commands); the commands are the installed ones.
        r = runner.invoke(app, list(args), env=env)
        assert (r.exit_code == 0) == ok, r.output
        return Result(r.stdout, r.stderr)

    r = cli("schedule", "create", "--service", svc.service, "--name", "cli", "--cron", "0 1 * * *",
            "--time-zone", "Europe/Amsterdam", "--storage-account", account, "--container", CONTAINER,
            "--prefix", "cli/", "--keep-last", "2")  # fmt: skip
    assert "schedule 'cli'" in r.stdout and "created" in r.stdout
    bad = cli("schedule", "create", "--service", svc.service, "--name", "bad", "--cron", "0 25 * * *",
              "--storage-account", account, "--container", CONTAINER, ok=False)  # fmt: skip
    assert "(ValidationError) cron:" in bad.stderr and "Bad hour" in bad.stderr
    assert "cli" in cli("schedule", "list", "--service", svc.service).stdout
    r = cli("schedule", "run-now", "--service", svc.service, "--name", "cli")
    assert f"cli/{svc.service}-" in r.stdout
    svc.wait_run("cli", 1)
    shown = cli("schedule", "show", "--service", svc.service, "--name", "cli").stdout
    assert "Succeeded" in shown and "RunNow" in shown
    st = cli("status", "--service", svc.service).stdout
    assert "schedule cli" in st and "RPO" in st
    latest = cli("status", "--service", svc.service, "--latest-backup").stdout.strip()
    assert latest.startswith(f"cli/{svc.service}-")
    r = cli("schedule", "update", "--service", svc.service, "--name", "cli", "--disable", "--keep-days", "3")
    assert "updated" in r.stdout and "disabled" in r.stdout
    after = svc.get("cli")
    assert after["enabled"] is False and after["retention"] == {"keepLast": 2, "keepDays": 3}
    assert after["cron"] == "0 1 * * *" and after["hasAccessKey"] is True  # the rest is kept
    nothing = cli("schedule", "update", "--service", svc.service, "--name", "cli", ok=False)
    assert "nothing to change" in nothing.stderr
    cli("schedule", "delete", "--service", svc.service, "--name", "cli")
    assert key not in shown + st
