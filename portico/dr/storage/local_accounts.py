"""Storage accounts emulated on the local file system (under the server's ``data/storage``):
accounts, their keys and their containers. The blobs of a container are `local.LocalContainer`'s.

Layout under the root directory::

    accounts.json                  {"format": 1, "accounts": {NAME: {"key_hash": ..., "created": ...}}}
    .lock                          flock()ed while accounts.json changes
    accounts/NAME/CONTAINER/       one directory per container (its blobs: see `local`)

Account keys are never stored: `accounts.json` holds a salted scrypt hash of each key, and
`LocalAccounts.verify` checks a caller's key against it. `create_account` returns the key once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from portico.dr.storage.base import (
    AccountAlreadyExists,
    AccountNotFound,
    ContainerAlreadyExists,
    ContainerNotEmpty,
    ContainerNotFound,
    StorageError,
    validate_account_name,
    validate_container_name,
)
from portico.dr.storage.local_files import flock, fsync_dir, iso, parse_iso, utc_now, write_atomic

ACCOUNTS_FILE = "accounts.json"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_KEY_BYTES = 64  # like Azure's account keys (88 base64 characters)


def _hash_key(key: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def _check_key(key: str, stored: str) -> bool:
    try:
        alg, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if alg != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            key.encode(),
            salt=salt,
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


@dataclass(frozen=True)
class LocalAccountInfo:
    name: str
    created: datetime
    containers: list[str]


class LocalAccounts:
    """The storage accounts under `root` (administration and key verification; synchronous)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # -- accounts.json ----------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        path = self.root / ACCOUNTS_FILE
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {"format": 1, "accounts": {}}
        except (OSError, ValueError) as e:
            raise StorageError(
                f"cannot read the local storage account list {path}: {type(e).__name__}"
            ) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("accounts"), dict):
            raise StorageError(f"the local storage account list {path} is damaged")
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        write_atomic(self.root / ACCOUNTS_FILE, json.dumps(doc, indent=2, sort_keys=True).encode())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.root.mkdir(parents=True, exist_ok=True)
        with flock(self.root / ".lock"):
            yield self._load()

    def _entry(self, name: str) -> dict[str, Any]:
        validate_account_name(name)
        entry = self._load()["accounts"].get(name)
        if entry is None:
            raise AccountNotFound(f"storage account {name!r} does not exist")
        return dict(entry)

    def require_account(self, name: str) -> None:
        """Raise `AccountNotFound` unless account `name` exists."""
        self._entry(name)

    def account_dir(self, name: str) -> Path:
        return self.root / "accounts" / validate_account_name(name)

    def container_dir(self, account: str, container: str) -> Path:
        return self.account_dir(account) / validate_container_name(container)

    # -- accounts ---------------------------------------------------------------------------

    def create_account(self, name: str) -> str:
        """Create account `name` and return its access key (the only time it is available)."""
        validate_account_name(name)
        key = base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()
        with self._locked() as doc:
            if name in doc["accounts"]:
                raise AccountAlreadyExists(f"storage account {name!r} already exists")
            self.account_dir(name).mkdir(parents=True, exist_ok=True)
            doc["accounts"][name] = {"key_hash": _hash_key(key), "created": iso(utc_now())}
            self._save(doc)
        return key

    def regenerate_key(self, name: str) -> str:
        """Replace the account's key (the old one stops working) and return the new one."""
        validate_account_name(name)
        key = base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()
        with self._locked() as doc:
            entry = doc["accounts"].get(name)
            if entry is None:
                raise AccountNotFound(f"storage account {name!r} does not exist")
            entry["key_hash"] = _hash_key(key)
            self._save(doc)
        return key

    def delete_account(self, name: str) -> None:
        """Delete the account with all its containers and blobs."""
        validate_account_name(name)
        with self._locked() as doc:
            if doc["accounts"].pop(name, None) is None:
                raise AccountNotFound(f"storage account {name!r} does not exist")
            self._save(doc)
            shutil.rmtree(self.account_dir(name), ignore_errors=True)

    def account_exists(self, name: str) -> bool:
        validate_account_name(name)
        return name in self._load()["accounts"]

    def list_accounts(self) -> list[LocalAccountInfo]:
        doc = self._load()
        return [
            LocalAccountInfo(
                name, parse_iso(entry.get("created", "1970-01-01T00:00:00Z")), self._containers(name)
            )
            for name, entry in sorted(doc["accounts"].items())
        ]

    def verify(self, account: str, key: str) -> bool:
        """Whether `key` is the account's key. Raises `AccountNotFound` for an unknown account."""
        entry = self._entry(account)
        return _check_key(key, entry.get("key_hash", ""))

    # -- containers -------------------------------------------------------------------------

    def _containers(self, account: str) -> list[str]:
        try:
            return sorted(p.name for p in self.account_dir(account).iterdir() if p.is_dir())
        except FileNotFoundError:
            return []

    def create_container(self, account: str, container: str) -> None:
        validate_container_name(container)
        self._entry(account)
        path = self.container_dir(account, container)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            raise ContainerAlreadyExists(
                f"container {container!r} already exists in storage account {account!r}"
            ) from None
        fsync_dir(path.parent)

    def delete_container(self, account: str, container: str, *, force: bool = False) -> None:
        validate_container_name(container)
        self._entry(account)
        path = self.container_dir(account, container)
        if not path.is_dir():
            raise ContainerNotFound(f"container {container!r} does not exist in storage account {account!r}")
        if not force and any(path.glob("*.meta")):
            raise ContainerNotEmpty(f"container {container!r} is not empty")
        shutil.rmtree(path)

    def list_containers(self, account: str) -> list[str]:
        self._entry(account)
        return self._containers(account)
