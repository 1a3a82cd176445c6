from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.arm.inproc import InProc, inproc

GATEWAY_DOMAIN = "apim.contoso.test"


@pytest.fixture(scope="session")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProc]:
    async with inproc(tmp_path_factory.mktemp("resources"), gateway_domain=GATEWAY_DOMAIN) as n:
        yield n


@pytest.fixture(scope="session")
async def rg(node: InProc) -> str:
    return await node.group()


@pytest.fixture
async def svc(node: InProc, rg: str) -> str:
    """A fresh service per test: entity names never collide between tests."""
    return await node.service(rg)
