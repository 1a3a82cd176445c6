from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .inproc import InProc, inproc


@pytest.fixture(scope="session")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProc]:
    """One in-process server shared by the protocol tests (small request limit to test 413)."""
    async with inproc(tmp_path_factory.mktemp("arm"), max_request_bytes=64 * 1024) as n:
        yield n


@pytest.fixture(scope="session")
async def rg(node: InProc) -> str:
    return await node.group()


@pytest.fixture(scope="session")
async def svc(node: InProc, rg: str) -> str:
    return await node.service(rg)
