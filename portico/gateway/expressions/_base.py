"""The language's error and the shape of compiled code: a closure over an environment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ExpressionError(Exception):
    """A policy expression that cannot be parsed, or failed while it ran."""


Env = dict[str, Any]  # {"context": Context, "locals": {...}}
Fn = Callable[[Env], Any]
