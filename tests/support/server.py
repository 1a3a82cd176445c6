"""Run real Portico servers (uvicorn over HTTPS, separate processes) for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PorticoServer:
    data_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def ca(self) -> str:
        return str(self.data_dir / "tls" / "ca.pem")

    @property
    def tenant(self) -> str:
        return self.env.get("PORTICO_TENANT_ID", "portico")

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    @property
    def secret_key(self) -> str:
        """The server secret key (base64) other nodes of its database need to open its secrets."""
        return self.env.get("PORTICO_SECRET_KEY") or (self.data_dir / "secret.key").read_text().strip()

    def admin(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "admin-credentials.json").read_text())

    def start(self, timeout: float = 30) -> PorticoServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.env,
            "PORTICO_DATA_DIR": str(self.data_dir),
            "PORTICO_PORT": str(self.port),
        }
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portico.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Portico exited with {self.proc.returncode}:\n{self.log_path.read_text()[-4000:]}"
                )
            try:
                r = httpx.get(
                    f"{self.url}/{self.tenant}/v2.0/.well-known/openid-configuration",
                    verify=self.ssl_context(),
                    timeout=1,
                )
                if r.status_code == 200:
                    return self
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Portico did not start in {timeout}s:\n{self.log_path.read_text()[-4000:]}")

    def kill(self) -> None:
        """kill -9: no clean-up at all, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def token(self, client_id: str | None = None, secret: str | None = None) -> str:
        creds = self.admin()
        r = httpx.post(
            f"{self.url}/{self.tenant}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id or creds["client_id"],
                "client_secret": secret or creds["client_secret"],
                "scope": "https://management.azure.com/.default",
            },
            verify=self.ssl_context(),
        )
        r.raise_for_status()
        return str(r.json()["access_token"])

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env, "PORTICO_DATA_DIR": str(self.data_dir)}
        return subprocess.run(
            [sys.executable, "-m", "portico.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            check=check,
            cwd=REPO,
        )
