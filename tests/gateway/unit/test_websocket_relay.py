"""The WebSocket relay's message pump without sockets: wsproto peers on both ends, bytes passed
through in-memory streams. Fragments pass as they arrive, pings are answered on their own
connection, a close is passed on with its code, an oversized message closes both sides (1009),
and a side that drops without a close closes the other with its code."""

from __future__ import annotations

import asyncio
from typing import Any

from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage

from portico.gateway.upstream import Upstream

# (Forwarder through websocket: importing portico.gateway.proxy first meets an import cycle)
from portico.gateway.websocket import Connector, Forwarder, Tunnel, _Activity, _pump, _Side
from tests.gateway.unit.harness import pipeline, rejected, request, service


class _Pipe:
    """Bytes one way: `feed` (or `end`) on one end, `read` on the other."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def feed(self, data: bytes) -> None:
        self.queue.put_nowait(data)

    def end(self) -> None:
        self.queue.put_nowait(b"")

    async def read(self) -> bytes:
        return await self.queue.get()


async def _nothing() -> None:
    return None


def _events(peer: Connection, written: list[bytes]) -> list[Event]:
    peer.receive_data(b"".join(written))
    written.clear()
    return list(peer.events())


def _setup(max_message: int = 1000) -> tuple[Connection, _Pipe, list[bytes], list[bytes], Connection, Any]:
    """(client, its pipe into the gateway, bytes the gateway wrote to the client, bytes it wrote
    to the backend, the backend, the pump task factory)."""
    client = Connection(ConnectionType.CLIENT)
    backend = Connection(ConnectionType.SERVER)
    pipe = _Pipe()
    to_client: list[bytes] = []
    to_backend: list[bytes] = []
    src = _Side(Connection(ConnectionType.SERVER), pipe.read, to_client.append, _nothing, 1001)
    dst = _Side(Connection(ConnectionType.CLIENT), _Pipe().read, to_backend.append, _nothing, 1011)

    def start() -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(_pump(src, dst, max_message, _Activity()))

    return client, pipe, to_client, to_backend, backend, start


async def test_fragments_pings_and_close_pass() -> None:
    client, pipe, to_client, to_backend, backend, start = _setup()
    task = start()
    pipe.feed(client.send(TextMessage(data="hel", message_finished=False)))
    pipe.feed(client.send(TextMessage(data="lo", message_finished=True)))
    pipe.feed(client.send(Ping(payload=b"p")))
    pipe.feed(client.send(BytesMessage(data=b"\x01\x02")))
    await asyncio.sleep(0.05)
    got = _events(backend, to_backend)
    assert [(type(e).__name__, e.data, e.message_finished) for e in got] == [  # type: ignore[attr-defined]
        ("TextMessage", "hel", False),
        ("TextMessage", "lo", True),
        ("BytesMessage", b"\x01\x02", True),
    ]
    assert [e for e in _events(client, to_client) if isinstance(e, Pong)] == [Pong(payload=b"p")]
    pipe.feed(client.send(CloseConnection(code=4001, reason="bye")))
    await asyncio.wait_for(task, 5)
    closes = [e for e in _events(backend, to_backend) if isinstance(e, CloseConnection)]
    assert [(c.code, c.reason) for c in closes] == [(4001, "bye")]
    # the client's close was answered on its own connection
    assert [e.code for e in _events(client, to_client) if isinstance(e, CloseConnection)] == [4001]


async def test_oversized_message_closes_both_sides() -> None:
    client, pipe, to_client, to_backend, backend, start = _setup(max_message=100)
    task = start()
    pipe.feed(client.send(BytesMessage(data=b"x" * 60, message_finished=False)))
    pipe.feed(client.send(BytesMessage(data=b"x" * 60, message_finished=True)))
    await asyncio.wait_for(task, 5)
    backend_events = _events(backend, to_backend)
    assert [type(e).__name__ for e in backend_events] == ["BytesMessage", "CloseConnection"]
    assert backend_events[-1].code == 1009  # type: ignore[attr-defined]
    assert [e.code for e in _events(client, to_client) if isinstance(e, CloseConnection)] == [1009]


async def test_dropped_side_closes_the_other() -> None:
    client, pipe, _to_client, to_backend, backend, start = _setup()
    task = start()
    pipe.feed(client.send(TextMessage(data="last")))
    pipe.end()  # the client's connection drops without a close frame
    await asyncio.wait_for(task, 5)
    got = _events(backend, to_backend)
    assert isinstance(got[0], TextMessage) and got[0].data == "last"
    assert isinstance(got[-1], CloseConnection) and got[-1].code == 1001


async def test_connection_cap_refuses_handshakes_beyond_it() -> None:
    connector = Connector(Forwarder(Upstream(), 1024, 5.0), 5.0, 1)
    svc = service()
    ctx = request(svc, connector, path="/echo/")
    ctx.tunnel = Tunnel()
    counted = Tunnel(counted=connector)
    connector.active = 1  # one relayed connection open
    refused = await rejected(pipeline(svc), ctx)
    assert (refused.status, refused.reason) == (503, "WebSocketConnectionLimit")
    counted.close()  # the relay ends: its place is free again
    assert connector.active == 0
