"""Azurite (the Azure Blob Storage emulator) for the tests, installed on first use.

``run_azurite()`` is a context manager; the session fixture ``azurite`` wraps it. Import the
fixture into a conftest (``from tests.support.azurite import azurite  # noqa: F401``).

On a fresh machine the first use runs ``scripts/install-azurite.sh`` (npm, Azurite 3.35.0 pinned,
into ``<repo>/.test-deps/azurite``, gitignored; about 30 s once). Azurite is started directly
(``azurite-blob`` is a node script run through ``env``, which execs node, so the PID we hold is
Azurite's) on a free loopback port with two accounts and random keys, in a temporary directory.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from portico.dr.storage import AccountKey

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-azurite.sh"
AZURITE_PREFIX = REPO_ROOT / ".test-deps" / "azurite"
AZURITE_BIN = AZURITE_PREFIX / "node_modules" / ".bin" / "azurite-blob"
DEFAULT_ACCOUNTS = ("portico1", "portico2")
START_TIMEOUT = 30.0


@dataclass
class AzuriteServer:
    port: int
    accounts: dict[str, str]  # name -> base64 key
    location: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def endpoint_template(self) -> str:
        """For `open_container(..., endpoint_template=...)`: ``http://127.0.0.1:PORT/{account}``."""
        return f"http://127.0.0.1:{self.port}/{{account}}"

    def endpoint(self, account: str) -> str:
        return self.endpoint_template.format(account=account)

    @property
    def account_names(self) -> list[str]:
        return list(self.accounts)

    def key(self, account: str) -> str:
        return self.accounts[account]

    def credential(self, account: str) -> AccountKey:
        return AccountKey(account, self.accounts[account])

    def connection_string(self, account: str) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={self.accounts[account]};"
            f"BlobEndpoint={self.endpoint(account)};"
        )


def ensure_azurite_installed() -> Path:
    """Install Azurite with the project's script unless it is there already; return the binary."""
    if AZURITE_BIN.exists():
        return AZURITE_BIN
    AZURITE_PREFIX.parent.mkdir(parents=True, exist_ok=True)
    lock_path = AZURITE_PREFIX.parent / ".azurite-install.lock"
    with open(lock_path, "w") as lock:  # one installer at a time (parallel test workers)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not AZURITE_BIN.exists():
            if shutil.which("npm") is None:
                raise RuntimeError(
                    "Azurite is not installed and npm is missing: install nodejs and npm first"
                )
            result = subprocess.run(
                ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600, check=False
            )
            if result.returncode != 0 or not AZURITE_BIN.exists():
                raise RuntimeError(
                    f"installing Azurite failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
                )
    return AZURITE_BIN


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def run_azurite(
    accounts: tuple[str, ...] = DEFAULT_ACCOUNTS, location: Path | None = None
) -> Iterator[AzuriteServer]:
    """Start Azurite (installing it first if needed); stop it and remove its data afterwards."""
    binary = ensure_azurite_installed()
    keys = {name: base64.b64encode(os.urandom(64)).decode() for name in accounts}
    own_location = location is None
    loc = Path(tempfile.mkdtemp(prefix="portico-azurite-")) if location is None else location
    loc.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["AZURITE_ACCOUNTS"] = ";".join(f"{name}:{key}" for name, key in keys.items())
    proc: subprocess.Popen[bytes] | None = None
    try:
        last_error = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            port = _free_port()
            log_path = loc / f"azurite-{port}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    [
                        str(binary),
                        "--blobHost", "127.0.0.1",
                        "--blobPort", str(port),
                        "--location", str(loc / "data"),
                        "--skipApiVersionCheck",
                        "--loose",
                        "--silent",
                        "--disableTelemetry",
                    ],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and proc.poll() is None and not _port_open(port):
                time.sleep(0.05)
            if proc.poll() is None and _port_open(port):
                break
            _stop(proc)
            last_error = log_path.read_text(errors="replace")[-2000:]
            proc = None
        if proc is None:
            raise RuntimeError(f"Azurite did not start within {START_TIMEOUT:.0f} s:\n{last_error}")
        yield AzuriteServer(port=port, accounts=keys, location=loc, process=proc)
    finally:
        if proc is not None:
            _stop(proc)
        if own_location:
            shutil.rmtree(loc, ignore_errors=True)


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    """A running Azurite with accounts ``portico1`` and ``portico2`` (see `AzuriteServer`)."""
    with run_azurite() as server:
        yield server
