"""The management API's route table: URL templates matched case-insensitively, as ARM matches paths.

A template is a `/`-separated path of literals and `{param}` segments; a final `{param*}` takes the
rest of the path (one segment or more). Literals compare ignoring case; parameters keep the case the
client sent. Routes are tried in order and the first match wins, so specific routes come before a
catch-all with the same prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portico.arm.call import Handler
from portico.arm.versions import APIM, ApiVersions

ALL_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "POST"})


@dataclass(frozen=True)
class Route:
    template: str
    handler: Handler
    versions: ApiVersions = APIM
    methods: frozenset[str] = ALL_METHODS
    authenticated: bool = True  # False: answered without a bearer token (cloud metadata)
    parts: tuple[str, ...] = field(init=False, repr=False)
    rest: str | None = field(init=False, repr=False)  # the `{param*}` name, if the template ends in one

    def __post_init__(self) -> None:
        parts = tuple(p for p in self.template.strip("/").split("/") if p)
        rest = None
        if parts and parts[-1].startswith("{") and parts[-1].endswith("*}"):
            rest = parts[-1][1:-2]
            parts = parts[:-1]
        object.__setattr__(self, "parts", tuple(p if p.startswith("{") else p.lower() for p in parts))
        object.__setattr__(self, "rest", rest)

    def match(self, segments: list[str], lowered: list[str]) -> dict[str, str] | None:
        n = len(self.parts)
        if (
            len(segments) < n
            or (self.rest is None and len(segments) != n)
            or (self.rest is not None and len(segments) == n)
        ):
            return None
        params: dict[str, str] = {}
        for part, seg, low in zip(self.parts, segments, lowered, strict=False):
            if part.startswith("{"):
                params[part[1:-1]] = seg
            elif part != low:
                return None
        if self.rest is not None:
            params[self.rest] = "/".join(segments[n:])
        return params


class RouteTable:
    """Routes indexed by their first literal segment and the path lengths they can match, tried in
    declaration order."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = list(routes)
        self._by_head: dict[str, list[Route]] = {}
        for r in self.routes:
            self._by_head.setdefault(r.parts[0] if r.parts else "", []).append(r)
        self._candidates: dict[tuple[str, int], tuple[Route, ...]] = {}

    def _for(self, head: str, length: int) -> tuple[Route, ...]:
        key = (head, length)
        found = self._candidates.get(key)
        if found is None:
            found = tuple(
                r
                for r in self._by_head.get(head, ())
                if len(r.parts) == length or (r.rest is not None and len(r.parts) < length)
            )
            if len(self._candidates) < 4096:  # path lengths are few; bounded all the same
                self._candidates[key] = found
        return found

    def match(self, segments: list[str]) -> tuple[Route, dict[str, str]] | None:
        lowered = [s.lower() for s in segments]
        head = lowered[0] if lowered else ""
        for route in self._for(head, len(segments)):
            params = route.match(segments, lowered)
            if params is not None:
                return route, params
        return None
