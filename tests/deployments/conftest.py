from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.arm.inproc import InProc, inproc


@pytest.fixture(scope="session")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProc]:
    async with inproc(tmp_path_factory.mktemp("deploy")) as n:
        yield n
