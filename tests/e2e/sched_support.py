"""Helpers of the schedule, drill and runbook tests: servers with a controllable scheduler clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from tests.e2e.dr_support import Rest
from tests.support.azurite import AzuriteServer
from tests.support.server import PorticoServer

API = "2024-05-01"


def sched_env(az: AzuriteServer, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "PORTICO_STORAGE_BACKEND": "azure",
        "PORTICO_BLOB_ENDPOINT_TEMPLATE": az.endpoint_template,
        "PORTICO_OPERATION_LEASE_SECONDS": "2",
        "PORTICO_SCHEDULER_TICK_SECONDS": "0.2",
        "PORTICO_SCHEDULER_CLOCK_FILE": str(data_dir / "clock"),
        # while this file exists, backups hold mid-way (tests of runs that overlap)
        "PORTICO_PAUSEPOINTS": f"backup.mid_write={data_dir / 'hold-backups'}",
        "PORTICO_GATEWAY_PORT": "0",
        "PORTICO_GATEWAY_HTTPS_PORT": "0",
        **extra,
    }


def set_clock(server: PorticoServer, when: datetime | None) -> None:
    """Make the server's scheduler clock read `when` now (None: the real clock)."""
    offset = 0.0 if when is None else (when - datetime.now(UTC)).total_seconds()
    (server.data_dir / "clock").write_text(f"{offset:.6f}")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s; last value: {last!r}")


def container(az: AzuriteServer, name: str) -> tuple[str, str, BlobServiceClient]:
    account = az.account_names[0]
    client = BlobServiceClient(
        az.endpoint(account), credential={"account_name": account, "account_key": az.key(account)}
    )
    if not client.get_container_client(name).exists():
        client.create_container(name)
    return account, az.key(account), client


class Schedules:
    """The backupSchedules / backupStatus extension through plain HTTPS."""

    def __init__(self, rest: Rest, rg: str, service: str) -> None:
        self.rest, self.rg, self.service = rest, rg, service

    def url(self, rest: str = "") -> str:
        return self.rest.svc(self.rg, self.service, rest)

    def put(self, name: str, props: dict[str, Any], expect: tuple[int, ...] = (200, 201)) -> Any:
        r = self.rest.http.put(
            self.url(f"backupSchedules/{name}"), params={"api-version": API}, json={"properties": props}
        )
        assert r.status_code in expect, r.text
        return r

    def patch(self, name: str, props: dict[str, Any], etag: str | None = None) -> Any:
        headers = {"If-Match": etag} if etag is not None else {}
        return self.rest.http.patch(
            self.url(f"backupSchedules/{name}"),
            params={"api-version": API},
            json={"properties": props},
            headers=headers,
        )

    def get(self, name: str) -> dict[str, Any]:
        r = self.rest.http.get(self.url(f"backupSchedules/{name}"), params={"api-version": API})
        assert r.status_code == 200, r.text
        return dict(r.json()["properties"])

    def delete(self, name: str) -> int:
        return self.rest.http.delete(
            self.url(f"backupSchedules/{name}"), params={"api-version": API}
        ).status_code

    def run_now(self, name: str, expect: int = 202) -> Any:
        r = self.rest.http.post(self.url(f"backupSchedules/{name}/runNow"), params={"api-version": API})
        assert r.status_code == expect, r.text
        return r

    def status(self) -> dict[str, Any]:
        r = self.rest.http.get(self.url("backupStatus"), params={"api-version": API})
        assert r.status_code == 200, r.text
        return dict(r.json()["properties"])

    def wait_run(self, name: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until the schedule has `count` finished runs (retention applied to successes)."""

        def done() -> list[dict[str, Any]] | None:
            runs = self.get(name)["runs"]
            finished = [
                r
                for r in runs
                if r["status"] in ("Failed", "Skipped")
                or (r["status"] == "Succeeded" and r.get("retention") is not None)
            ]
            return runs if len(finished) >= count and len(runs) == len(finished) else None

        return list(wait_for(done, timeout))


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format → {(name, labels): value} (a strict little parser for the tests)."""
    import re

    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    line_re = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert line == "" or line.startswith(("# HELP ", "# TYPE ")), line
            continue
        m = line_re.match(line)
        assert m, f"bad metrics line: {line!r}"
        labels = frozenset(label_re.findall(m.group(3) or ""))
        value = m.group(4)
        out[(m.group(1), labels)] = float("inf") if value == "+Inf" else float(value)
    return out


def metric(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    for (n, lab), v in metrics.items():
        if n == name and set(labels.items()) <= set(lab):
            return v
    return None
