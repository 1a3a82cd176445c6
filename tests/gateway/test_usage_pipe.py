"""Usage records from a worker to its node's writer: UsageForwarder → pipe → UsageSink."""

from __future__ import annotations

import asyncio
import multiprocessing
import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from portico.gateway.analytics import UsageForwarder, UsageSink, _SinkProtocol, _Stamps


class FakeWriter:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def record(self, row: Sequence[Any]) -> None:
        self.rows.append(tuple(row))


async def test_records_cross_the_pipe_in_batches() -> None:
    parent_end, child_end = multiprocessing.get_context("spawn").Pipe(duplex=False)
    writer = FakeWriter()
    sink = UsageSink(writer)  # type: ignore[arg-type]
    await sink.attach(parent_end)
    fwd = UsageForwarder(child_end, batch=3, interval=0.02)
    await fwd.open()
    rows = [
        (1, 1700000000.5 + i, "api", None, None, "sub", "u", "GET", 200, 1.5, 2.5, 0, 11, "127.0.0.1")
        for i in range(7)
    ]
    for r in rows:
        fwd.record(r)
    await asyncio.sleep(0.2)  # two full batches at once, the rest on the timer
    assert writer.rows == rows
    await fwd.stop()
    await sink.close(wait_seconds=2)
    assert fwd.sent == 7 and fwd.dropped == 0


def test_sink_reassembles_frames_split_anywhere() -> None:
    writer = FakeWriter()
    loop = asyncio.new_event_loop()
    try:
        proto = _SinkProtocol(writer, loop.create_future())  # type: ignore[arg-type]
        payloads = [b'[[1,"a"],[2,"b"]]', b'[[3,"c"]]']
        stream = b"".join(struct.pack("<I", len(p)) + p for p in payloads)
        for i in range(0, len(stream), 5):  # 5-byte reads: lengths and payloads cut in the middle
            proto.data_received(stream[i : i + 5])
        assert writer.rows == [(1, "a"), (2, "b"), (3, "c")]
        assert not proto.buf
    finally:
        loop.close()


def test_sink_refuses_an_absurd_frame() -> None:
    writer = FakeWriter()
    loop = asyncio.new_event_loop()
    try:
        proto = _SinkProtocol(writer, loop.create_future())  # type: ignore[arg-type]

        class Transport:
            closed = False

            def close(self) -> None:
                self.closed = True

        t = Transport()
        proto.connection_made(t)  # type: ignore[arg-type]
        proto.data_received(struct.pack("<I", 1 << 31) + b"xxxx")
        assert t.closed and not writer.rows and not proto.buf
    finally:
        loop.close()


@pytest.mark.parametrize("sqlite", [True, False])
def test_stamps_match_the_datetime_of_each_record(sqlite: bool) -> None:
    """The per-second cache gives what formatting each record's own datetime gives, across second
    boundaries and microsecond rounding; `ts_epoch` is the whole second of `ts`."""
    stamps = _Stamps(sqlite)
    times = [1700000000.0, 1700000000.25, 1700000000.9999996, 1700000001.0000004, 1700000001.5]
    times += [1763800000 + i * 0.3333337 for i in range(40)]
    for ts in times:
        expected = datetime.fromtimestamp(ts, UTC)
        row = stamps.row([7, ts, "api", "op"])
        assert row[0] == 7 and row[3:] == ("api", "op")
        if sqlite:
            assert row[1] == expected.strftime("%Y-%m-%d %H:%M:%S.%f")
        else:
            assert row[1] == expected
        assert row[2] == int(expected.timestamp())
