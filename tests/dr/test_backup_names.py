"""Backup names that would not come back as one blob name are refused with 400 before any work:
by the request parser, and through the backup, restore, verifyBackup and restorePreview actions."""

from __future__ import annotations

from pathlib import Path

import pytest

from portico.arm.errors import ArmError
from portico.dr.access import parse_request
from portico.settings import Settings
from tests.arm.inproc import assert_arm_error, inproc

BAD_NAMES = [
    ".",
    "./x",
    "a/./b",
    "a//b",
    "a/",
    "/a",
    "..",
    "a/../b",
    "a\x01b",
    "tab\there",
    "del\x7f",
    "a\\b",
    "x" * 1025,
]
GOOD_NAMES = ["x", "a/b.c", "drill/contoso-20261206T091500Z", "nightly/.hidden", "x" * 1024]


def _body(name: str) -> dict[str, str]:
    return {"storageAccount": "backups", "containerName": "apim", "accessKey": "k", "backupName": name}


@pytest.mark.parametrize("name", BAD_NAMES)
def test_parser_refuses_names_that_are_not_one_blob(name: str, tmp_path: Path) -> None:
    with pytest.raises(ArmError) as info:
        parse_request(_body(name), "2024-05-01", Settings(data_dir=tmp_path))
    assert info.value.status == 400 and "backupName" in info.value.message


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_parser_keeps_blob_names(name: str, tmp_path: Path) -> None:
    assert parse_request(_body(name), "2024-05-01", Settings(data_dir=tmp_path)).backup_name == name


def test_listing_needs_no_name(tmp_path: Path) -> None:
    body = {k: v for k, v in _body("").items() if k != "backupName"}
    req = parse_request(body, "2024-05-01", Settings(data_dir=tmp_path), need_name=False)
    assert req.backup_name == ""


@pytest.mark.parametrize("action", ["backup", "restore", "verifyBackup", "restorePreview"])
async def test_actions_refuse_bad_names_synchronously(action: str, tmp_path: Path) -> None:
    async with inproc(tmp_path, storage_backend="memory") as n:
        rg = await n.group()
        svc = await n.service(rg)
        for name in (".", "./x", "a/./b", "a//b", "a/"):
            r = await n.request("POST", f"{n.svc_path(rg, svc)}/{action}", json=_body(name))
            err = assert_arm_error(r, 400)
            assert "backupName" in err["message"], err
            assert "location" not in r.headers and "azure-asyncoperation" not in r.headers
