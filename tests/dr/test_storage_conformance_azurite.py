"""The storage-backend contract of `test_storage_conformance`, against Azure Blob Storage (Azurite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.dr.storage_envs import StorageEnv, make_env
from tests.dr.test_storage_conformance import *  # noqa: F403 - the same contract tests, collected here too
from tests.support.azurite import AzuriteServer

pytestmark = pytest.mark.slow


@pytest.fixture
async def env(azurite: AzuriteServer, tmp_path: Path) -> AsyncIterator[StorageEnv]:
    e = make_env("azurite", tmp_path, azurite)
    yield e
    await e.close()
