"""The embedded default: backup and restore through the local storage backend, driven by the SDK."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import models as M

from tests.conftest import sdk_client
from tests.e2e.dr_support import SUB, Rest, populate, snapshot
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow


def _params(
    account: str, key: str, name: str, container: str = "backups"
) -> M.ApiManagementServiceBackupRestoreParameters:
    return M.ApiManagementServiceBackupRestoreParameters(
        storage_account=account, container_name=container, backup_name=name, access_key=key
    )


def test_local_backend_full_cycle_and_errors(server_factory: Callable[..., PorticoServer]) -> None:
    server = server_factory()  # embedded defaults: SQLite + local storage under the data dir
    key = server.cli("storage", "account", "create", "localbackups").stdout.strip().splitlines()[-1].strip()
    server.cli("storage", "container", "create", "localbackups", "backups")
    rest, client = Rest(server), sdk_client(server, SUB)
    rest.service("rg-l", "local-src")
    populate(rest, "rg-l", "local-src")
    rest.service("rg-l", "local-dst")
    rest.put("rg-l", "local-dst", "apis/extra", {"path": "extra"})

    client.api_management_service.begin_backup(
        "rg-l", "local-src", _params("localbackups", key, "b1")
    ).result()
    blob_dir = server.data_dir / "storage"
    assert any(p.is_file() and "b1" in p.name for p in blob_dir.rglob("*")), (
        "the backup is a file under data/storage"
    )
    client.api_management_service.begin_restore(
        "rg-l", "local-dst", _params("localbackups", key, "b1")
    ).result()
    assert snapshot(rest, "rg-l", "local-dst") == snapshot(rest, "rg-l", "local-src")

    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    cases = [
        (_params("localbackups", wrong, "b2"), "access to storage account 'localbackups' was denied"),
        (_params("localbackups", key, "b2", container="missing"), "container 'missing' does not exist"),
        (_params("nosuchaccount", key, "b2"), "storage account 'nosuchaccount' was not found"),
    ]
    for p, fragment in cases:
        with pytest.raises(HttpResponseError) as err:
            client.api_management_service.begin_backup("rg-l", "local-src", p).result()
        assert "(BackupFailed)" in err.value.message and fragment in err.value.message, err.value.message
        assert key not in err.value.message and wrong not in err.value.message
    with pytest.raises(HttpResponseError) as err:
        client.api_management_service.begin_restore(
            "rg-l", "local-dst", _params("localbackups", key, "nope")
        ).result()
    assert "(RestoreFailed) Cannot restore: backup 'nope' was not found" in err.value.message
    assert key not in (server.data_dir / "server.log").read_text()
