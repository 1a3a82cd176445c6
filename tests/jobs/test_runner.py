"""The job runner without a server: running work, and closing orphans through the registry."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from portico.jobs import store as J
from portico.jobs.runner import JobRunner, OperationFailed, Outcome, Progress
from portico.settings import Settings
from portico.store.db import Database


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, node_id="this-node", operation_lease_seconds=30)


async def _record(db: Database, kind: str, owner: str, lease: float) -> J.Operation:
    async with db.write() as conn:
        return await J.create(
            conn,
            op_id=J.new_id(),
            kind=kind,
            service_id=1,
            service_path="/subscriptions/s/resourceGroups/rg/providers/Microsoft.ApiManagement/service/a",
            params={},
            owner=owner,
            lease=lease,
        )


async def _get(db: Database, op_id: str) -> J.Operation:
    async with db.read() as conn:
        op = await J.get(conn, op_id)
    assert op is not None
    return op


async def test_orphans_are_closed_by_the_recoverer_registered_for_their_kind(
    settings: Settings, db: Database
) -> None:
    seen: list[str] = []

    async def recover(op: J.Operation) -> Outcome:
        seen.append(op.id)
        return J.SUCCEEDED, None, None

    orphan = await _record(db, "fake", "dead-node", lease=-1)  # its lease ran out
    alive = await _record(db, "fake", "other-node", lease=60)  # another node still runs it
    runner = JobRunner(settings, db)
    runner.recoverers.register("fake", recover)
    await runner.start()
    await runner.stop()
    assert seen == [orphan.id]
    closed = await _get(db, orphan.id)
    assert (closed.status, closed.phase, closed.lease_owner) == (J.SUCCEEDED, J.Phase.COMPLETED, None)
    assert (await _get(db, alive.id)).status == J.IN_PROGRESS
    async with db.write() as conn:
        await J.finish(conn, alive.id, None, J.FAILED)


async def test_an_orphan_of_an_unregistered_kind_fails_as_interrupted(
    settings: Settings, db: Database
) -> None:
    orphan = await _record(db, "unknown", "dead-node", lease=-1)
    runner = JobRunner(settings, db)
    await runner.start()
    await runner.stop()
    closed = await _get(db, orphan.id)
    assert (closed.status, closed.error_code, closed.phase) == (J.FAILED, "UnknownFailed", J.Phase.FAILED)
    assert "interrupted" in (closed.error_message or "")


async def test_at_start_this_nodes_own_operations_are_orphans(settings: Settings, db: Database) -> None:
    # The same node restarting: its previous life's operation cannot be running any more.
    own = await _record(db, "fake", "this-node", lease=60)

    async def recover(op: J.Operation) -> Outcome:
        return J.FAILED, "FakeFailed", "interrupted"

    runner = JobRunner(settings, db)
    runner.recoverers.register("fake", recover)
    await runner.start()
    await runner.stop()
    assert (await _get(db, own.id)).error_code == "FakeFailed"


async def test_background_work_starts_after_recovery_and_stops_with_the_runner(
    settings: Settings, db: Database
) -> None:
    events: list[str] = []
    orphan = await _record(db, "fake", "dead-node", lease=-1)
    stopped = asyncio.Event()

    async def recover(op: J.Operation) -> Outcome:
        events.append("recover")
        return J.SUCCEEDED, None, None

    async def background() -> None:
        events.append("background")
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    runner = JobRunner(settings, db)
    runner.recoverers.register("fake", recover)
    runner.add_background([background])
    await runner.start()
    await asyncio.sleep(0)
    assert events == ["recover", "background"]
    await runner.stop()
    assert stopped.is_set()
    assert (await _get(db, orphan.id)).status == J.SUCCEEDED


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (None, J.SUCCEEDED, None),
        (OperationFailed("FakeFailed", "the storage said no"), J.FAILED, "FakeFailed"),
        (RuntimeError("secret=xyz"), J.FAILED, "FakeFailed"),
    ],
)
async def test_run_records_the_outcome_and_calls_on_end(
    settings: Settings, db: Database, error: Exception | None, status: str, code: str | None
) -> None:
    runner = JobRunner(settings, db)
    await runner.start()
    op = await _record(db, "fake", runner.node_id, lease=60)
    ended: list[str] = []

    async def work(progress: Progress) -> dict[str, object] | None:
        progress.counters = {"done": 3}
        await progress.update(phase=J.Phase.WRITING, percent=40.0)
        assert (await _get(db, op.id)).phase == J.Phase.WRITING
        if error is not None:
            raise error
        return None

    async def on_end() -> None:
        ended.append(op.id)

    runner.run(op, work, on_end)
    await asyncio.gather(runner.tasks[op.id], return_exceptions=True)
    await runner.stop()
    done = await _get(db, op.id)
    assert ended == [op.id]
    assert (done.status, done.error_code, done.counters) == (status, code, {"done": 3})
    if status == J.SUCCEEDED:
        assert (done.phase, done.percent) == (J.Phase.COMPLETED, 100.0)
    else:
        assert (done.phase, done.percent) == (J.Phase.FAILED, 40.0)
        assert "secret" not in (done.error_message or "")


def test_the_runner_depends_on_no_kind_of_operation() -> None:
    code = (
        "import sys, portico.jobs.runner; print(sorted(m for m in sys.modules if m.startswith('portico.dr')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
