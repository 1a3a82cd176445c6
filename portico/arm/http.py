"""Small HTTP helpers shared by the management routes: bounded JSON bodies and ARM responses."""

from __future__ import annotations

from typing import Any

import orjson
import pyjson5
from fastapi import Request, Response

from portico.arm.errors import ArmError

# Deeper bodies are refused: nothing in ARM nests this far, and stored or echoed documents must stay
# well inside what the JSON encoder (255 levels) and recursive validators handle.
MAX_JSON_DEPTH = 64


class OrjsonResponse(Response):
    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# ARM reads request bodies with a lenient parser: the Azure CLI sends a deployment's template as the
# file's own text behind an unquoted `template:` key, and templates may carry comments.
LENIENT_MAX_DEPTH = 128


def parse_lenient(raw: bytes) -> Any:
    """JSON5 (comments, unquoted keys, trailing commas), as ARM accepts in deployment bodies."""
    try:
        return pyjson5.decode(raw.decode("utf-8"), maxdepth=LENIENT_MAX_DEPTH)
    except UnicodeDecodeError:
        raise ArmError(400, "InvalidRequestContent", "The request body is not valid UTF-8.") from None
    except pyjson5.Json5NestingTooDeep:
        raise ArmError(
            400, "InvalidRequestContent", f"The request body nests deeper than {LENIENT_MAX_DEPTH} levels."
        ) from None
    except pyjson5.Json5Exception as exc:
        reason = str(exc.args[0]) if exc.args else "malformed"
        raise ArmError(
            400, "InvalidRequestContent", f"The request body is not valid JSON: {reason[:200]}."
        ) from None


async def read_json(request: Request, limit: int, *, required: bool = True, lenient: bool = False) -> Any:
    """The request body as JSON, refusing bodies over `limit` bytes with 413 before reading them whole."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _too_large(limit)
        except ValueError:
            raise ArmError(400, "InvalidRequestContent", "Invalid Content-Length header.") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if required:
            raise ArmError(400, "InvalidRequestContent", "The request body is required and must be JSON.")
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        limit = LENIENT_MAX_DEPTH if lenient else MAX_JSON_DEPTH
        if "depth" in exc.msg or "recursion" in exc.msg.lower():
            raise _too_deep(None, limit) from None
        if lenient:
            value = parse_lenient(raw)
            check_depth(value, limit)
            return value
        raise ArmError(
            400,
            "InvalidRequestContent",
            f"The request body is not valid JSON: {exc.msg} at position {exc.pos}.",
        ) from None
    check_depth(value, LENIENT_MAX_DEPTH if lenient else MAX_JSON_DEPTH)
    return value


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than `limit` arrays/objects, walking iteratively (no recursion),
    so the cost stays linear in the body's size whatever its depth."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            children: Any = ((f"{path}.{k}" if path else str(k), v) for k, v in node.items())
        elif isinstance(node, list):
            children = ((f"{path}[{i}]", v) for i, v in enumerate(node))
        else:
            continue
        if depth >= limit:
            raise _too_deep(path, limit)
        for child_path, child in children:
            if isinstance(child, (dict, list)):
                # The message names the field near the top where the nesting starts.
                stack.append((child, depth + 1, child_path if depth < 2 else path))


def _too_deep(path: str | None, limit: int) -> ArmError:
    where = f" (in '{path[:200]}')" if path else ""
    return ArmError(
        400,
        "InvalidRequestContent",
        f"The request body nests JSON objects and arrays too deeply{where}: at most {limit} levels are accepted.",
    )


def _too_large(limit: int) -> ArmError:
    return ArmError(413, "RequestEntityTooLarge", f"The request body exceeds the limit of {limit} bytes.")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return OrjsonResponse(body, status_code=status, headers=headers)


def empty(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers=headers)
