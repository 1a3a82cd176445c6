"""A throwaway PostgreSQL cluster for the tests (Debian's postgresql package; installed if missing)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin() -> Path:
    for cand in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (cand / "initdb").exists():
            return cand
    raise RuntimeError(
        "PostgreSQL server binaries not found; `make test` installs the postgresql package (apt-get install -y postgresql)."
    )


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Yield an asyncpg SQLAlchemy URL of a fresh cluster; removed afterwards."""
    bindir = pg_bin()
    root = Path(tempfile.mkdtemp(prefix="portico-pg-"))
    os.chmod(root, 0o777)
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    os.chmod(sock, 0o777)
    port = _free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "portico", "--auth=trust", "--no-sync"],
        check=True,
        capture_output=True,
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    subprocess.run(
        [
            *as_postgres,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-w",
            "-l",
            str(root / "log"),
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            )
            if r.returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "portico", "portico"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+asyncpg://portico@127.0.0.1:{port}/portico"
    finally:
        subprocess.run(
            [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """A fresh database in the same cluster (one per test server), as a URL."""
    base, _, _db = url.rpartition("/")
    host_port = base.split("@", 1)[1]
    host, port = host_port.split(":")
    subprocess.run(
        [str(pg_bin() / "createdb"), "-h", host, "-p", port, "-U", "portico", name],
        check=True,
        capture_output=True,
    )
    return f"{base}/{name}"
