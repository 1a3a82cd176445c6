"""The client commands as a newcomer meets them (README): one Portico server with its local storage,
no subscription given, every command's default output and its `--json`, and errors as one line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from portico.cli.client import WELL_KNOWN_SUBSCRIPTION
from portico.cli.main import app
from tests.e2e.dr_support import Rest, populate
from tests.support.server import PorticoServer, free_port

pytestmark = pytest.mark.slow

RG = "rg-cli"
ACCOUNT = "clibackups"
CONTAINER = "apim"


@dataclass
class Cli:
    server: PorticoServer
    env: dict[str, str | None]
    rest: Rest

    def run(self, *args: str, ok: bool = True, **env: str | None) -> Result:
        r = CliRunner().invoke(app, list(args), env={**self.env, **env})
        if ok:
            assert r.exit_code == 0, (args, r.exit_code, r.stdout, r.stderr, r.exception)
        assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
        return r

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture(scope="module")
def cli(server_factory: Callable[..., PorticoServer]) -> Iterator[Cli]:
    server = server_factory()  # the README's set-up: SQLite and the local storage backend
    key = server.cli("storage", "account", "create", ACCOUNT).stdout.strip().splitlines()[-1].strip()
    server.cli("storage", "container", "create", ACCOUNT, CONTAINER)
    rest = Rest(server)
    rest.service(RG, "src")
    populate(rest, RG, "src")
    rest.service(RG, "dst")
    admin = server.admin()
    env: dict[str, str | None] = {
        "PORTICO_URL": server.url,
        "PORTICO_CA": server.ca,
        "AZURE_CLIENT_ID": admin["client_id"],
        "AZURE_CLIENT_SECRET": admin["client_secret"],
        "PORTICO_RESOURCE_GROUP": RG,
        "PORTICO_STORAGE_KEY": key,
        "PORTICO_SUBSCRIPTION": None,  # the README gives none: the CLI finds it
        "AZURE_SUBSCRIPTION_ID": None,
        "PORTICO_DEBUG": None,
        "COLUMNS": "250",
    }
    yield Cli(server, env, rest)
    rest.http.close()


STORAGE = ("--storage-account", ACCOUNT, "--container", CONTAINER)


def test_backup_list_verify_restore(cli: Cli) -> None:
    r = cli.run("backup", "--service", "src", *STORAGE, "--name", "cli/one")
    assert "backup of 'src' succeeded" in r.stdout
    assert f"note: using subscription {WELL_KNOWN_SUBSCRIPTION}" in r.stderr

    r = cli.run("backup", "list", "--service", "src", *STORAGE)
    assert "cli/one" in r.stdout and "Developer/1" in r.stdout
    [entry] = cli.json("backup", "list", "--service", "src", *STORAGE)  # type: ignore[misc]
    assert entry["name"] == "cli/one" and entry["sku"] == {"name": "Developer", "capacity": 1}

    report = cli.json("backup", "verify", "--service", "src", *STORAGE, "--name", "cli/one")
    assert isinstance(report, dict) and report["contentsVerified"] is True
    count = report["recordCount"]
    assert isinstance(count, int) and count > 4
    r = cli.run("backup", "verify", "--service", "src", *STORAGE, "--name", "cli/one")
    assert f"is intact: {count} records" in r.stdout and "None" not in r.stdout

    r = cli.run("restore", "--service", "dst", *STORAGE, "--name", "cli/one", "--what-if")
    assert "would:" in r.stdout and "apis" in r.stdout
    diff = cli.json("restore", "--service", "dst", *STORAGE, "--name", "cli/one", "--what-if")
    assert isinstance(diff, dict) and diff["blockers"] == [], diff
    assert sum(c["added"] for c in diff["byKind"].values()) >= 1, diff
    r = cli.run("restore", "--service", "dst", *STORAGE, "--name", "cli/one")
    assert "restore of 'dst' succeeded" in r.stdout

    r = cli.run("backup", "--service", "src", *STORAGE, "--name", "cli/two", "--no-wait")
    location = r.stdout.strip()
    assert "/operationresults/" in location
    cli.rest.wait(location)
    status = json.loads(cli.run("operation", "show", location).stdout)  # its default output is JSON
    assert status["status"] == "Succeeded"
    op_id = location.split("/operationresults/")[1].split("?")[0]
    again = json.loads(cli.run("operation", "show", op_id, "--service", "src").stdout)
    assert again["name"] == status["name"]


def test_promote(cli: Cli, tmp_path: Path) -> None:
    cli.run("backup", "--service", "src", *STORAGE, "--name", "cli/promote")
    overrides = tmp_path / "env.yaml"
    overrides.write_text("namedValues:\n  plain: from-overrides\n")
    args = ("promote", "--from", "cli/promote", "--to", "dst", *STORAGE, "--exclude-runtime-data")
    r = cli.run(*args, "--overrides", str(overrides), "--what-if")
    assert "would:" in r.stdout and "named values overridden: plain" in r.stdout
    diff = cli.json(*args, "--what-if")
    assert isinstance(diff, dict) and "byKind" in diff
    r = cli.run(*args, "--overrides", str(overrides))
    assert "restore of 'dst' succeeded" in r.stdout


def test_schedules_and_status(cli: Cli) -> None:
    svc = ("--service", "src")
    made = cli.json("schedule", "create", *svc, "--name", "nightly", "--cron", "0 2 * * *", *STORAGE,
                    "--prefix", "sched/", "--keep-last", "2")  # fmt: skip
    assert isinstance(made, dict) and made["properties"]["cron"] == "0 2 * * *"
    assert "accessKey" not in made["properties"]
    r = cli.run("schedule", "create", *svc, "--name", "weekly", "--cron", "0 3 * * 0", *STORAGE)
    assert "schedule 'weekly' of 'src' created" in r.stdout
    r = cli.run("schedule", "update", *svc, "--name", "weekly", "--disable")
    assert "updated" in r.stdout and "disabled" in r.stdout
    changed = cli.json("schedule", "update", *svc, "--name", "weekly", "--keep-days", "3")
    assert isinstance(changed, dict) and changed["properties"]["retention"] == {"keepDays": 3}

    r = cli.run("schedule", "list", *svc)
    assert "nightly" in r.stdout and "weekly" in r.stdout and "keepLast=2" in r.stdout
    listed = cli.json("schedule", "list", *svc)
    assert isinstance(listed, list) and {s["name"] for s in listed} == {"nightly", "weekly"}

    r = cli.run("schedule", "run-now", *svc, "--name", "nightly")
    assert "run of schedule 'nightly' succeeded" in r.stdout and "sched/src-" in r.stdout
    r = cli.run("schedule", "show", *svc, "--name", "nightly")
    assert "nightly" in r.stdout and "recent runs" in r.stdout
    shown = cli.json("schedule", "show", *svc, "--name", "nightly")
    assert isinstance(shown, dict) and shown["name"] == "nightly"

    r = cli.run("status", *svc)
    assert "last successful backup" in r.stdout and "RPO" in r.stdout
    status = cli.json("status", *svc)
    assert isinstance(status, dict) and status["properties"]["lastSuccess"]["backupName"]
    latest = cli.run("status", *svc, "--latest-backup").stdout.strip()
    assert latest == status["properties"]["lastSuccess"]["backupName"]

    r = cli.run("schedule", "delete", *svc, "--name", "weekly")
    assert "schedule 'weekly' of 'src' deleted" in r.stdout
    r = cli.run("schedule", "delete", *svc, "--name", "weekly", ok=False)
    assert r.exit_code == 1 and "does not exist" in r.stderr


def test_analytics_export(cli: Cli, tmp_path: Path) -> None:
    r = cli.run("analytics", "export", "--service", "src", "--report", "byApi")
    assert r.stdout.strip() == ""  # CSV of no usage yet: no rows
    rows = json.loads(cli.run("analytics", "export", "--service", "src", "--format", "json").stdout)
    assert rows == []
    out = tmp_path / "usage.csv"
    r = cli.run("analytics", "export", "--service", "src", "-o", str(out))
    assert out.exists() and f"to {out}" in " ".join(r.stdout.split())


def test_subscription_given_is_used_without_a_note(cli: Cli) -> None:
    r = cli.run("status", "--service", "src", "-s", WELL_KNOWN_SUBSCRIPTION)
    assert "note: using subscription" not in r.stderr
    r = cli.run("status", "--service", "src", "--json", AZURE_SUBSCRIPTION_ID=WELL_KNOWN_SUBSCRIPTION)
    assert "note: using subscription" not in r.stderr


def test_errors_are_one_line(cli: Cli) -> None:
    bad = cli.run("backup", "--service", "src", *STORAGE, "--name", "a/./b", ok=False)
    [line] = [x for x in bad.stderr.splitlines() if not x.startswith("note: ")]
    assert bad.exit_code == 1 and line.startswith("error: (InvalidParameters)") and "backupName" in line

    closed = f"https://127.0.0.1:{free_port()}"  # nothing listens: no token, one line
    r = cli.run("backup", "list", "--service", "src", *STORAGE, "--url", closed, ok=False)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: authentication failed")

    r = cli.run("status", "--service", "src", ok=False, AZURE_CLIENT_ID=None, AZURE_CLIENT_SECRET=None)
    assert r.exit_code == 2 and "missing --client-id, --client-secret" in r.stderr
