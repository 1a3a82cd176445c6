"""Secrets stored by the server (a backup schedule's storage access key), sealed with its own key.

The key is `PORTICO_SECRET_KEY` (base64 of 32 bytes) or the file `data_dir/secret.key`, generated
on first start with mode 0600. It never enters the database: a copy of the database alone does not
reveal the sealed secrets. Every node of a multi-node deployment needs the same key; a node with
another key says so clearly (the key id of a sealed value is checked before decryption).

Sealed format: ``b"PSB1" | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext+tag``, with
associated data binding the value to its owner (e.g. the schedule's id), so a sealed value copied
onto another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from portico.settings import Settings

MAGIC = b"PSB1"
KEY_FILE = "secret.key"


class SecretBoxError(Exception):
    """A sealed value cannot be opened (another server key, or damaged). Carries no secret."""


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"portico-secret-box\0" + key).digest()[:8]


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the server secret key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = _key_id(key)
        self._mac_root = hashlib.sha256(b"portico-mac-root\0" + key).digest()

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id.hex()})"

    def mac_key(self, purpose: str) -> bytes:
        """A key for HMACs of one purpose (e.g. signed links), derived from the server key so
        that it is never the encryption key itself and differs per purpose."""
        return hmac.new(self._mac_root, purpose.encode(), hashlib.sha256).digest()

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return MAGIC + self.key_id + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < 4 + 8 + 12 + 16 or sealed[:4] != MAGIC:
            raise SecretBoxError("the stored secret is damaged (not a sealed value)")
        if sealed[4:12] != self.key_id:
            raise SecretBoxError(
                "the stored secret was sealed with another server secret key (key id "
                f"{sealed[4:12].hex()}, this node has {self.key_id.hex()}); give every node the same "
                "PORTICO_SECRET_KEY or data_dir/secret.key"
            )
        try:
            return self._aead.decrypt(sealed[12:24], sealed[24:], aad)
        except InvalidTag:
            raise SecretBoxError("the stored secret is damaged (authentication failed)") from None


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: the server secret key must be base64") from None
    if len(key) != 32:
        raise ValueError(f"{where}: the server secret key must be 32 bytes (base64-encoded)")
    return key


def load_or_create(settings: Settings) -> SecretBox:
    """The server's box: from the setting, else from data_dir/secret.key (created 0600 if absent)."""
    if settings.secret_key is not None:
        return SecretBox(_decode(settings.secret_key.get_secret_value(), "PORTICO_SECRET_KEY"))
    path: Path = settings.data_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked into place: a concurrent starter of
        # the same data directory either wins or reads the complete file of the winner.
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return SecretBox(_decode(path.read_text(), str(path)))
