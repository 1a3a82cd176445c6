"""ARM error bodies: `{"error": {"code", "message", "details"}}` with the right HTTP status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class ArmError(Exception):
    """An error answered to the client as an ARM error body. Never carries secrets in `message`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            err["target"] = self.target
        err["details"] = self.details or []
        return {"error": err}


def bad_request(message: str, code: str = "ValidationError", target: str | None = None) -> ArmError:
    return ArmError(400, code, message, target=target)


def invalid_field(field: str, message: str) -> ArmError:
    """400 for one bad field, named in the message and as `target`."""
    return ArmError(
        400,
        "ValidationError",
        f"{field}: {message}",
        target=field,
        details=[{"code": "ValidationError", "target": field, "message": message}],
    )


def not_found(what: str, code: str = "ResourceNotFound") -> ArmError:
    return ArmError(404, code, f"{what} was not found.")


def conflict(code: str, message: str) -> ArmError:
    return ArmError(409, code, message)


def validation_error(exc: ValidationError) -> ArmError:
    """A pydantic model's refusal of `properties` as ARM's 400, naming the first field."""
    details = []
    for err in exc.errors()[:20]:
        loc = "properties." + ".".join(str(p) for p in err["loc"]) if err["loc"] else "properties"
        msg = err["msg"].removeprefix("Value error, ")
        details.append({"code": "ValidationError", "target": loc, "message": msg})
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ArmError(
        400,
        "ValidationError",
        f"{first['target']}: {first['message']}{more}.",
        target=first["target"],
        details=details,
    )
