"""The seam through which a deployment reaches resources: ARM requests by resource id.

The server implements it over its own route table (`portico/server/routes/internal.py`) with the
deploying principal, so every resource type Portico serves can be deployed, with the same
validation and authorisation as a direct request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> dict[str, Any]:
        """The ARM error of a failed reply: `{"code", "message"}`."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(err, dict):
            return {"code": str(err.get("code") or "Failed"), "message": str(err.get("message") or "")}
        return {"code": f"Http{self.status}", "message": f"The request answered {self.status}."}


class ResourceClient(Protocol):
    def check(self, resource_id: str, api_version: str) -> str | None:
        """Why `resource_id` at `api_version` cannot be deployed here, or None when it can."""
        ...

    async def request(self, method: str, resource_id: str, api_version: str, body: Any = None) -> Reply: ...
