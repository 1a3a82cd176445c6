"""Backup schedules: the resource body, its validation, cron arithmetic and blob naming.

A schedule (Portico extension, `.../service/{name}/backupSchedules/{id}`) says when to back the
service up (`cron`, 5 fields, in `timeZone`), where (`storageAccount`, `containerName`, blob names
`<namePrefix><service>-<YYYYMMDDTHHMMSSZ>`), with which access (`accessType`; an `accessKey` is
sealed with the server's key and never returned), and what to keep (`retention`: `keepLast`,
`keepDays`, never beyond the backup validity period).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from portico.arm.errors import ArmError, invalid_field
from portico.dr.access import parse_encryption_key
from portico.settings import Settings

ACCESS_TYPES = ("AccessKey", "SystemAssignedManagedIdentity", "UserAssignedManagedIdentity")
SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,78}[A-Za-z0-9])?$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
STAMP_LENGTH = 16
MAX_PREFIX = 200
MAX_KEEP_LAST = 10_000
HISTORY_LENGTH = 20
KNOWN_PROPERTIES = {
    "cron",
    "timeZone",
    "storageAccount",
    "containerName",
    "namePrefix",
    "accessType",
    "accessKey",
    "clientId",
    "encryptionKey",
    "retention",
    "enabled",
}


def invalid(field_name: str, message: str) -> ArmError:
    """400 naming the field (as the entity resources do): `ValidationError`, `target` = the field."""
    return invalid_field(field_name, message)


@dataclass(frozen=True)
class Retention:
    keep_last: int | None = None
    keep_days: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.keep_last is not None:
            out["keepLast"] = self.keep_last
        if self.keep_days is not None:
            out["keepDays"] = self.keep_days
        return out


@dataclass(frozen=True)
class ScheduleSpec:
    """A validated schedule body. Secrets (`access_key`, `encryption_key`) only in memory."""

    cron: str
    time_zone: str
    storage_account: str
    container: str
    name_prefix: str
    access_type: str
    client_id: str | None
    retention: Retention
    enabled: bool
    access_key: str | None = field(default=None, repr=False)
    encryption_key: str | None = field(default=None, repr=False)
    encrypted: bool = False

    def public(self) -> dict[str, Any]:
        """The stored (and rendered) properties: never a secret."""
        return {
            "cron": self.cron,
            "timeZone": self.time_zone,
            "storageAccount": self.storage_account,
            "containerName": self.container,
            "namePrefix": self.name_prefix,
            "accessType": self.access_type,
            "clientId": self.client_id,
            "encrypted": self.encrypted,
            "retention": self.retention.to_dict(),
            "enabled": self.enabled,
        }

    @staticmethod
    def from_public(props: dict[str, Any]) -> ScheduleSpec:
        r = props.get("retention") or {}
        return ScheduleSpec(
            cron=props["cron"],
            time_zone=props.get("timeZone") or "UTC",
            storage_account=props["storageAccount"],
            container=props["containerName"],
            name_prefix=props.get("namePrefix") or "",
            access_type=props.get("accessType") or "AccessKey",
            client_id=props.get("clientId"),
            retention=Retention(r.get("keepLast"), r.get("keepDays")),
            enabled=bool(props.get("enabled", True)),
            encrypted=bool(props.get("encrypted")),
        )

    def __repr__(self) -> str:
        return f"ScheduleSpec({self.public()!r})"


def check_cron(expr: Any) -> str:
    if not isinstance(expr, str) or not expr.strip():
        raise invalid(
            "cron", "a 5-field cron expression (minute hour day-of-month month day-of-week) is required."
        )
    text = " ".join(expr.split())
    if len(text.split(" ")) != 5:
        raise invalid(
            "cron",
            f"'{text[:100]}' is not a 5-field cron expression (minute hour day-of-month month day-of-week).",
        )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise invalid("cron", f"'{text[:100]}' is not a valid cron expression: {exc}.") from None
    return text


def check_time_zone(name: Any) -> str:
    if name is None or name == "":
        return "UTC"
    if not isinstance(name, str) or len(name) > 64 or ".." in name or name.startswith("/"):
        raise invalid("timeZone", "must be an IANA time zone name such as 'Europe/Paris' or 'UTC'.")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(
            "timeZone", f"unknown time zone '{name}': use an IANA name such as 'Europe/Paris' or 'UTC'."
        ) from None
    return name


def next_run(cron: str, time_zone: str, after: datetime) -> datetime | None:
    """The first time strictly after `after` that `cron` names in `time_zone`, in UTC."""
    local = after.astimezone(ZoneInfo(time_zone))
    try:
        return next(iter(CronSim(cron, local))).astimezone(UTC)
    except (StopIteration, CronSimError):
        return None


def backup_name(prefix: str, service: str, when: datetime) -> str:
    return f"{prefix}{service}-{when.astimezone(UTC).strftime(STAMP_FORMAT)}"


def is_schedule_blob(blob_name: str, prefix: str, service: str) -> bool:
    """Whether `blob_name` is named as this schedule names its backups of `service`."""
    head = f"{prefix}{service}-"
    if not blob_name.startswith(head):
        return False
    stamp = blob_name[len(head) :]
    if len(stamp) != STAMP_LENGTH:
        return False
    try:
        datetime.strptime(stamp, STAMP_FORMAT)
    except ValueError:
        return False
    return True


def _check_prefix(prefix: Any) -> str:
    if prefix is None:
        return ""
    if not isinstance(prefix, str):
        raise invalid("namePrefix", "must be a string.")
    problem = None
    if len(prefix) > MAX_PREFIX:
        problem = f"at most {MAX_PREFIX} characters"
    elif any(c in prefix for c in "\\") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in prefix):
        problem = "no backslash or control characters"
    elif prefix.startswith("/"):
        problem = "no leading '/'"
    elif any(part in (".", "..") for part in prefix.split("/")[:-1]) or "//" in prefix:
        problem = "no '.', '..' or empty path segments"
    if problem:
        raise invalid("namePrefix", f"'{prefix[:80]}' is not a valid blob name prefix ({problem}).")
    return prefix


def _check_retention(value: Any, settings: Settings) -> Retention:
    if value is None:
        return Retention()
    if not isinstance(value, dict):
        raise invalid("retention", "must be an object with keepLast and/or keepDays.")
    unknown = sorted(set(value) - {"keepLast", "keepDays"})
    if unknown:
        raise invalid(f"retention.{unknown[0]}", "unknown field; use keepLast and/or keepDays.")
    keep_last = value.get("keepLast")
    keep_days = value.get("keepDays")
    if keep_last is not None and (
        isinstance(keep_last, bool) or not isinstance(keep_last, int) or not 1 <= keep_last <= MAX_KEEP_LAST
    ):
        raise invalid("retention.keepLast", f"must be an integer from 1 to {MAX_KEEP_LAST}.")
    if keep_days is not None:
        if isinstance(keep_days, bool) or not isinstance(keep_days, int | float) or keep_days <= 0:
            raise invalid("retention.keepDays", "must be a positive number of days.")
        validity = settings.backup_validity_days
        if keep_days > validity:
            raise invalid(
                "retention.keepDays",
                f"{keep_days:g} days is longer than the backup validity period ({validity:g} days): "
                "backups older than that cannot be restored, so they are never kept.",
            )
    return Retention(keep_last, keep_days)


def parse_spec(
    body: Any, settings: Settings, existing: ScheduleSpec | None, has_secret: bool
) -> ScheduleSpec:
    """Validate a PUT body. `existing`/`has_secret`: the schedule being replaced, whose sealed key
    is kept when the body names the same storage account and sends no new key."""
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise ArmError(
            400,
            "InvalidRequestContent",
            "The request body must be a JSON object with 'properties' (cron, storageAccount, containerName, ...).",
        )
    p: dict[str, Any] = body["properties"]
    unknown = sorted(k for k in p if k not in KNOWN_PROPERTIES and k not in _READ_ONLY)
    if unknown:
        raise invalid(unknown[0], f"unknown property; known: {', '.join(sorted(KNOWN_PROPERTIES))}.")

    def text(name: str, required: bool) -> str | None:
        v = p.get(name)
        if v is None or v == "":
            if required:
                raise invalid(name, "is required.")
            return None
        if not isinstance(v, str):
            raise invalid(name, "must be a string.")
        return v

    cron = check_cron(p.get("cron"))
    tz = check_time_zone(p.get("timeZone"))
    account = text("storageAccount", True)
    container = text("containerName", True)
    assert account is not None and container is not None
    if not _ACCOUNT.match(account):
        raise invalid(
            "storageAccount",
            f"'{account[:64]}' is not a storage account name (3-24 lowercase letters and digits).",
        )
    if not _CONTAINER.match(container):
        raise invalid(
            "containerName",
            f"'{container[:80]}' is not a container name (3-63 lowercase letters, digits and single hyphens).",
        )
    prefix = _check_prefix(p.get("namePrefix"))
    raw_type = text("accessType", False) or "AccessKey"
    access_type = next((t for t in ACCESS_TYPES if t.lower() == raw_type.lower()), None)
    if access_type is None:
        raise invalid("accessType", f"'{raw_type[:40]}' is not one of {', '.join(ACCESS_TYPES)}.")
    key = text("accessKey", False)
    client_id = text("clientId", access_type == "UserAssignedManagedIdentity")
    if access_type == "AccessKey":
        keeps_key = (
            existing is not None
            and has_secret
            and existing.access_type == "AccessKey"
            and existing.storage_account == account
        )
        if key is None and not keeps_key:
            raise invalid(
                "accessKey",
                "is required with accessType AccessKey: the storage account key is stored encrypted with "
                "the server's key and never returned.",
            )
        if client_id is not None:
            raise invalid("clientId", "is only for accessType UserAssignedManagedIdentity.")
    elif key is not None:
        raise invalid(
            "accessKey",
            f"must not be sent with accessType {access_type}: the service uses its own identity and no key is stored.",
        )
    enc = text("encryptionKey", False)
    if enc is not None:
        parse_encryption_key(enc, "encryptionKey")
    enabled = p.get("enabled", True)
    if not isinstance(enabled, bool):
        raise invalid("enabled", "must be true or false.")
    retention = _check_retention(p.get("retention"), settings)
    keeps_enc = existing is not None and existing.encrypted and enc is None
    return ScheduleSpec(
        cron=cron,
        time_zone=tz,
        storage_account=account,
        container=container,
        name_prefix=prefix,
        access_type=access_type,
        client_id=client_id,
        retention=retention,
        enabled=enabled,
        access_key=key,
        encryption_key=enc,
        encrypted=enc is not None or keeps_enc,
    )


# Read-only properties a client may echo back from a GET (ignored on PUT).
_READ_ONLY = {
    "encrypted",
    "nextRun",
    "lastRun",
    "runs",
    "provisioningState",
    "createdTime",
    "updatedTime",
    "hasAccessKey",
}
